-- Tariff what-if results (`squak what-if`): per scenario, cycle, currency, account, plan and
-- destination, the events and their revenue as billed and under the proposal, with cost.
select scenario, cycle, created_at, currency, account_id, plan_id, destination, events, changed,
       unpriced_before, unpriced_after, revenue_before, revenue_after, cost
from {{ source('rating', 'what_if') }}
