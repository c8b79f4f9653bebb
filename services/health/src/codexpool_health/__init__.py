"""codexpool-health: turns request outcomes into health scores, fallback counts and timelines."""
