-- The rollgate store: rollouts with their checkpoints, the audit log, measurements, the
-- step ledger and the action requests the CLI leaves for a running runner.
--
-- Kept close to portable SQL (64-bit integers, TEXT, one nullable float, booleans as 0/1)
-- so a PostgreSQL backend needs little more than its own migration and placeholders:
-- `?` placeholders, `INTEGER PRIMARY KEY` ids and `RETURNING` are what SQLite-specific is.

CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    run BIGINT NOT NULL,
    spec TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    finished BIGINT NOT NULL DEFAULT 0 CHECK (finished IN (0, 1)),
    generation BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    UNIQUE (name, run)
);

CREATE INDEX rollouts_by_finished ON rollouts (finished, id);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY,
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    state_before TEXT NOT NULL,
    state_after TEXT NOT NULL,
    progress TEXT NOT NULL,
    UNIQUE (rollout_id, seq)
);

CREATE TABLE measurements (
    id INTEGER PRIMARY KEY,
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    phase_index BIGINT NOT NULL,
    metric TEXT NOT NULL,
    idx BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    verdict TEXT NOT NULL,
    value DOUBLE PRECISION,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    retention BIGINT NOT NULL
);

CREATE INDEX measurements_by_metric ON measurements (rollout_id, phase_index, metric, id);

CREATE TABLE steps (
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    step_id TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('intent', 'applied', 'failed')),
    result TEXT,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, step_id)
);

CREATE TABLE action_requests (
    id INTEGER PRIMARY KEY,
    -- The run the operator aimed at: a later run of the same name never takes it.
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    rollout TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    consumed_by BIGINT REFERENCES rollouts (id),
    consumed_ms BIGINT
);

CREATE INDEX action_requests_pending ON action_requests (rollout_id, consumed_by, id);
