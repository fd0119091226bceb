-- Credit-note lines, each naming the invoice line it credits (taxes: the tax credited).
select number as credit_note_number, line_no, invoice_number, credits_line_no, kind as line_kind,
       amount, nullif(tax_id, '') as tax_id
from {{ source('invoicing', 'credit_note_lines') }}
