"""CLI commands, one module per lifecycle stage; each exposes `register(app)`."""
