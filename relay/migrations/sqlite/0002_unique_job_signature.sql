-- A signed job is posted once: ed25519 signatures (checked strictly) are deterministic, so the
-- same client signing the same spec gives the same signature, and a replay of a posted job is
-- refused instead of opening (and charging) a second job. Clients vary `nonce` for a new job
-- with the same contents.
CREATE UNIQUE INDEX jobs_signature ON jobs (signature);
