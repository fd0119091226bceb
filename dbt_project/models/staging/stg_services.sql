-- Service periods: a number on a product and plan, active from/to (UTC, end exclusive).
select
    service_id,
    period,
    account_id,
    product_id,
    plan_id,
    number as phone_number,
    active_from,
    active_to
from {{ source('orders', 'services') }}
