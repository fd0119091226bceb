-- Revenue before tax at its finest grain. Usage is taken event by event (so it carries plan,
-- product, call type and destination); `rounding` is what the invoice's usage and discount
-- lines, rounded one by one, differ from their events; credit notes count in their own cycle.
-- Per invoice the rows add up to the invoice subtotal (tested).
{{ config(materialized='table') }}  -- read several times (marts and tests): computed once
with invoices as (
    select invoice_number, invoice_key, cycle, currency, account_id from {{ ref('stg_invoices') }}
),

service_lines as (
    select
        i.invoice_number, i.cycle, i.currency, i.account_id, l.line_kind, l.service_id,
        d.product_id, d.plan_id,
        cast(null as varchar) as service, cast(null as varchar) as call_type,
        cast(null as varchar) as destination, l.amount
    from {{ ref('stg_invoice_lines') }} l
    join invoices i on i.invoice_key = l.invoice_key
    left join {{ ref('int_service_dims') }} d on d.service_id = l.service_id
    where l.line_kind in ('recurring', 'one_time', 'promotion', 'adjustment')
),

usage_lines as (
    select
        u.invoice_number, u.cycle, u.currency, u.account_id, u.line_kind, u.service_id,
        d.product_id, u.plan_id, u.service, u.call_type, u.destination, sum(u.charge) as amount
    from {{ ref('int_billed_usage') }} u
    left join {{ ref('int_service_dims') }} d on d.service_id = u.service_id
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
),

discount_lines as (
    select
        u.invoice_number, u.cycle, u.currency, u.account_id, 'discount' as line_kind, u.service_id,
        d.product_id, u.plan_id, u.service, u.call_type, u.destination, -sum(u.discount) as amount
    from {{ ref('int_billed_usage') }} u
    left join {{ ref('int_service_dims') }} d on d.service_id = u.service_id
    where u.discount <> 0
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
),

invoiced_usage as (
    select i.invoice_number, sum(l.amount) as amount
    from {{ ref('stg_invoice_lines') }} l
    join invoices i on i.invoice_key = l.invoice_key
    where l.line_kind in ('usage', 'late_usage', 'discount')
    group by 1
),

event_usage as (
    select invoice_number, sum(charge) - sum(discount) as amount
    from {{ ref('int_billed_usage') }}
    group by 1
),

rounding_lines as (
    select
        i.invoice_number, i.cycle, i.currency, i.account_id, 'rounding' as line_kind,
        cast(null as varchar) as service_id, cast(null as varchar) as product_id,
        cast(null as varchar) as plan_id, cast(null as varchar) as service,
        cast(null as varchar) as call_type, cast(null as varchar) as destination,
        coalesce(v.amount, 0) - coalesce(e.amount, 0) as amount
    from invoices i
    left join invoiced_usage v on v.invoice_number = i.invoice_number
    left join event_usage e on e.invoice_number = i.invoice_number
    where coalesce(v.amount, 0) <> coalesce(e.amount, 0)
),

credit_lines as (
    select
        c.credit_note_number as invoice_number, n.cycle, n.currency, n.account_id,
        'credit_note' as line_kind, l.service_id, d.product_id, d.plan_id,
        cast(null as varchar) as service, l.call_type, l.destination, c.amount
    from {{ ref('stg_credit_note_lines') }} c
    join {{ ref('stg_credit_notes') }} n on n.credit_note_number = c.credit_note_number
    join invoices i on i.invoice_number = c.invoice_number
    left join {{ ref('stg_invoice_lines') }} l
        on l.invoice_key = i.invoice_key and l.line_no = c.credits_line_no
    left join {{ ref('int_service_dims') }} d on d.service_id = l.service_id
    where c.line_kind <> 'tax'
)

select * from service_lines
union all select * from usage_lines
union all select * from discount_lines
union all select * from rounding_lines
union all select * from credit_lines
