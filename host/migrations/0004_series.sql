-- The series of every metric of a run: one point per measurement (time, value, verdict),
-- what the web view charts. Measurements (migration 1) keep every failure and only the
-- last N of the rest, with the plugin's message and details; the series keeps every
-- measurement, compactly, and is never pruned by that retention.
--
-- Bounded: at most 1,000 points per (run, phase, metric). When an append passes the cap,
-- the oldest half is merged two by two (the later time, the worse verdict and its value,
-- the counts summed), so recent points stay exact and a long run keeps its shape. `count`
-- is how many measurements a point stands for (1 unless merged).
--
-- Runs recorded before this migration have no series (their kept measurements remain).

CREATE TABLE series_points (
    id INTEGER PRIMARY KEY,
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    -- The phase measured; -1 for background verification.
    phase_index BIGINT NOT NULL,
    metric TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    value DOUBLE PRECISION,
    -- pass, fail, inconclusive, no-data or error (the worst of a merged point's).
    verdict TEXT NOT NULL,
    count BIGINT NOT NULL DEFAULT 1
);

CREATE INDEX series_points_by_metric ON series_points (rollout_id, phase_index, metric, at_ms);

-- How many points each series holds now: an append learns it from this row (one upsert)
-- instead of counting the points, and merges only when it passes the cap.
CREATE TABLE series (
    rollout_id BIGINT NOT NULL REFERENCES rollouts (id),
    phase_index BIGINT NOT NULL,
    metric TEXT NOT NULL,
    points BIGINT NOT NULL,
    PRIMARY KEY (rollout_id, phase_index, metric)
);
