-- Checkpoints are written beside ingest (every few minutes and after each accepted retrain), so
-- their cost is latency for the rows that arrive meanwhile. pglz took 150 ms to store 4.5 MB of
-- engine state that an uncompressed or lz4 write stores in 40 ms, and lz4 compresses the floats
-- a little better (2.4 against 2.7 MB). lz4 where the server was built with it; otherwise out of
-- line and uncompressed. Values already stored keep their compression until rewritten.
DO $$
BEGIN
    ALTER TABLE forecast.models ALTER COLUMN engine_state SET COMPRESSION lz4,
                                ALTER COLUMN checkpoint SET COMPRESSION lz4;
    ALTER TABLE forecast.model_state_chunks ALTER COLUMN bytes SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE forecast.models ALTER COLUMN engine_state SET STORAGE EXTERNAL,
                                ALTER COLUMN checkpoint SET STORAGE EXTERNAL;
    ALTER TABLE forecast.model_state_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;
END $$;
