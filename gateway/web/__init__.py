"""HTTP layer: the API for centre systems (and, later, the operator console)."""
