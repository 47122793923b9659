-- Relays sharing one database elect one leader (see relay/src/cluster.rs): the row says which relay
-- leads, its peer address, and the epoch of its leadership. Every write of the leader checks the
-- epoch is still its own, so a relay that lost the lead without noticing writes nothing more. The
-- secret authenticates relays to each other: only what can read this database knows it.
CREATE TABLE relay_cluster (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    leader  TEXT   NOT NULL,
    epoch   BIGINT NOT NULL,
    secret  TEXT   NOT NULL
);
