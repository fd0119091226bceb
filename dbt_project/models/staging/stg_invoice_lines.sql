-- Lines of the final invoices.
select
    invoice_key, line_no, kind as line_kind, description, quantity, unit, unit_price, amount,
    nullif(service_id, '') as service_id, nullif(call_type, '') as call_type,
    nullif(destination, '') as destination, calls, tax_id, base as taxable_base
from {{ source('invoicing', 'invoice_lines') }}
