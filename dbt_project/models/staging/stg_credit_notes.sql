-- Credit notes and the invoice each corrects (`cycle`: the billing month of that invoice).
select number as credit_note_number, invoice_number, account_id, substr(cycle, 1, 7) as cycle,
       cycle as account_cycle, currency, issue_date, reason,
       subtotal, tax_total, total
from {{ source('invoicing', 'credit_notes') }}
