"""codexpool-sim: a faithful fake of the ChatGPT Codex backend and its OAuth issuer."""
