"""Pure domain: incident semantics, no I/O. Everything here is testable with plain values."""
