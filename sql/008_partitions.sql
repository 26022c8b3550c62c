-- Retention (issue 15): forecast.predictions and forecast.paths grow by a row per observation for
-- as long as the daemon runs. Both are now partitioned by day (UTC) on their time column, so the
-- daemon removes old data by dropping whole partitions, never by a mass DELETE, and queries with
-- a time condition read only the days they ask for. Every view and query keeps its meaning: a
-- partitioned table answers queries as the whole table.
--
-- Each table has a default partition. It catches rows of a day that has no partition (the
-- daemon creates partitions before it writes, so normally only the pending forecasts it keeps
-- when it drops their day); forecast.ensure_day_partition moves such rows into a day's partition
-- when that day is created, so a key never lives in two partitions.

DROP VIEW forecast.latest;
DROP VIEW forecast.anomalies;
DROP VIEW forecast.path;
DROP VIEW forecast.path_steps;

ALTER TABLE forecast.predictions RENAME TO predictions_before_008;
ALTER TABLE forecast.predictions_before_008 RENAME CONSTRAINT predictions_pkey TO predictions_before_008_pkey;
ALTER INDEX forecast.predictions_pending RENAME TO predictions_before_008_pending;
ALTER TABLE forecast.paths RENAME TO paths_before_008;
ALTER TABLE forecast.paths_before_008 RENAME CONSTRAINT paths_pkey TO paths_before_008_pkey;

