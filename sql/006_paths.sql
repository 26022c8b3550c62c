-- Multi-step horizons (issue 17). A model with [model] horizon = H issues, with every forecast,
-- a path of H steps. A path is one row (arrays indexed by step), so a cycle writes one row per
-- forecast whatever H is; views unnest it and complete each step with the actual from
-- forecast.predictions, which is written in the same transaction as the path's later steps
-- arrive: the actual of a path step is the actual of the prediction row at that time.
-- Steps are stored as real (float4): the model computes in float32, and a path row is then
-- about half the bytes to parse, log and keep.

CREATE TABLE forecast.paths (
    source        text NOT NULL,
    series        text NOT NULL,
    -- The time of the last observation the path was made from; step k is for
    -- issued_at + k * step_seconds.
    issued_at     timestamptz NOT NULL,
    step_seconds  double precision NOT NULL CHECK (step_seconds > 0),
    model_version bigint NOT NULL,
    predicted     real[] NOT NULL,
    lower         real[] NOT NULL,
    upper         real[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, series, issued_at),
    CHECK (cardinality(predicted) = cardinality(lower) AND cardinality(predicted) = cardinality(upper))
);

COMMENT ON TABLE forecast.paths IS
    'Forecast paths of horizon models: steps 1..H issued together after one observation. Query forecast.path and forecast.path_steps.';

-- Every step of every stored path, with its actual once it has arrived.
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

-- The newest path of every series: one row per step.
CREATE VIEW forecast.path AS
SELECT ps.source, ps.series, ps.issued_at, ps.ts, ps.step, ps.predicted, ps.lower, ps.upper, ps.model_version, ps.actual
FROM forecast.path_steps ps
JOIN (SELECT source, series, max(issued_at) AS issued_at FROM forecast.paths GROUP BY source, series) newest
  USING (source, series, issued_at);

-- Accuracy per step over the paths issued in the last `since` (by the issuing time), counting
-- only steps whose actual has arrived. MASE is scaled, as everywhere, by the one-step naive
-- error of the same target points (|actual − previous actual|), so step k's MASE compares its
-- errors with the ordinary step-to-step change of the series.
CREATE FUNCTION forecast.accuracy_by_step_over(since interval)
RETURNS TABLE (source text, series text, step integer, points bigint, mae double precision,
               rmse double precision, mase double precision, interval_coverage double precision)
LANGUAGE sql STABLE AS $$
    SELECT ps.source, ps.series, ps.step, count(*),
           avg(abs(ps.actual - ps.predicted)),
           sqrt(avg((ps.actual - ps.predicted) ^ 2)),
           sum(abs(ps.actual - ps.predicted)) FILTER (WHERE ps.previous_actual IS NOT NULL)
             / nullif(sum(abs(ps.actual - ps.previous_actual)), 0),
           avg(CASE WHEN ps.actual BETWEEN ps.lower AND ps.upper THEN 1.0 ELSE 0.0 END)::double precision
    FROM forecast.path_steps ps
    WHERE ps.actual IS NOT NULL
      AND ps.issued_at >= (SELECT max(issued_at) FROM forecast.paths q WHERE q.source = ps.source AND q.series = ps.series) - since
    GROUP BY ps.source, ps.series, ps.step
$$;

CREATE VIEW forecast.accuracy_by_step AS
SELECT * FROM forecast.accuracy_by_step_over(interval '7 days');

-- The daemon deletes paths issued more than [retention] paths_days before their series' newest
-- observation: one primary-key range per series, so no other index is needed.
