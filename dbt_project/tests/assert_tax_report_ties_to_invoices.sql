-- The tax report's invoiced tax per cycle and currency equals the invoices' tax totals.
with report as (
    select cycle, currency, sum(tax_invoiced) as tax from {{ ref('tax_report') }} group by 1, 2
),

invoices as (
    select cycle, currency, sum(tax_total) as tax from {{ ref('stg_invoices') }} group by 1, 2
)

select i.cycle, i.currency, i.tax, r.tax as reported
from invoices i
left join report r on r.cycle = i.cycle and r.currency = i.currency
where coalesce(r.tax, 0) <> i.tax
