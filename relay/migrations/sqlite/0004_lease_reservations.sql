-- Open leases are no longer written (a replica's row is written once, when its lease ends), so the
-- highest lease id handed out is kept here, reserved in blocks: a restart continues above it and
-- never hands out an id that a worker of the previous run may still hold.
CREATE TABLE relay_meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
