-- Rated events with their price breakdown; times also as UTC calendar day and hour.
select
    event_key,
    partition_day,
    switch_id,
    service,
    call_type,
    called_number,
    start_utc,
    cast(start_utc at time zone 'UTC' as date) as start_day,
    cast(extract(hour from start_utc at time zone 'UTC') as integer) as start_hour,
    cast(extract(isodow from start_utc at time zone 'UTC') as integer) as start_isodow,
    billsec,
    answered,
    account_id,
    service_id,
    plan_id,
    currency,
    substr(cycle, 1, 7) as cycle,  -- the billing month
    cycle as account_cycle,
    coalesce(nullif(destination, ''), 'unknown') as destination,
    matched_prefix,
    charged_units,
    allowance_used,
    charge,
    discount,
    final_charge
from {{ source('rating', 'rated_events') }}
