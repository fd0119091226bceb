-- Revenue before tax with every dimension finance slices by: cycle, currency, customer
-- segment and jurisdiction, line kind, product, plan, service (voice/sms), call type and
-- destination. One row per invoice (or credit note) and dimension combination.
select
    r.cycle,
    r.currency,
    r.invoice_number,
    r.account_id,
    a.segment,
    a.jurisdiction,
    r.line_kind,
    coalesce(r.product_id, 'none') as product_id,
    coalesce(r.plan_id, 'none') as plan_id,
    coalesce(r.service, 'none') as service,
    coalesce(r.call_type, 'none') as call_type,
    coalesce(r.destination, 'none') as destination,
    r.amount
from {{ ref('int_revenue_lines') }} r
left join {{ ref('stg_accounts') }} a on a.account_id = r.account_id
