-- ARPU (revenue before tax per invoiced account) and MoU (voice minutes of use per invoiced
-- account) per cycle, currency and segment.
with revenue as (
    select i.cycle, i.currency, a.segment, count(distinct i.account_id) as accounts,
           sum(i.subtotal) as revenue
    from {{ ref('stg_invoices') }} i
    join {{ ref('stg_accounts') }} a on a.account_id = i.account_id
    group by 1, 2, 3
),

usage as (
    select u.cycle, u.currency, a.segment,
           sum(case when u.service = 'voice' then u.billsec else 0 end) / 60.0 as voice_minutes,
           sum(case when u.service = 'sms' then 1 else 0 end) as messages
    from {{ ref('int_billed_usage') }} u
    join {{ ref('stg_accounts') }} a on a.account_id = u.account_id
    where u.answered
    group by 1, 2, 3
)

select
    r.cycle, r.currency, r.segment, r.accounts, r.revenue,
    cast(round(r.revenue / r.accounts, 2) as decimal(18, 2)) as arpu,
    coalesce(u.voice_minutes, 0) as voice_minutes,
    round(coalesce(u.voice_minutes, 0) / r.accounts, 1) as mou,
    coalesce(u.messages, 0) as messages
from revenue r
left join usage u on u.cycle = r.cycle and u.currency = r.currency and u.segment = r.segment
