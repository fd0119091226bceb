-- Records mediation could not read: file, line, field and reason.
select source_file, source_line, switch_id, partition_day, reason, field
from {{ source('mediation', 'rejects') }}
