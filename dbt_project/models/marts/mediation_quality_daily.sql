-- Fraud and quarantine statistics: per switch and day, records received and how they were
-- accounted for, with the quarantined share.
select
    partition_day,
    switch_id,
    count(*) as files,
    sum(records_in) as records_in,
    sum(accepted) as accepted,
    sum(rejected) as rejected,
    sum(duplicates) as duplicates,
    sum(quarantined) as quarantined,
    sum(b_legs) as b_legs,
    case when sum(records_in) = 0 then 0
         else round(cast(sum(quarantined) as numeric) / sum(records_in), 4) end as quarantine_share
from {{ ref('stg_mediation_files') }}
group by 1, 2
