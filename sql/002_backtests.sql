-- Results of `forecastd replay --write-table`: one run per replay, one row per input row.

CREATE TABLE forecast.backtest_runs (
    run_id      bigserial   PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    source      text        NOT NULL,   -- the CSV path or table the run read
    settings    jsonb       NOT NULL,   -- every engine setting of the run
    report      jsonb                   -- the metrics of --report
);

CREATE TABLE forecast.backtest_predictions (
    run_id        bigint           NOT NULL REFERENCES forecast.backtest_runs ON DELETE CASCADE,
    row_number    bigint           NOT NULL,   -- position in the input, from 1
    series        text             NOT NULL,
    ts            text             NOT NULL,   -- the timestamp as the input wrote it
    actual        double precision,
    predicted     double precision,
    lower         double precision,
    upper         double precision,
    anomaly_score double precision NOT NULL,
    is_anomaly    boolean          NOT NULL,
    PRIMARY KEY (run_id, row_number)
);
