-- Every replica changes state two or three times (leased, returned, accepted), and an index on a
-- six-valued column made each change a delete and an insert in a tree holding every replica ever.
-- The only query that needs it finds the leases left open by a crash; a partial index holds just
-- those rows.
DROP INDEX replicas_state;
CREATE INDEX replicas_leased ON replicas (lease_id) WHERE state = 'leased';
