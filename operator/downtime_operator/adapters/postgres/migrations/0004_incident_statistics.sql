-- Incident statistics for the admin API, fast at any table size.

-- Statistics must not cost a scan of every incident in the period: a busy fleet has
-- tens of thousands a month. So resolved incidents are rolled up per UTC day of their start, by
-- triggers, in the same transaction as the write; a query reads whole days from the rollups and
-- only the incidents at the period's edges (partial first and last day, incidents spanning the
-- start, open ones) row by row. Durations are whole microseconds (bigint): adding and removing
-- them is exact, so the rollups never drift.
--
-- Per-monitor uptime must not count overlapping incidents of one monitor twice. covered_before
-- makes the union additive: it is the latest end (open: infinity) among the monitor's incidents
-- that started before this one, in (started_at, incident_id) order; the part of an incident
-- after covered_before is what it adds to the union, and those parts sum to the union's length.

LOCK TABLE downtime_incidents IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE downtime_incidents ADD COLUMN IF NOT EXISTS covered_before timestamptz;

-- Whole microseconds from `from_at` to `to_at`, 0 if not after. Through float8 (faster than
-- EXTRACT's numeric), and still exact: an interval's epoch is within half a microsecond of the
-- true value below 2^53 microseconds (285 years), so rounding recovers it.
CREATE OR REPLACE FUNCTION downtime_micros(from_at timestamptz, to_at timestamptz)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN to_at > from_at
                THEN round(date_part('epoch', to_at - from_at) * 1000000)::bigint
                ELSE 0 END
$$;

CREATE TABLE IF NOT EXISTS downtime_incident_days (
    day             date NOT NULL,
    severity        text NOT NULL,
    incidents       integer NOT NULL,
    micros          bigint NOT NULL,
    longest_micros  bigint NOT NULL,
    PRIMARY KEY (day, severity)
);

-- Per monitor, one row per day would be a row per monitor per day of the period (15,000 for
-- 500 monitors and 30 days). Instead each incident is added to the aligned span of 2^level days
-- that holds its start day, for every level 0..8: any range of whole days is a union of at most
-- ~2 spans per level, so a period reads a few rows per monitor. bucket = days since 1970-01-01
-- shifted right by level.
CREATE TABLE IF NOT EXISTS downtime_monitor_spans (
    level              smallint NOT NULL,
    bucket             integer NOT NULL,
    monitor_namespace  text NOT NULL,
    monitor_name       text NOT NULL,
    incidents          integer NOT NULL,
    union_micros       bigint NOT NULL,
    PRIMARY KEY (level, bucket, monitor_namespace, monitor_name)
);

-- Add (sign 1) or remove (sign -1) one incident's share of the rollups. Open incidents are never
-- in them: a statistics query reads those row by row.
-- The trigger functions plan each query with its values (force_custom_plan): a plan cached while
-- the table was small (a first bulk load) would otherwise scan where it should seek, forever.
CREATE OR REPLACE FUNCTION downtime_rollup_apply(r downtime_incidents, sign integer)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_day date;
    v_micros bigint;
    v_fresh bigint;
    v_longest bigint;
BEGIN
    IF r.status <> 'resolved' OR r.ended_at IS NULL THEN
        RETURN;
    END IF;
    v_day := (r.started_at AT TIME ZONE 'UTC')::date;
    v_micros := downtime_micros(r.started_at, r.ended_at);
    IF sign > 0 THEN
        INSERT INTO downtime_incident_days AS d (day, severity, incidents, micros, longest_micros)
        VALUES (v_day, r.severity, 1, v_micros, v_micros)
        ON CONFLICT (day, severity) DO UPDATE
        SET incidents = d.incidents + 1,
            micros = d.micros + EXCLUDED.micros,
            longest_micros = GREATEST(d.longest_micros, EXCLUDED.longest_micros);
    ELSE
        UPDATE downtime_incident_days d
        SET incidents = d.incidents - 1, micros = d.micros - v_micros
        WHERE d.day = v_day AND d.severity = r.severity
        RETURNING d.longest_micros INTO v_longest;
        IF v_longest = v_micros THEN
            -- A maximum cannot be decremented: find the day's longest among the others.
            UPDATE downtime_incident_days d
            SET longest_micros = COALESCE((
                SELECT max(downtime_micros(i.started_at, i.ended_at))
                FROM downtime_incidents i
                WHERE i.severity = r.severity AND i.status = 'resolved'
                  AND i.started_at >= v_day::timestamp AT TIME ZONE 'UTC'
                  AND i.started_at < (v_day + 1)::timestamp AT TIME ZONE 'UTC'
                  AND i.incident_id <> r.incident_id
            ), 0)
            WHERE d.day = v_day AND d.severity = r.severity;
        END IF;
        DELETE FROM downtime_incident_days d
        WHERE d.day = v_day AND d.severity = r.severity AND d.incidents = 0;
    END IF;
    IF r.monitor_name IS NULL THEN
        RETURN;
    END IF;
    v_fresh := downtime_micros(GREATEST(r.started_at, r.covered_before), r.ended_at);
    INSERT INTO downtime_monitor_spans AS d
        (level, bucket, monitor_namespace, monitor_name, incidents, union_micros)
    SELECT level, (v_day - DATE '1970-01-01') >> level, COALESCE(r.monitor_namespace, ''),
           r.monitor_name, sign, sign * v_fresh
    FROM generate_series(0, 8) AS level
    ON CONFLICT (level, bucket, monitor_namespace, monitor_name) DO UPDATE
    SET incidents = d.incidents + EXCLUDED.incidents,
        union_micros = d.union_micros + EXCLUDED.union_micros;
    DELETE FROM downtime_monitor_spans d
    WHERE d.bucket = (v_day - DATE '1970-01-01') >> d.level
      AND d.monitor_namespace = COALESCE(r.monitor_namespace, '')
      AND d.monitor_name = r.monitor_name AND d.incidents = 0;
END
$$;

-- Serializes writers of one monitor's incidents, so that covered_before is computed from a
-- settled predecessor (two replicas, or the runner and a manual resolve, at the same moment).
CREATE OR REPLACE FUNCTION downtime_lock_monitor(ns text, name text)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtext('downtime_incidents'),
                                 hashtext(COALESCE(ns, '') || '/' || name))
