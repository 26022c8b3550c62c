-- Several daemons, one database (issue 15). A source is split into `[ingest] shards` shards by a
-- hash of the series id; each shard is processed by one worker at a time, the one holding its
-- advisory lock (released by PostgreSQL when that worker's session ends, so a killed daemon's
-- shards are free at once). Live daemons register here and heartbeat; each takes a fair share of
-- every source's shards, and one that stops heartbeating for its lease timeout while its
-- session idles (a vanished machine, a hung process) has that session ended by the others.

-- The shard (0-based) of a series id among `shards`: the same on every daemon, since every
-- daemon asks the same server. Rows without a series go with the empty id, to one shard, which
-- counts them.
CREATE FUNCTION forecast.shard_of(series text, shards integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN shards <= 1 THEN 0
                ELSE ((hashtextextended(COALESCE(series, ''), 0) & 9223372036854775807) % shards)::integer END
$$;

-- One row per running daemon, written by its membership session.
CREATE TABLE forecast.worker_registry (
    worker        text             PRIMARY KEY,  -- host:pid:start time, unique per daemon run
    host          text             NOT NULL,
    pid           integer          NOT NULL,
    started_at    timestamptz      NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz      NOT NULL DEFAULT now(),
    backend_pid   integer          NOT NULL,     -- its membership session's backend
    sources       text[]           NOT NULL,     -- the sources it is configured for
    lease_timeout double precision NOT NULL      -- seconds without a heartbeat after which it is dead
);

-- Who processes each shard, and since when. The advisory lock decides; this row says who holds
-- it (for forecast.workers and for the lease timeout) and counts acquisitions (`generation`), so
-- a daemon that gets a shard back knows whether someone else processed it in between.
CREATE TABLE forecast.leases (
    source       text        NOT NULL,
    shards       integer     NOT NULL,
    shard        integer     NOT NULL,
    worker       text,
    backend_pid  integer,
    generation   bigint      NOT NULL DEFAULT 0,
    acquired_at  timestamptz,
    heartbeat_at timestamptz,
    PRIMARY KEY (source, shards, shard)
);

-- Live daemons: a heartbeat within their lease timeout and a session still open.
CREATE VIEW forecast.workers AS
SELECT w.worker, w.host, w.pid, w.started_at, w.heartbeat_at, w.sources,
       COALESCE((SELECT array_agg(l.source || ' ' || (l.shard + 1) || '/' || l.shards ORDER BY l.source, l.shard)
                 FROM forecast.leases l
                 WHERE l.worker = w.worker AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid)),
                '{}') AS shards,
       (SELECT count(*) FROM forecast.leases l
        JOIN forecast.series_state st ON st.source = l.source AND forecast.shard_of(st.series, l.shards) = l.shard
        WHERE l.worker = w.worker AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid)) AS series
FROM forecast.worker_registry w
WHERE w.heartbeat_at > now() - make_interval(secs => w.lease_timeout)
  AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.backend_pid);

-- The model that serves a series: its own (scope "series") or its shard's shared model ('*' for a
-- source of one shard, '*2/4' for the second of four), so forecast.status finds it.
ALTER TABLE forecast.series_state ADD COLUMN model_key text;

CREATE OR REPLACE VIEW forecast.status AS
SELECT st.source, st.series,
       st.last_observed_at,
       st.last_value,
       now() - st.last_observed_at       AS lag,
       st.observations,
       st.model_version,
       m.created_at                      AS last_retrain_at,
       m.train_loss                      AS last_retrain_loss,
       m.holdout_loss                    AS last_retrain_holdout_loss,
       st.bad_rows,
       COALESCE((SELECT sum(v::bigint) FROM jsonb_each_text(st.bad_rows) AS b(k, v)), 0) AS bad_rows_total,
       st.updated_at
FROM forecast.series_state st
LEFT JOIN LATERAL (
    SELECT created_at, train_loss, holdout_loss
    FROM forecast.models m
    WHERE m.source = st.source AND m.model_key IN (st.series, COALESCE(st.model_key, '*')) AND m.version = st.model_version
    ORDER BY m.model_key = st.series DESC, m.created_at DESC
    LIMIT 1
) m ON true;
