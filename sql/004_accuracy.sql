-- One definition of accuracy: the replay report and forecast.accuracy compute the same metrics
-- from the same rows. A completed prediction now records the series' previous actual (the last
-- usable value before it, which is the persistence forecast MASE compares with), so MASE no
-- longer depends on which earlier rows happen to have predictions; sMAPE is added.

ALTER TABLE forecast.predictions ADD COLUMN previous_actual double precision;

-- Accuracy over the last `points` scored points of each series of each source.
-- MASE < 1 means better than repeating the last value.
CREATE FUNCTION forecast.accuracy_over(points integer)
RETURNS TABLE (source text, series text, points bigint, since timestamptz, mae double precision,
               rmse double precision, mase double precision, smape double precision,
               interval_coverage double precision)
LANGUAGE sql STABLE AS $$
    WITH scored AS (
        SELECT p.source, p.series, p.ts, p.actual, p.predicted, p.lower, p.upper, p.previous_actual,
               row_number() OVER (PARTITION BY p.source, p.series ORDER BY p.ts DESC) AS age
        FROM forecast.predictions p
        WHERE p.actual IS NOT NULL
    )
    SELECT s.source, s.series,
           count(*),
           min(s.ts),
           avg(abs(s.actual - s.predicted)),
           sqrt(avg((s.actual - s.predicted) ^ 2)),
           sum(abs(s.actual - s.predicted)) FILTER (WHERE s.previous_actual IS NOT NULL)
             / nullif(sum(abs(s.actual - s.previous_actual)), 0),
           100 * avg(CASE WHEN abs(s.actual) + abs(s.predicted) > 0
                          THEN 2 * abs(s.actual - s.predicted) / (abs(s.actual) + abs(s.predicted))
                          ELSE 0 END),
           avg(CASE WHEN s.actual BETWEEN s.lower AND s.upper THEN 1.0 ELSE 0.0 END)::double precision
    FROM scored s
    WHERE s.age <= points
    GROUP BY s.source, s.series
$$;

DROP VIEW forecast.accuracy;
CREATE VIEW forecast.accuracy AS
SELECT source, series, points, since, mae, rmse, mase, interval_coverage, smape
FROM forecast.accuracy_over(500);
