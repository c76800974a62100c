"""Orchestration of monitors over ports; concrete I/O is injected by the wiring."""