CREATE TABLE forecast.predictions (
    source          text             NOT NULL,
    series          text             NOT NULL,
    ts              timestamptz      NOT NULL,
    predicted       double precision NOT NULL,
    lower           double precision,
    upper           double precision,
    model_version   bigint,
    predicted_at    timestamptz      NOT NULL DEFAULT now(),
    actual          double precision,
    anomaly_score   double precision,
    is_anomaly      boolean,
    observed_at     timestamptz,
    previous_actual double precision,
    reason          text,
    PRIMARY KEY (source, series, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX predictions_pending ON forecast.predictions (source, series) WHERE actual IS NULL;
CREATE TABLE forecast.predictions_default PARTITION OF forecast.predictions DEFAULT;

CREATE TABLE forecast.paths (
    source        text NOT NULL,
    series        text NOT NULL,
    issued_at     timestamptz NOT NULL,
    step_seconds  double precision NOT NULL CHECK (step_seconds > 0),
    model_version bigint NOT NULL,
    predicted     real[] NOT NULL,
    lower         real[] NOT NULL,
    upper         real[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, series, issued_at),
    CHECK (cardinality(predicted) = cardinality(lower) AND cardinality(predicted) = cardinality(upper))
) PARTITION BY RANGE (issued_at);
CREATE TABLE forecast.paths_default PARTITION OF forecast.paths DEFAULT;

COMMENT ON TABLE forecast.paths IS
    'Forecast paths of horizon models: steps 1..H issued together after one observation. Query forecast.path and forecast.path_steps.';

-- The partition of `parent` (forecast.predictions or forecast.paths) for one UTC day, named
-- <parent>_pYYYYMMDD; created if missing, with that day's rows moved in from the default
-- partition. Returns true when it created the partition. Concurrent callers (several daemons)
-- take turns on an advisory lock, so each day is created once.
CREATE FUNCTION forecast.ensure_day_partition(parent text, day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key  text;
    name text := parent || '_p' || to_char(day, 'YYYYMMDD');
    lo   timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi   timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF parent NOT IN ('predictions', 'paths') THEN
        RAISE EXCEPTION 'forecast.ensure_day_partition: unknown table %', parent;
    END IF;
    key := CASE parent WHEN 'predictions' THEN 'ts' ELSE 'issued_at' END;
    IF to_regclass(format('forecast.%I', name)) IS NOT NULL THEN RETURN false; END IF;
    PERFORM pg_advisory_xact_lock(7316031416);
    IF to_regclass(format('forecast.%I', name)) IS NOT NULL THEN RETURN false; END IF;
    EXECUTE format('CREATE TEMP TABLE forecastd_partition_move (LIKE forecast.%I) ON COMMIT DROP', parent);
    EXECUTE format('WITH moved AS (DELETE FROM forecast.%I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                   'INSERT INTO forecastd_partition_move SELECT * FROM moved', parent || '_default', key, key)
        USING lo, hi;
    EXECUTE format('CREATE TABLE forecast.%I PARTITION OF forecast.%I FOR VALUES FROM (%L) TO (%L)', name, parent, lo, hi);
    EXECUTE format('INSERT INTO forecast.%I SELECT * FROM forecastd_partition_move', parent);
    DROP TABLE forecastd_partition_move;
    RETURN true;
END
$$;

-- Drops the day partitions of `parent` that end at or before `cutoff`. Pending predictions
-- (no actual yet) are kept: they move to the default partition, where the daemon finds them
-- when their series resumes. Completed rows of such days in the default partition are deleted
-- in batches of at most `batch` rows per call. Returns the partitions dropped.
CREATE FUNCTION forecast.drop_day_partitions(parent text, cutoff timestamptz, batch integer DEFAULT 10000) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    part    record;
    dropped integer := 0;
    key     text;
BEGIN
    IF parent NOT IN ('predictions', 'paths') THEN
        RAISE EXCEPTION 'forecast.drop_day_partitions: unknown table %', parent;
    END IF;
    key := CASE parent WHEN 'predictions' THEN 'ts' ELSE 'issued_at' END;
    PERFORM pg_advisory_xact_lock(7316031416);
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = format('forecast.%I', parent)::regclass
          AND c.relname ~ ('^' || parent || '_p[0-9]{8}$')
          AND (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE forecast.%I DETACH PARTITION forecast.%I', parent, part.relname);
        IF parent = 'predictions' THEN
            EXECUTE format('INSERT INTO forecast.predictions SELECT * FROM forecast.%I WHERE actual IS NULL', part.relname);
        END IF;
        EXECUTE format('DROP TABLE forecast.%I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    IF parent = 'predictions' THEN
        DELETE FROM forecast.predictions_default WHERE ctid IN (
            SELECT ctid FROM forecast.predictions_default WHERE ts < cutoff AND actual IS NOT NULL LIMIT batch);
    ELSE
        DELETE FROM forecast.paths_default WHERE ctid IN (
            SELECT ctid FROM forecast.paths_default WHERE issued_at < cutoff LIMIT batch);
    END IF;
    RETURN dropped;
END
$$;

-- Both run with the rights of the role that ran `forecastd migrate` (the owner of the tables,
-- which creating and detaching partitions needs) and are not for PUBLIC.
REVOKE ALL ON FUNCTION forecast.ensure_day_partition(text, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION forecast.drop_day_partitions(text, timestamptz, integer) FROM PUBLIC;

-- The existing rows, each day into its partition.
SELECT forecast.ensure_day_partition('predictions', d)
FROM (SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS d FROM forecast.predictions_before_008) days;
INSERT INTO forecast.predictions (source, series, ts, predicted, lower, upper, model_version, predicted_at, actual,
                                  anomaly_score, is_anomaly, observed_at, previous_actual, reason)
SELECT source, series, ts, predicted, lower, upper, model_version, predicted_at, actual,
       anomaly_score, is_anomaly, observed_at, previous_actual, reason
FROM forecast.predictions_before_008;
DROP TABLE forecast.predictions_before_008;

SELECT forecast.ensure_day_partition('paths', d)
FROM (SELECT DISTINCT (issued_at AT TIME ZONE 'UTC')::date AS d FROM forecast.paths_before_008) days;
INSERT INTO forecast.paths (source, series, issued_at, step_seconds, model_version, predicted, lower, upper, created_at)
SELECT source, series, issued_at, step_seconds, model_version, predicted, lower, upper, created_at
FROM forecast.paths_before_008;
DROP TABLE forecast.paths_before_008;

-- The views, as before, over the partitioned tables.
CREATE VIEW forecast.latest AS
SELECT source, series, ts AS forecast_for, predicted, lower, upper, model_version, predicted_at
FROM forecast.predictions
WHERE actual IS NULL;

CREATE VIEW forecast.anomalies AS
SELECT source, series, ts, actual, predicted, lower, upper, anomaly_score, observed_at, reason
FROM forecast.predictions
WHERE is_anomaly
ORDER BY ts DESC;

CREATE VIEW forecast.path_steps AS
SELECT p.source, p.series, p.issued_at,
       p.issued_at + make_interval(secs => p.step_seconds * s.step) AS ts,
       s.step,
       p.predicted[s.step] AS predicted, p.lower[s.step] AS lower, p.upper[s.step] AS upper,
       p.model_version,
       a.actual,
       a.previous_actual
FROM forecast.paths p
CROSS JOIN LATERAL generate_subscripts(p.predicted, 1) AS s(step)
LEFT JOIN forecast.predictions a
       ON a.source = p.source AND a.series = p.series
      AND a.ts = p.issued_at + make_interval(secs => p.step_seconds * s.step)
      AND a.actual IS NOT NULL;

CREATE VIEW forecast.path AS
SELECT ps.source, ps.series, ps.issued_at, ps.ts, ps.step, ps.predicted, ps.lower, ps.upper, ps.model_version, ps.actual
FROM forecast.path_steps ps
JOIN (SELECT source, series, max(issued_at) AS issued_at FROM forecast.paths GROUP BY source, series) newest
  USING (source, series, issued_at);