$$;

-- After the incident at (ns, name, at, id) changed, bring the covered_before of the incidents
-- after it up to date, in order, stopping at the first one that is already right: nothing after
-- it can change. One loop here rather than trigger recursion, which a long chain would overflow.
CREATE OR REPLACE FUNCTION downtime_chain_walk(ns text, name text, at timestamptz, id uuid)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_until timestamptz;
    r record;
BEGIN
    SELECT GREATEST(p.covered_before, COALESCE(p.ended_at, 'infinity'::timestamptz))
    INTO v_until
    FROM downtime_incidents p
    WHERE p.monitor_name = name AND p.monitor_namespace IS NOT DISTINCT FROM ns
      AND (p.started_at, p.incident_id) <= (at, id)
    ORDER BY p.started_at DESC, p.incident_id DESC
    LIMIT 1;
    FOR r IN
        SELECT s.incident_id, s.covered_before, s.ended_at
        FROM downtime_incidents s
        WHERE s.monitor_name = name AND s.monitor_namespace IS NOT DISTINCT FROM ns
          AND (s.started_at, s.incident_id) > (at, id)
        ORDER BY s.started_at, s.incident_id
    LOOP
        EXIT WHEN r.covered_before IS NOT DISTINCT FROM v_until;
        UPDATE downtime_incidents SET covered_before = v_until
        WHERE incident_id = r.incident_id;
        v_until := GREATEST(v_until, COALESCE(r.ended_at, 'infinity'::timestamptz));
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION downtime_incidents_chain_before() RETURNS trigger
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    IF NEW.monitor_name IS NULL THEN
        NEW.covered_before := NULL;
        RETURN NEW;
    END IF;
    PERFORM downtime_lock_monitor(NEW.monitor_namespace, NEW.monitor_name);
    NEW.covered_before := (
        SELECT GREATEST(p.covered_before, COALESCE(p.ended_at, 'infinity'::timestamptz))
        FROM downtime_incidents p
        WHERE p.monitor_name = NEW.monitor_name
          AND p.monitor_namespace IS NOT DISTINCT FROM NEW.monitor_namespace
          AND (p.started_at, p.incident_id) < (NEW.started_at, NEW.incident_id)
          AND p.incident_id <> NEW.incident_id
        ORDER BY p.started_at DESC, p.incident_id DESC
        LIMIT 1
    );
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION downtime_incidents_rollup_after() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM downtime_rollup_apply(OLD, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM downtime_rollup_apply(NEW, 1);
    END IF;
    -- The walk's own updates come back here one level deeper: they only adjust the rollups.
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.monitor_name IS NOT NULL THEN
        PERFORM downtime_lock_monitor(OLD.monitor_namespace, OLD.monitor_name);
        PERFORM downtime_chain_walk(
            OLD.monitor_namespace, OLD.monitor_name, OLD.started_at, OLD.incident_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.monitor_name IS NOT NULL THEN
        PERFORM downtime_lock_monitor(NEW.monitor_namespace, NEW.monitor_name);
        PERFORM downtime_chain_walk(
            NEW.monitor_namespace, NEW.monitor_name, NEW.started_at, NEW.incident_id);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS downtime_incidents_chain_insert ON downtime_incidents;
CREATE TRIGGER downtime_incidents_chain_insert
    BEFORE INSERT ON downtime_incidents
    FOR EACH ROW EXECUTE FUNCTION downtime_incidents_chain_before();

DROP TRIGGER IF EXISTS downtime_incidents_chain_update ON downtime_incidents;
CREATE TRIGGER downtime_incidents_chain_update
    BEFORE UPDATE OF started_at, ended_at, monitor_namespace, monitor_name ON downtime_incidents
    FOR EACH ROW EXECUTE FUNCTION downtime_incidents_chain_before();

DROP TRIGGER IF EXISTS downtime_incidents_rollup_insert_delete ON downtime_incidents;
CREATE TRIGGER downtime_incidents_rollup_insert_delete
    AFTER INSERT OR DELETE ON downtime_incidents
    FOR EACH ROW EXECUTE FUNCTION downtime_incidents_rollup_after();

-- Only writes that move the figures: log-capture progress and notes do not pay for this.
DROP TRIGGER IF EXISTS downtime_incidents_rollup_update ON downtime_incidents;
CREATE TRIGGER downtime_incidents_rollup_update
    AFTER UPDATE ON downtime_incidents
    FOR EACH ROW
    WHEN (OLD.started_at IS DISTINCT FROM NEW.started_at
          OR OLD.ended_at IS DISTINCT FROM NEW.ended_at
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.severity IS DISTINCT FROM NEW.severity
          OR OLD.monitor_namespace IS DISTINCT FROM NEW.monitor_namespace
          OR OLD.monitor_name IS DISTINCT FROM NEW.monitor_name
          OR OLD.covered_before IS DISTINCT FROM NEW.covered_before)
    EXECUTE FUNCTION downtime_incidents_rollup_after();

-- Recompute covered_before and the rollups from the rows, set-based: for what was there before
-- this migration, and after a bulk load run with the triggers disabled (much faster than a
-- trigger call per row). Holds the table against writes while it runs.
CREATE OR REPLACE FUNCTION downtime_rebuild_rollups() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE downtime_incidents IN SHARE ROW EXCLUSIVE MODE;
    -- Neither the rollup trigger (rebuilt below anyway) nor updated_at: nothing was written.
    ALTER TABLE downtime_incidents DISABLE TRIGGER downtime_incidents_rollup_update;
    ALTER TABLE downtime_incidents DISABLE TRIGGER downtime_incidents_touch_updated_at;
    UPDATE downtime_incidents i
    SET covered_before = w.covered_before
    FROM (
        SELECT incident_id,
               max(COALESCE(ended_at, 'infinity'::timestamptz)) OVER (
                   PARTITION BY monitor_namespace, monitor_name
                   ORDER BY started_at, incident_id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
               ) AS covered_before
        FROM downtime_incidents
        WHERE monitor_name IS NOT NULL
    ) w
    WHERE i.incident_id = w.incident_id AND i.covered_before IS DISTINCT FROM w.covered_before;
    ALTER TABLE downtime_incidents ENABLE TRIGGER downtime_incidents_touch_updated_at;
    ALTER TABLE downtime_incidents ENABLE TRIGGER downtime_incidents_rollup_update;

    DELETE FROM downtime_incident_days;
    INSERT INTO downtime_incident_days (day, severity, incidents, micros, longest_micros)
    SELECT (started_at AT TIME ZONE 'UTC')::date, severity, count(*),
           sum(downtime_micros(started_at, ended_at)), max(downtime_micros(started_at, ended_at))
    FROM downtime_incidents
    WHERE status = 'resolved'
    GROUP BY 1, 2;

    DELETE FROM downtime_monitor_spans;
    INSERT INTO downtime_monitor_spans
        (level, bucket, monitor_namespace, monitor_name, incidents, union_micros)
    SELECT level, ((started_at AT TIME ZONE 'UTC')::date - DATE '1970-01-01') >> level,
           COALESCE(monitor_namespace, ''), monitor_name,
           count(*), sum(downtime_micros(GREATEST(started_at, covered_before), ended_at))
    FROM downtime_incidents CROSS JOIN generate_series(0, 8) AS level
    WHERE status = 'resolved' AND monitor_name IS NOT NULL
    GROUP BY 1, 2, 3, 4;
END
$$;

SELECT downtime_rebuild_rollups();

-- Newest first for the unfiltered list (keyset on started_at, incident_id), and the statistics'
-- partial first and last days: the columns they read are included, so those rows come from the
-- index alone instead of one table page each (a resolved incident's row has been rewritten a few
-- times and is seldom near its neighbours in time).
CREATE INDEX IF NOT EXISTS downtime_incidents_newest_idx
    ON downtime_incidents (started_at, incident_id)
    INCLUDE (ended_at, covered_before, status, severity, monitor_namespace, monitor_name);

-- The statistics' edge cases, each a short index range: incidents spanning the period's start
-- (a range containment, which no b-tree on started_at or ended_at can bound), and incidents
-- still running at its end.
CREATE INDEX IF NOT EXISTS downtime_incidents_span_idx
    ON downtime_incidents
    USING gist (tstzrange(started_at, COALESCE(ended_at, 'infinity'::timestamptz)));
