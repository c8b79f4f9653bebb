"""codexpool-router: picks an account per request, forwards, fails over, emits the outcome."""
