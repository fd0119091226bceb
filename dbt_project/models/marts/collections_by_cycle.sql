-- What each cycle invoiced and what has been collected against it (payments allocated).
with paid as (
    select invoice_number, sum(amount) as collected
    from {{ ref('stg_payment_allocations') }}
    group by 1
)

select
    i.cycle,
    i.currency,
    count(*) as invoices,
    sum(i.total) as invoiced,
    coalesce(sum(p.collected), 0) as collected,
    sum(i.total) - coalesce(sum(p.collected), 0) as open_amount,
    case when sum(i.total) = 0 then null
         else round(coalesce(sum(p.collected), 0) / sum(i.total), 4) end as collection_rate
from {{ ref('stg_invoices') }} i
left join paid p on p.invoice_number = i.invoice_number
group by 1, 2
