-- Revenue-assurance control results per cycle.
select cycle, number as control_number, control, title, critical, passed, summary, findings, as_of
from {{ source('assurance', 'control_results') }}
