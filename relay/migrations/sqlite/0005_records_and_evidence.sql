-- The scheduler's record of each worker key, kept across restarts: its run of verified results
-- (reliability and lease cap), its abandons and cooldown (wall-clock ms), and whether a failed
-- known-answer check barred it from paid work. Written at most once a second per changed key.
CREATE TABLE worker_records (
    key              TEXT    PRIMARY KEY,
    valid_run        INTEGER NOT NULL,
    abandoned        INTEGER NOT NULL,
    cooling_until_ms BIGINT  NOT NULL,
    barred           INTEGER NOT NULL
) WITHOUT ROWID;

-- A rejected result is slashing evidence unless it was outvoted on a side that drew sampled
-- votes of its own (an audit or a dispute replica that lost): there the sample may simply have
-- been unlucky, and the relay never asks the contract to slash it.
ALTER TABLE replicas ADD COLUMN evidence INTEGER NOT NULL DEFAULT 1;
