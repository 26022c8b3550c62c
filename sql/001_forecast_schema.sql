-- forecastd's own schema. Later changes come as new numbered files; an applied file is never edited
-- (forecastd migrate refuses to run when an applied file's checksum changed).

CREATE SCHEMA IF NOT EXISTS forecast;

-- For users without a table of their own: point a [[source]] at forecast.observations.
CREATE TABLE forecast.observations (
    series text             NOT NULL,
    ts     timestamptz      NOT NULL,
    value  double precision,
    PRIMARY KEY (series, ts)
);

-- One row per predicted step. The row is written when the forecast is made (predicted, lower,
-- upper) and completed when the actual value arrives (actual, anomaly_score, is_anomaly).
CREATE TABLE forecast.predictions (
    source        text             NOT NULL,  -- the configured source table, e.g. public.prices
    series        text             NOT NULL,  -- the series id within that source
    ts            timestamptz      NOT NULL,  -- the time the prediction is for
    predicted     double precision NOT NULL,
    lower         double precision,
    upper         double precision,
    model_version bigint,
    predicted_at  timestamptz      NOT NULL DEFAULT now(),
    actual        double precision,
    anomaly_score double precision,
    is_anomaly    boolean,
    observed_at   timestamptz,
    PRIMARY KEY (source, series, ts)
);
CREATE INDEX predictions_pending ON forecast.predictions (source, series) WHERE actual IS NULL;

-- Model checkpoints, versioned; the daemon keeps the last N per model. model_key is the series a
-- model serves, or '*' for a model shared by all series of the source.
CREATE TABLE forecast.models (
    source               text        NOT NULL,
    model_key            text        NOT NULL,
    version              bigint      NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    trained_at_point     bigint,
    windows              bigint,
    train_loss           double precision,
    holdout_loss         double precision,
    previous_holdout_loss double precision,
    checkpoint           bytea,      -- weights and optimizer state (forecastd's checkpoint format)
    engine_state         bytea,      -- per-series scaling, residuals and anomaly history
    PRIMARY KEY (source, model_key, version)
);

-- Per-series progress and health: the watermark is advanced in the same transaction that writes
-- the predictions it produced, which is what makes write-back exactly-once across crashes.
CREATE TABLE forecast.series_state (
    source            text        NOT NULL,
    series            text        NOT NULL,
    watermark         double precision,  -- the source time of the last row read, in epoch seconds
    observations      bigint      NOT NULL DEFAULT 0,
    last_value        double precision,
    last_observed_at  timestamptz,
    model_version     bigint,
    bad_rows          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, series)
);
