-- CDR intake per switch and day: files and records received, and re-deliveries.
with deliveries as (
    select * from {{ ref('int_cdr_file_deliveries') }}
)
select
    switch_id,
    file_day,
    sum(deliveries) as files_received,
    count(*) as distinct_files,
    sum(deliveries) - count(*) as redelivered_files,
    sum(records) as records_received,
    sum(records * (deliveries - 1)) as records_in_redeliveries,
    sum(file_bytes) as bytes_received
from deliveries
group by switch_id, file_day
