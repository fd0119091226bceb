-- Credit notes and the invoice each corrects.
select number as credit_note_number, invoice_number, account_id, cycle, currency, issue_date, reason,
       subtotal, tax_total, total
from {{ source('invoicing', 'credit_notes') }}
