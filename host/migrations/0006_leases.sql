-- Leases: several runners share one store and split its unfinished runs between them.
--
-- A runner drives a run only while it holds the run's lease: `runner_id` (migration 2) is
-- the holder, `lease_expires_ms` when the lease ends on the database's clock (NULL: nobody
-- holds it — never claimed, or released by a clean stop), `lease_epoch` how many times the
-- run was claimed. Each claim by a runner that does not hold a live lease bumps the epoch;
-- every commit of the run names the epoch its runner holds and lands only if it is still
-- the run's (fencing), so a runner that lost its lease (frozen, partitioned) can never
-- write over the new holder, and the epoch travels with each step it delivers.
ALTER TABLE rollouts ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN lease_expires_ms BIGINT;

-- The claim looks for unfinished runs whose lease is free or expired.
CREATE INDEX rollouts_by_lease ON rollouts (finished, lease_expires_ms);

-- A run's lease lives while its holder's lease does: a runner renews one row
-- (`runners.lease_until_ms`, the database's clock) for all the runs it holds, rather than
-- rewriting each run's row (on SQLite a whole record, spec and checkpoint included) every
-- renewal. `rollouts.lease_expires_ms` then says whether the holder still holds the run
-- (NULL: released) and until when it was first claimed.
ALTER TABLE runners ADD COLUMN lease_until_ms BIGINT;

-- A runner's renewal reads the runs it holds from this index alone.
CREATE INDEX rollouts_by_holder ON rollouts (runner_id, finished, id, lease_epoch, lease_expires_ms);
