-- Restart history: the daemon's two history queries (ForecastStore.history) side by side on a generated table.
--   scripts/pg-tmp run -- bash -c 'psql "$FORECASTD_DATABASE_URL" -q -v nseries=1000 -v nrows=5000 -v per=1000 -f bench/history_query.sql'
-- Each query runs twice (\g runs it again); compare the Time: lines. Standalone (its own minimal forecast tables): run it in a throwaway database.
\timing on
CREATE SCHEMA IF NOT EXISTS forecast;
CREATE TABLE forecast.series_state (source text, series text, watermark float8, PRIMARY KEY (source, series));
CREATE TABLE forecast.predictions (source text, series text, ts timestamptz, is_anomaly bool, PRIMARY KEY (source, series, ts));
CREATE TABLE public.readings (series text, ts timestamptz, v float8);
INSERT INTO public.readings SELECT 's' || s, timestamptz '2024-01-01' + k * interval '5 min', random()
  FROM generate_series(1, :nseries) s, generate_series(0, :nrows - 1) k;
CREATE INDEX ON public.readings (series, ts);
ANALYZE public.readings;
INSERT INTO forecast.series_state SELECT 'public.readings', 's' || s, extract(epoch from timestamptz '2024-01-01' + (:nrows - 1) * interval '5 min') FROM generate_series(1, :nseries) s;
ANALYZE forecast.series_state;
\echo window function
SELECT count(*) FROM (SELECT h.series, h.t, h.v, COALESCE(p.is_anomaly, false) FROM (
  SELECT r.series, r.t, r.v FROM (
    SELECT src.series, src.t, src.v, row_number() OVER (PARTITION BY src.series ORDER BY src.t DESC) AS k
    FROM (SELECT "series"::text AS series, extract(epoch from "ts")::float8 AS t, "v"::text AS v FROM "public"."readings") src
    JOIN forecast.series_state st ON st.source = 'public.readings' AND st.series = src.series
    WHERE src.t <= st.watermark) r WHERE r.k <= :per) h
  LEFT JOIN forecast.predictions p ON p.source = 'public.readings' AND p.series = h.series AND p.ts = to_timestamp(h.t)
  ORDER BY h.t, h.series) q;
\echo window function again
\g
\echo index walk
SELECT count(*) FROM (SELECT h.series, h.t, h.v, COALESCE(p.is_anomaly, false) FROM (
  SELECT h.series, h.t, h.v FROM forecast.series_state st CROSS JOIN LATERAL (
    SELECT "series"::text AS series, extract(epoch from "ts")::float8 AS t, "v"::text AS v FROM "public"."readings"
    WHERE "series"::text = st.series AND "ts" <= to_timestamp(st.watermark + 1e-6) AND extract(epoch from "ts")::float8 <= st.watermark
    ORDER BY "ts" DESC LIMIT :per) h
  WHERE st.source = 'public.readings' AND st.watermark IS NOT NULL) h
  LEFT JOIN forecast.predictions p ON p.source = 'public.readings' AND p.series = h.series AND p.ts = to_timestamp(h.t)
  ORDER BY h.t, h.series) q;
\echo index walk again
\g
