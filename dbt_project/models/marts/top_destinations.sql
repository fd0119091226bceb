-- Destinations by invoiced usage revenue per cycle and currency, ranked, with the wholesale
-- cost and margin where cost decks are loaded (raw.cost_rates, see the reference stage).
with usage as (
    select cycle, currency, destination,
           count(*) as calls,
           sum(case when service = 'voice' then billsec else 0 end) / 60.0 as minutes,
           sum(final_charge) as revenue
    from {{ ref('int_billed_usage') }}
    where answered
    group by 1, 2, 3
)

select
    u.*,
    c.costed_events,
    c.cost,
    u.revenue - c.cost as margin,
    rank() over (partition by u.cycle, u.currency order by u.revenue desc, u.destination) as revenue_rank
from usage u
left join {{ ref('int_destination_cost') }} c
    on c.cycle = u.cycle and c.currency = u.currency and c.destination = u.destination
