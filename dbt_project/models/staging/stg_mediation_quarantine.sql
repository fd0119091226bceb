-- Events held back by the fraud screen, with the rules that fired and the review decision.
select event_key, switch_id, partition_day, call_type, destination_country, fraud_rules, decision
from {{ source('mediation', 'quarantine') }}
