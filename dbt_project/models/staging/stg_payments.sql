-- Every record of the payment files, once each; status says what it is (payments are `succeeded`).
select payment_id, method, status, amount, currency, received_at,
       cast(received_at at time zone 'UTC' as date) as received_day
from {{ source('payments', 'payments') }}
