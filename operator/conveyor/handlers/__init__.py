"""kopf wiring: thin handlers that read the world, call the core and apply the result."""
