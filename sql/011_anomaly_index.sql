-- The flagged points of a set of series, fast (issue 15): a restart marks the history points the
-- daemon flagged (they stay out of training and scaling) from this small index instead of a
-- lookup in forecast.predictions for every history row. forecast.anomalies uses it too.
CREATE INDEX predictions_anomalies ON forecast.predictions (source, series, ts) WHERE is_anomaly;
