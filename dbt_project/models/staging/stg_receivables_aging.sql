-- Open invoice amounts by days past due, as of the last payments run.
select invoice_number, account_id, currency, due_date, days_past_due, bucket, open_amount, as_of
from {{ source('payments', 'aging') }}
