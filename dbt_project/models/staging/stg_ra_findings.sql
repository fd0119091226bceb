-- The leakage report: one row per discrepancy a control found.
select cycle, control, kind, record, account_id, currency, amount, detail
from {{ source('assurance', 'findings') }}
