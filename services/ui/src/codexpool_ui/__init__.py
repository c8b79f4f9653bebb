"""codexpool-ui: the Codex Pool activity page and routing form."""
