"""Squak Billing: telecom billing data platform (CDRs to invoices, payments and revenue reports)."""

__version__ = "0.1.0"
