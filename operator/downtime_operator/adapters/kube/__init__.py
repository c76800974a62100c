"""Kubernetes adapter: DowntimeIncident resources, HealthMonitor status, Events."""
