-- Engine state written a chunk at a time (issue 15). A checkpoint no longer encodes the whole
-- state before writing it (at 100,000 series that held 3.5 GB beside the engine): it writes
-- each chunk as it is made, under a new generation, and a version's row points at its chunks'
-- generation only once the last is written. Until then a restart reads the previous
-- generation, and the chunks of one that never finished (a crash, a lost connection) are
-- deleted by the next checkpoint of the version.
ALTER TABLE forecast.models ADD COLUMN state_generation bigint NOT NULL DEFAULT 0;
ALTER TABLE forecast.model_state_chunks ADD COLUMN generation bigint NOT NULL DEFAULT 0;
ALTER TABLE forecast.model_state_chunks DROP CONSTRAINT model_state_chunks_pkey;
ALTER TABLE forecast.model_state_chunks ADD PRIMARY KEY (source, model_key, version, generation, chunk);
