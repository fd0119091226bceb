-- Usage trends: calls, minutes and messages per UTC day and hour (with the ISO weekday, for
-- heatmaps), by service, call type and currency. All rated events, billed or not.
select
    start_day,
    start_hour,
    start_isodow,
    currency,
    service,
    call_type,
    count(*) as events,
    sum(case when answered then 1 else 0 end) as answered_events,
    sum(case when service = 'voice' and answered then billsec else 0 end) / 60.0 as voice_minutes,
    sum(case when service = 'sms' and answered then 1 else 0 end) as messages,
    sum(final_charge) as rated_amount
from {{ ref('stg_rated_events') }}
where account_id is not null
group by start_day, start_hour, start_isodow, currency, service, call_type
