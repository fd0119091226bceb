-- Final invoices. `cycle` is the billing month (YYYY-MM); `account_cycle` the account's cycle
-- label (YYYY-MM, or YYYY-MM-DD for a cycle that starts on a bill day other than the 1st).
select
    number as invoice_number, invoice_key, account_id, substr(cycle, 1, 7) as cycle,
    cycle as account_cycle, currency, issue_date, due_date,
    subtotal, tax_total, total, previous_balance, amount_due
from {{ source('invoicing', 'invoices') }}
