-- Why a point was flagged (issue 14): the check that gave it its score. One of residuals,
-- level_shift_day, level_shift_hours, out_of_range; NULL for points that were not flagged.

ALTER TABLE forecast.predictions ADD COLUMN reason text;
ALTER TABLE forecast.backtest_predictions ADD COLUMN reason text;

-- Replaced to add `reason` (CREATE OR REPLACE VIEW may only add columns at the end).
CREATE OR REPLACE VIEW forecast.anomalies AS
SELECT source, series, ts, actual, predicted, lower, upper, anomaly_score, observed_at, reason
FROM forecast.predictions
WHERE is_anomaly
ORDER BY ts DESC;
