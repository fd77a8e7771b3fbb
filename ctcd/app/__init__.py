"""The application layer: the `ctcd` command line, its commands, the demo, the local stack and the
Prefect deployments. The only part of `ctcd` that imports `flows/`; nothing in core imports it."""
