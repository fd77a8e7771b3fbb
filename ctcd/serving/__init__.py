"""Serving the champion with BentoML: request schema, service, server process, deployment."""
