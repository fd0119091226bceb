-- Every invoiced event with the invoice that billed it; `late_usage` when it belongs to an
-- earlier cycle than the invoice's.
{{ config(materialized='table') }}  -- read several times (marts and tests): computed once
select
    b.invoice_number,
    i.cycle,
    i.currency,
    i.account_id,
    e.event_key,
    e.cycle as usage_cycle,
    case when e.account_cycle < i.account_cycle then 'late_usage' else 'usage' end as line_kind,
    e.service,
    e.call_type,
    e.destination,
    e.called_number,
    e.start_day,
    e.service_id,
    e.plan_id,
    e.answered,
    e.billsec,
    e.charge,
    e.discount,
    e.final_charge
from {{ ref('stg_billed_events') }} b
join {{ ref('stg_invoices') }} i on i.invoice_number = b.invoice_number
join {{ ref('stg_rated_events') }} e on e.event_key = b.event_key
