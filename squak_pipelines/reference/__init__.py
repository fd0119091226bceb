"""Operator reference data: product catalogue, tax table, switch registry."""
