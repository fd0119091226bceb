select
    tax_id,
    name as tax_name,
    country,
    nullif(state, '') as state,
    applies_to,
    kind as tax_kind,
    rate_percent,
    amount as fixed_amount,
    currency,
    effective_from
from {{ source('raw', 'tax_rates') }}
