"""Deterministic demo operator: reference data, customers, orders and CDR drop files."""
