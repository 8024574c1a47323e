"""Test-only helpers that used to live in ``core/``: query introspection, the line-protocol oracle."""
