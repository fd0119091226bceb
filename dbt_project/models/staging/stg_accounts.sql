-- One row per customer account: segment and the jurisdiction of its service address.
select
    account_id,
    name as account_name,
    segment,
    country,
    nullif(state, '') as state,
    case when coalesce(state, '') = '' then country else country || '-' || state end as jurisdiction,
    currency,
    delivery_method,
    payment_method
from {{ source('orders', 'accounts') }}
