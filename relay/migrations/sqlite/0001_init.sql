-- Starling relay state. Written by one task (the relay core) per relay; read by API handlers.
-- Keys, hashes and signatures are lowercase hex text so the schema ports to PostgreSQL unchanged.

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    client          TEXT    NOT NULL,
    signature       TEXT    NOT NULL,
    spec_json       TEXT    NOT NULL,
    label           TEXT    NOT NULL,
    kernel          TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    tasks_total     INTEGER NOT NULL,
    tasks_verified  INTEGER NOT NULL DEFAULT 0,
    tasks_failed    INTEGER NOT NULL DEFAULT 0,
    created_at_ms   BIGINT  NOT NULL,
    deadline_ms     BIGINT  NOT NULL,
    finished_at_ms  BIGINT,
    failure         TEXT
);
CREATE INDEX jobs_state ON jobs (state);

CREATE TABLE tasks (
    job_id       INTEGER NOT NULL REFERENCES jobs (id),
    idx          INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'verified', 'failed')),
    output_hash  TEXT,
    lapses       INTEGER NOT NULL DEFAULT 0,
    failure      TEXT,
    decided_at_ms BIGINT,
    PRIMARY KEY (job_id, idx)
);

-- One row per replica handed out (a lease). Rejected rows keep the dissenter's signed hash as
-- evidence for slashing.
CREATE TABLE replicas (
    lease_id        INTEGER PRIMARY KEY,
    job_id          INTEGER NOT NULL,
    idx             INTEGER NOT NULL,
    worker          TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('leased', 'returned', 'accepted', 'rejected', 'lapsed', 'cancelled')),
    output_hash     TEXT,
    output_len      BIGINT,
    signature       TEXT,
    assigned_at_ms  BIGINT  NOT NULL,
    returned_at_ms  BIGINT,
    FOREIGN KEY (job_id, idx) REFERENCES tasks (job_id, idx)
);
CREATE INDEX replicas_task ON replicas (job_id, idx);
CREATE INDEX replicas_state ON replicas (state);

CREATE TABLE workers (
    key                TEXT   PRIMARY KEY,
    capabilities       TEXT   NOT NULL,
    first_seen_ms      BIGINT NOT NULL,
    last_seen_ms       BIGINT NOT NULL,
    replicas_returned  BIGINT NOT NULL DEFAULT 0,
    replicas_accepted  BIGINT NOT NULL DEFAULT 0,
    replicas_rejected  BIGINT NOT NULL DEFAULT 0
);
