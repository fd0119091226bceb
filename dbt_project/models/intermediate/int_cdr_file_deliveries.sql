-- Each distinct file content once, with how often it was delivered.
select
    sha256,
    min(switch_id) as switch_id,
    min(file_day) as file_day,
    min(relative_path) as first_path,
    count(*) as deliveries,
    max(records) as records,
    max(file_bytes) as file_bytes
from {{ ref('stg_cdr_drop_files') }}
group by sha256
