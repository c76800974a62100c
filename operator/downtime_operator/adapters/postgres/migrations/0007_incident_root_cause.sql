-- The root cause of an incident, written by a person through the admin API (PATCH) for the
-- post-mortem, beside the seed's `notes` (to which signed notes are appended). Nullable with no
-- default, so adding it rewrites nothing and existing incidents simply have none yet.
ALTER TABLE downtime_incidents
    ADD COLUMN IF NOT EXISTS root_cause text;
