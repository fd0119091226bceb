-- Events rating could not price yet, with the reason.
select event_key, partition_day, reason, service, call_type, account_id, plan_id, billsec
from {{ source('rating', 'suspense') }}
