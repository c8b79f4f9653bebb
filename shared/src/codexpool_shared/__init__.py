"""What every Codex Pool service shares."""
