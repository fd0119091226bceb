select
    switch_id,
    format as cdr_format,
    timezone as switch_timezone,
    country as switch_country,
    folder as drop_folder
from {{ source('raw', 'switches') }}
