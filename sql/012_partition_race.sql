-- forecast.ensure_day_partition, race-free: two daemons (or two sources of one daemon, each
-- committing on its own connection) that need the same new day both passed the second check
-- after the advisory lock, and the later one failed with "relation ... already exists".
CREATE OR REPLACE FUNCTION forecast.ensure_day_partition(parent text, day date) RETURNS boolean
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
    -- Not to_regclass again: it answers from this backend's relation cache, which still holds
    -- the "no such table" of the check above until an invalidation is read, and an advisory
    -- lock reads none. pg_class under this statement's snapshot sees the other caller's commit.
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'forecast' AND c.relname = name) THEN
        RETURN false;
    END IF;
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
