select
    product_id,
    name as product_name,
    kind as product_kind,
    features,
    min_quantity,
    max_quantity,
    plans as allowed_plans
from {{ source('raw', 'products') }}
