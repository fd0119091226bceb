-- Payments received, once each.
select payment_id, method, status, amount, currency, received_at,
       cast(received_at at time zone 'UTC' as date) as received_day
from {{ source('payments', 'payments') }}
