select
    switch_id,
    format as cdr_format,
    relative_path,
    {{ file_day('relative_path') }} as file_day,
    bytes as file_bytes,
    sha256,
    compressed,
    records,
    modified_at
from {{ source('raw', 'cdr_drop_files') }}
