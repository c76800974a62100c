"""SLOs over the incident record, and the maintenance that is excluded from them (issue 15)."""
