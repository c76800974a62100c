-- The Kubernetes context of an incident (issue 13): `{detection: {...}, resolution: {...}}`,
-- the pods, endpoints, rollouts and Warning Events behind the monitored endpoint and the
-- probable causes they support, each stage written once by the operator. Nullable with no
-- default, so adding it rewrites nothing; incidents from before it (and standalone ones) have
-- none.
ALTER TABLE downtime_incidents
    ADD COLUMN IF NOT EXISTS kube_context jsonb;
