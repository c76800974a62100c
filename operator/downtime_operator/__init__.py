"""Downtime Operator: records every HTTP health-endpoint outage as an incident, with its logs."""
