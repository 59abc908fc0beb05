-- Who drives each run: the runner processes (`rollgate run`, `rollgate serve`) that drive
-- runs on this store, each with a heartbeat, and on every run the runner that drives it.
--
-- A runner writes its row when it starts, updates `heartbeat_ms` every `period_ms` and
-- sets `stopped_ms` when it stops cleanly; a row whose heartbeat is older than three
-- periods and that never stopped belongs to a runner that died (SIGKILL, a lost machine).
-- Readers (`rollgate get`, the API) compare with their own clock; a later version with
-- several runners and leases adds its own columns (lease epoch, expiry) beside these.

CREATE TABLE runners (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    -- `run` or `serve`: what to restart.
    command TEXT NOT NULL,
    version TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    period_ms BIGINT NOT NULL,
    stopped_ms BIGINT
);

-- The runner that drives (or last drove) the run; NULL before any runner claimed it, and
-- on every run of a store older than this migration.
ALTER TABLE rollouts ADD COLUMN runner_id BIGINT REFERENCES runners (id);
