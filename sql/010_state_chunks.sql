-- Engine state in chunks (issue 15). A shared model's engine_state holds every series' scaling,
-- residuals and anomaly history: with 100,000 series it would pass PostgreSQL's 1 GB limit for
-- one value. forecast.models.engine_state now holds the first chunk (at most 8 MB) and
-- forecast.model_state_chunks the rest, in order; engine_state_chunks says how many there are.
-- A version's chunks go with it when it is pruned.

ALTER TABLE forecast.models ADD COLUMN engine_state_chunks integer NOT NULL DEFAULT 1;

CREATE TABLE forecast.model_state_chunks (
    source    text    NOT NULL,
    model_key text    NOT NULL,
    version   bigint  NOT NULL,
    chunk     integer NOT NULL CHECK (chunk >= 1),  -- 0 is forecast.models.engine_state
    bytes     bytea   NOT NULL,
    PRIMARY KEY (source, model_key, version, chunk),
    FOREIGN KEY (source, model_key, version) REFERENCES forecast.models ON DELETE CASCADE
);
