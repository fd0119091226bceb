-- Each CDR file mediated, with how its records were accounted for.
select
    file_name, sha256, switch_id, format as cdr_format, partition_day, status,
    records_in, accepted, rejected, duplicates, quarantined
from {{ source('mediation', 'files') }}
