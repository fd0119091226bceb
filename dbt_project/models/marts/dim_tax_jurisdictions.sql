-- Taxes and fees in force per jurisdiction (country, state), for invoicing and tax filing.
select
    country,
    coalesce(state, '') as state,
    count(*) as taxes,
    sum(case when tax_kind = 'percent' then 1 else 0 end) as percentage_taxes,
    sum(case when tax_kind = 'fixed' then 1 else 0 end) as fixed_fees,
    sum(case when tax_kind = 'percent' then rate_percent else 0 end) as combined_percent
from {{ ref('stg_tax_rates') }}
group by country, coalesce(state, '')
