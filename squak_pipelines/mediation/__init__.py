"""Stages 2-3, CDR capture and mediation: parse, normalize, enrich, de-duplicate, screen."""
