-- Taxes for filing: per cycle, currency, jurisdiction (the account's service address) and
-- tax, the taxable base and tax invoiced, what credit notes took back, and the net.
with invoiced as (
    select i.cycle, i.currency, a.jurisdiction, l.tax_id,
           count(distinct i.invoice_number) as invoices,
           sum(l.taxable_base) as taxable_base,
           sum(l.amount) as tax_invoiced
    from {{ ref('stg_invoice_lines') }} l
    join {{ ref('stg_invoices') }} i on i.invoice_key = l.invoice_key
    join {{ ref('stg_accounts') }} a on a.account_id = i.account_id
    where l.line_kind = 'tax'
    group by 1, 2, 3, 4
),

credited as (
    select n.cycle, n.currency, a.jurisdiction, c.tax_id, sum(c.amount) as tax_credited
    from {{ ref('stg_credit_note_lines') }} c
    join {{ ref('stg_credit_notes') }} n on n.credit_note_number = c.credit_note_number
    join {{ ref('stg_accounts') }} a on a.account_id = n.account_id
    where c.line_kind = 'tax'
    group by 1, 2, 3, 4
)

select
    coalesce(i.cycle, c.cycle) as cycle,
    coalesce(i.currency, c.currency) as currency,
    coalesce(i.jurisdiction, c.jurisdiction) as jurisdiction,
    coalesce(i.tax_id, c.tax_id) as tax_id,
    t.tax_name,
    coalesce(i.invoices, 0) as invoices,
    coalesce(i.taxable_base, 0) as taxable_base,
    coalesce(i.tax_invoiced, 0) as tax_invoiced,
    coalesce(c.tax_credited, 0) as tax_credited,
    coalesce(i.tax_invoiced, 0) + coalesce(c.tax_credited, 0) as tax_net
from invoiced i
full outer join credited c
    on c.cycle = i.cycle and c.currency = i.currency and c.jurisdiction = i.jurisdiction and c.tax_id = i.tax_id
left join {{ ref('stg_tax_rates') }} t on t.tax_id = coalesce(i.tax_id, c.tax_id)
