-- Revenue-assurance controls per cycle: verdict, summary and number of findings (the
-- findings themselves, with amounts, are in ra_leakage).
select
    cycle,
    control_number,
    control,
    title,
    critical,
    passed,
    summary,
    findings,
    as_of
from {{ ref('stg_ra_control_results') }}
