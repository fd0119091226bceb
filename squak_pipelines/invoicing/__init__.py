"""Stage 5: billing cycle and invoices."""
