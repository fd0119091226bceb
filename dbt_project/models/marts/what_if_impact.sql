-- Tariff what-if impact per scenario, cycle, currency, plan and destination: revenue and
-- margin as billed and under the proposal, and the deltas. Money stays decimal.
select
    scenario,
    cycle,
    currency,
    plan_id,
    destination,
    count(distinct account_id) as accounts,
    sum(events) as events,
    sum(changed) as changed_events,
    sum(unpriced_after) - sum(unpriced_before) as newly_unpriced_events,
    sum(revenue_before) as revenue_before,
    sum(revenue_after) as revenue_after,
    sum(revenue_after) - sum(revenue_before) as revenue_delta,
    sum(cost) as cost,
    sum(revenue_before) - sum(cost) as margin_before,
    sum(revenue_after) - sum(cost) as margin_after
from {{ ref('stg_what_if') }}
group by 1, 2, 3, 4, 5
