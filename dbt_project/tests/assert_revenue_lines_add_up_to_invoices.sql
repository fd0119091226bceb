-- Revenue assurance in the warehouse: per final invoice, the revenue rows (usage by event,
-- service lines, discounts, promotions, rounding) add up exactly to the invoice subtotal.
with revenue as (
    select invoice_number, sum(amount) as amount
    from {{ ref('fct_revenue_lines') }}
    where line_kind <> 'credit_note'
    group by 1
)

select i.invoice_number, i.subtotal, coalesce(r.amount, 0) as revenue
from {{ ref('stg_invoices') }} i
left join revenue r on r.invoice_number = i.invoice_number
where i.subtotal <> coalesce(r.amount, 0)
