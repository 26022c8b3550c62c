-- Nothing lost: every row committed to a source table reaches forecastd through a queue that the
-- source's trigger fills in the writer's own transaction, with the writer's transaction id.
-- The daemon takes rows only once every transaction that began before them has ended (their
-- xid is below the oldest running one), so a writer that commits late cannot slip a row behind
-- the daemon's back; it deletes what it took in the same transaction that writes what the rows
-- produced, so each row is observed exactly once. Rows that arrive after their series moved on
-- are counted as late, never dropped silently.

CREATE TABLE forecast.ingest_queue (
    id        bigserial        PRIMARY KEY,
    source    text             NOT NULL,
    xid       xid8             NOT NULL,
    queued_at timestamptz      NOT NULL DEFAULT now(),
    series    text,             -- NULL: counted as null_series
    t         double precision, -- epoch seconds; NULL, NaN, ±Infinity: counted as bad_time
    v         text
);
CREATE INDEX ingest_queue_next ON forecast.ingest_queue (source, t, series, id);

-- Per source: rows that belong to no series, and what is wrong with the source if anything.
CREATE TABLE forecast.source_state (
    source        text        PRIMARY KEY,
    bad_rows      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    problem       text,
    problem_since timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One trigger function for every source. It runs with the rights of its owner (the role that ran
-- `forecastd migrate`), so a writer with only INSERT on its own table needs nothing in schema
-- forecast; its search_path is pinned and the table's columns arrive as trigger arguments,
-- quoted with format('%I'), never spliced into a function body.
--   TG_ARGV: source key, series column ('' for a table that is one series), time column,
--            time kind ('epoch' for numeric columns, else a date/time type), value column.
CREATE FUNCTION forecast.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src         text := TG_ARGV[0];
    series_expr text := CASE WHEN TG_ARGV[1] = '' THEN quote_literal(TG_ARGV[0]) ELSE format('%I::text', TG_ARGV[1]) END;
    time_expr   text := CASE WHEN TG_ARGV[3] = 'epoch' THEN format('%I::float8', TG_ARGV[2])
                             ELSE format('extract(epoch FROM %I)::float8', TG_ARGV[2]) END;
BEGIN
    EXECUTE format('INSERT INTO forecast.ingest_queue (source, xid, series, t, v) '
                   'SELECT $1, pg_current_xact_id(), %s, %s, %I::text FROM forecastd_new_rows',
                   series_expr, time_expr, TG_ARGV[4]) USING src;
    PERFORM pg_notify('forecastd', src);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION forecast.capture() FROM PUBLIC;

-- Late rows are now counted by the daemon from the queue.
DROP TABLE forecast.late_rows;

-- Health per source: a row for every source the daemon knows, with its problem (a missing
-- table, a column of the wrong type, no rights) and the rows that belong to no series.
CREATE VIEW forecast.sources AS
SELECT s.source,
       s.problem,
       s.problem_since,
       s.bad_rows,
       (SELECT count(*) FROM forecast.series_state st WHERE st.source = s.source) AS series,
       (SELECT count(*) FROM forecast.ingest_queue q WHERE q.source = s.source)   AS queued_rows,
       s.updated_at
FROM forecast.source_state s;

-- Model versions are never reused: `forecastd models rollback` stores an old version again as a
-- new one, and says which.
ALTER TABLE forecast.models ADD COLUMN restored_from bigint;
