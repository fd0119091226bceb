-- The leakage report: every discrepancy a control found, with its amount and record.
select f.cycle, r.control_number, f.control, f.kind, f.record, f.account_id, f.currency, f.amount, f.detail
from {{ ref('stg_ra_findings') }} f
join {{ ref('stg_ra_control_results') }} r on r.cycle = f.cycle and r.control = f.control
