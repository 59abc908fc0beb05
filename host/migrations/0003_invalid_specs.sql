-- Rollout by rollout loading (the `invalid-spec` state) and configuration generations.
--
-- invalid_specs: each rollout whose documents (or a template, plugin or backend it uses) do
-- not load or set up, with every problem as `file:line:col: field: what to do` (a JSON
-- array of strings), since when, and the unfinished run held (not driven) because of them.
-- A row is removed when the rollout loads again.
CREATE TABLE invalid_specs (
    name TEXT PRIMARY KEY NOT NULL,
    problems TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    held_run BIGINT
);

-- configurations: each distinct configuration a runner loaded, numbered. A run records the
-- generation it runs with; a run that adopts a newer one (a resume after a fix) is audited
-- with both numbers.
CREATE TABLE configurations (
    generation INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    loaded_ms BIGINT NOT NULL
);
