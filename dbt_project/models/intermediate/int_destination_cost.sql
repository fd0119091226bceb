-- Wholesale cost of invoiced usage per cycle, currency and destination: each answered event
-- at the longest matching prefix of the cost decks in its currency and service (the cheapest
-- carrier where several match), voice per second of talk time.
with events as (
    select cycle, currency, destination, event_key, service, billsec, start_day,
           ltrim(called_number, '+') as digits
    from {{ ref('int_billed_usage') }}
    where answered
),

matches as (
    select
        e.cycle, e.currency, e.destination, e.service, e.billsec, c.rate,
        row_number() over (
            partition by e.event_key order by length(c.prefix) desc, c.rate, c.carrier
        ) as pick
    from events e
    join {{ ref('stg_cost_rates') }} c
        on c.currency = e.currency
        and c.service = e.service
        and e.digits like c.prefix || '%'
        and (c.effective_from is null or c.effective_from <= e.start_day)
)

select
    cycle,
    currency,
    destination,
    count(*) as costed_events,
    -- money stays decimal: per-second cost summed exactly, divided once, cast back to decimal
    cast(sum(case when service = 'voice' then rate * billsec else rate * 60 end) / 60 as decimal(18, 6)) as cost
from matches
where pick = 1
group by 1, 2, 3
