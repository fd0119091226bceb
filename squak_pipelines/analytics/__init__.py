"""Warehouse models built with dbt (staging -> intermediate -> marts)."""
