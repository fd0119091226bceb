-- What each payment paid of each invoice.
select payment_id, invoice_number, amount from {{ source('payments', 'allocations') }}
