-- Which final invoice billed each rated event.
select event_key, invoice_number from {{ source('invoicing', 'billed_events') }}
