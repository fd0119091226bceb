-- Monthly revenue before tax by product, plan, service, call type, destination,
-- jurisdiction and customer segment (pivot any of them; `none` where a line has no such
-- dimension, e.g. the call type of a recurring fee).
select
    cycle, currency, line_kind, product_id, plan_id, service, call_type, destination, jurisdiction, segment,
    count(distinct invoice_number) as documents,
    count(distinct account_id) as accounts,
    sum(amount) as revenue
from {{ ref('fct_revenue_lines') }}
group by cycle, currency, line_kind, product_id, plan_id, service, call_type, destination, jurisdiction, segment
