"""The language: YAML text to a validated, immutable model (loader, schema, checks)."""
