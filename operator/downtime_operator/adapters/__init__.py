"""I/O adapters: each implements a port from services.ports."""
