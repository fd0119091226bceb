-- Wholesale cost per minute (voice, billed per second) or per message (sms), by carrier and prefix.
select carrier, prefix, destination, service, currency, rate, effective_from
from {{ source('raw', 'cost_rates') }}
