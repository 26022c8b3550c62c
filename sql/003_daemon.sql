-- What `forecastd run` needs beyond the tables: the wake-up trigger function, late-row capture
-- and the views analysts query.

-- Rows that arrived for a series at or before its watermark (too late to be forecast). The
-- trigger that `forecastd migrate --config` installs on each source fills it; the daemon moves
-- the counts into forecast.series_state.bad_rows.
CREATE TABLE forecast.late_rows (
    source  text             NOT NULL,
    series  text             NOT NULL,
    t       double precision NOT NULL,
    seen_at timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX late_rows_source ON forecast.late_rows (source);

-- The pending next-step forecast of every series.
CREATE VIEW forecast.latest AS
SELECT source, series, ts AS forecast_for, predicted, lower, upper, model_version, predicted_at
FROM forecast.predictions
WHERE actual IS NULL;

-- Every flagged observation, newest first.
CREATE VIEW forecast.anomalies AS
SELECT source, series, ts, actual, predicted, lower, upper, anomaly_score, observed_at
FROM forecast.predictions
WHERE is_anomaly
ORDER BY ts DESC;

-- Accuracy over the last 500 scored points of each series. MASE < 1 means better than
-- repeating the last value.
CREATE VIEW forecast.accuracy AS
WITH scored AS (
    SELECT source, series, ts, actual, predicted, lower, upper,
           lag(actual) OVER w AS previous,
           row_number() OVER (PARTITION BY source, series ORDER BY ts DESC) AS age
    FROM forecast.predictions
    WHERE actual IS NOT NULL
    WINDOW w AS (PARTITION BY source, series ORDER BY ts)
)
SELECT source, series,
       count(*)                                        AS points,
       min(ts)                                         AS since,
       avg(abs(actual - predicted))                    AS mae,
       sqrt(avg((actual - predicted) ^ 2))             AS rmse,
       avg(abs(actual - predicted)) FILTER (WHERE previous IS NOT NULL)
         / nullif(avg(abs(actual - previous)), 0)      AS mase,
       avg(CASE WHEN actual BETWEEN lower AND upper THEN 1.0 ELSE 0.0 END) AS interval_coverage
FROM scored
WHERE age <= 500
GROUP BY source, series;

-- Health per series: what arrived last, how far behind it is, which model serves it, and the
-- rows it could not use.
CREATE VIEW forecast.status AS
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
    WHERE m.source = st.source AND m.model_key IN (st.series, '*') AND m.version = st.model_version
    ORDER BY m.created_at DESC
    LIMIT 1
) m ON true;

-- Adds bad-row counters: {"late": 2} + {"late": 1, "null_value": 1} = {"late": 3, "null_value": 1}.
CREATE FUNCTION forecast.add_counts(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(jsonb_object_agg(k, total), '{}'::jsonb)
    FROM (SELECT k, sum(v::bigint) AS total
          FROM (SELECT * FROM jsonb_each_text(COALESCE(a, '{}')) UNION ALL
                SELECT * FROM jsonb_each_text(COALESCE(b, '{}'))) AS kv(k, v)
          GROUP BY k) t
$$;
