-- Final invoices.
select
    number as invoice_number, invoice_key, account_id, cycle, currency, issue_date, due_date,
    subtotal, tax_total, total, previous_balance, amount_due
from {{ source('invoicing', 'invoices') }}
