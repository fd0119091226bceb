-- Usage completeness in the warehouse: for every switch and day, records received =
-- mediated + rejected + duplicates + quarantined.
select *
from {{ ref('mediation_quality_daily') }}
where records_in <> accepted + rejected + duplicates + quarantined
