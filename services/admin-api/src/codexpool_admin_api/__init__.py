"""codexpool-admin-api: manages providers, agents and pools."""
