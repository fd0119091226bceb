-- Open receivables by currency and aging bucket, as of the last payments run.
select
    as_of,
    currency,
    bucket,
    count(*) as invoices,
    sum(open_amount) as open_amount
from {{ ref('stg_receivables_aging') }}
group by 1, 2, 3
