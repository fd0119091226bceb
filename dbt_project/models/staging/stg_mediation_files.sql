-- Each CDR file mediated, with how its records were accounted for (FreeSWITCH B-legs are
-- legs of a call, not calls; a file held before the first CDR day is counted whole).
select
    file_name, sha256, switch_id, format as cdr_format, partition_day, status,
    records_in, accepted, rejected, duplicates, quarantined, coalesce(b_legs, 0) as b_legs
from {{ source('mediation', 'files') }}
