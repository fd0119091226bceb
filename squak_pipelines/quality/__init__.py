"""Data-quality gates: Great Expectations 1.x suites stored as JSON in `expectations/`."""
