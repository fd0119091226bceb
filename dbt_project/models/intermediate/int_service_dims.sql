-- One row per service: its account, product and plan (of its latest period).
select service_id, account_id, product_id, plan_id
from (
    select
        service_id, account_id, product_id, plan_id,
        row_number() over (partition by service_id order by period desc) as latest
    from {{ ref('stg_services') }}
) s
where latest = 1
