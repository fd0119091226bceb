"""Payments and receivables: intake, matching, ledger, aging, dunning and payment links."""
