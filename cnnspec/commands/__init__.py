"""CLI commands by area; each module has `register(app)` and imports torch only inside commands."""
