-- Engine state is stored uncompressed. Since the state packs what it can itself (two-byte
-- lists, sealed blocks) and holds each series' window, lz4 saved 4 % of it (3,482 MB of state
-- for 100,000 series stored in 3,336 MB) and cost a third of the checkpoint's write: 10,000
-- series, 349 MB, written in 3.2 and 3.4 s with lz4 against 2.3 and 2.2 s uncompressed.
-- EXTERNAL keeps the values out of line (TOAST) without compressing them; values already
-- stored keep their compression until rewritten. The model checkpoints keep lz4.
ALTER TABLE forecast.models ALTER COLUMN engine_state SET STORAGE EXTERNAL;
ALTER TABLE forecast.model_state_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;
