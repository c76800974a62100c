-- Evidence for the post-mortem, continued:
-- * playbook: the monitor's `spec.playbook` (a URL or short text) as it was when the incident
--   opened, so the report and notifications show the one that applied then.
-- * severity_changes: `[{at, from, to}]`, each escalation appended once, for the report's
--   impact and timeline.
-- * metrics_queries: the monitor's `spec.metrics` (`[{name, query}]`, PromQL) fixed at
--   detection with the log capture plan, so the final capture runs them even after the
--   monitor was edited or deleted; their values go into `metrics_snapshot.prometheus`.
-- Nullable with no default: adding them rewrites nothing.
ALTER TABLE downtime_incidents
    ADD COLUMN IF NOT EXISTS playbook         text,
    ADD COLUMN IF NOT EXISTS severity_changes jsonb,
    ADD COLUMN IF NOT EXISTS metrics_queries  jsonb;
