-- Quarantined events per day and fraud rule (an event caught by two rules counts under both),
-- with how many still wait for review.
with hits as (
    select partition_day, switch_id, decision, {{ split_list('fraud_rules') }} as rule
    from {{ ref('stg_mediation_quarantine') }}
)

select
    partition_day,
    switch_id,
    rule,
    count(*) as events,
    sum(case when decision = 'pending' then 1 else 0 end) as pending_review
from hits
group by 1, 2, 3
