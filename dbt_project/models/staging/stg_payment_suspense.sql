-- Payments waiting for finance to place them.
select payment_id, reason, amount, currency, received_at from {{ source('payments', 'suspense') }}
