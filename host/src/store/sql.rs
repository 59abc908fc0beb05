//! The SQL text of every statement the store runs, one field per statement in a [`Sql`]
//! value per dialect.
//!
//! [`SQLITE`] and [`POSTGRES`]: the same fields, column names, row shapes and parameter
//! order in each; PostgreSQL has its own placeholders (`$1` for `?`), identity ids, its
//! clock, row locks for claims and notifications, and its own migrations
//! (`host/pg-migrations`). The store's code names fields of [`Sql`] and binds parameters
//! in the order the comments give ([`super::db`] picks the dialect where it runs), and
//! never writes SQL itself.

/// The columns of a [`RolloutRow`](super::RolloutRow), in every query that returns one.
macro_rules! rollout_columns {
    () => {
        "id, name, run, spec, checkpoint, state, finished, generation, created_ms, updated_ms"
    };
}

/// The columns of a [`RunnerRow`](super::RunnerRow), qualified (they are read joined with
/// `rollouts`).
macro_rules! runner_columns {
    () => {
        "runners.id, runners.host, runners.pid, runners.command, runners.version, \
         runners.started_ms, runners.heartbeat_ms, runners.period_ms, runners.stopped_ms"
    };
}

/// The same columns unqualified, for `RETURNING` (which names only the table written).
macro_rules! runner_returning {
    () => {
        "id, host, pid, command, version, started_ms, heartbeat_ms, period_ms, stopped_ms"
    };
}

/// The database's clock in milliseconds since the epoch, in SQLite: leases are timed by
/// the database, not by the runners' clocks.
macro_rules! sqlite_now_ms {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}

/// Verdicts whose measurements are never pruned.
macro_rules! kept_verdicts {
    () => {
        "('fail', 'error')"
    };
}

/// Which rollout rows [`Store::rollouts`](super::Store) selects; each filter is one query
/// of [`SelectRollouts`] and binds at most one parameter.
#[derive(Debug, Clone, Copy)]
pub(super) enum Filter<'a> {
    /// The row with this id.
    Id(i64),
    /// Every row, oldest first.
    All,
    /// Rows not in a final state, oldest first.
    Unfinished,
    /// Every run of this name, by run number.
    Runs(&'a str),
    /// The latest run of this name.
    Latest(&'a str),
    /// The latest run of every name, by id.
    LatestAll,
}

/// `SELECT` of rollout rows, one per [`Filter`].
#[derive(Debug)]
pub(super) struct SelectRollouts {
    /// Binds: id.
    pub by_id: &'static str,
    /// No binds.
    pub all: &'static str,
    /// No binds.
    pub unfinished: &'static str,
    /// Binds: name.
    pub runs_of: &'static str,
    /// Binds: name.
    pub latest_of: &'static str,
    /// No binds.
    pub latest_all: &'static str,
}

impl SelectRollouts {
    /// The query of `filter`.
    pub fn query(&self, filter: Filter<'_>) -> &'static str {
        match filter {
            Filter::Id(_) => self.by_id,
            Filter::All => self.all,
            Filter::Unfinished => self.unfinished,
            Filter::Runs(_) => self.runs_of,
            Filter::Latest(_) => self.latest_of,
            Filter::LatestAll => self.latest_all,
        }
    }
}

/// Every statement of the store in one dialect.
#[derive(Debug)]
pub(super) struct Sql {
    /// Rollout rows by filter.
    pub rollouts: SelectRollouts,
    /// Binds: updated_ms. Returns the latest run of every rollout whose latest run changed
    /// at or after it, with its last audit event's actor and action (the web view's list).
    pub latest_changed: &'static str,
    /// Binds: updated_ms. Returns (id, name, run, generation, updated_ms) of every run
    /// changed at or after it, by updated_ms (the web view's event polling).
    pub changed_since: &'static str,
    /// Binds: name, spec, checkpoint, state, created_ms, updated_ms, name. Returns the row.
    pub create_rollout: &'static str,
    /// Binds: checkpoint, state, finished, updated_ms, id, expected generation, lease
    /// epoch (nullable: no lease check) twice.
    pub bump_generation: &'static str,
    /// Binds: id. Returns (name, generation, lease_epoch).
    pub generation_of: &'static str,
    /// Binds: spec, id.
    pub replace_spec: &'static str,
    /// Binds: rollout id, at_ms, actor, action, reason, state_before, state_after,
    /// progress, rollout id. Returns the event's seq.
    pub append_event: &'static str,
    /// Binds: rollout id, phase_index, metric, idx, at_ms, verdict, value, message,
    /// details, retention.
    pub insert_measurement: &'static str,
    /// Binds: (rollout id, phase_index, metric) twice, then retention.
    pub prune_measurements: &'static str,
    /// Binds: rollout id. Returns the last ordinal (0 when none).
    pub last_ordinal: &'static str,
    /// Binds: rollout id, step_id, ordinal, step, updated_ms.
    pub insert_intent: &'static str,
    /// Binds: status, result, updated_ms, rollout id, step_id, lease epoch (nullable: no
    /// lease check) twice, rollout id.
    pub step_done: &'static str,
    /// Binds: rollout id. Returns step rows.
    pub steps: &'static str,
    /// Binds: rollout id. Returns audit rows.
    pub audit: &'static str,
    /// Binds: rollout id. Returns measurement rows.
    pub measurements: &'static str,
    /// Binds: action, actor, reason, at_ms, rollout id. Returns the new id.
    pub request_action: &'static str,
    /// Binds: rollout id. Returns action requests.
    pub pending_actions: &'static str,
    /// No binds. Returns the rollout id of every run with an unconsumed action request.
    pub runs_with_actions: &'static str,
    /// Binds: consumed_by, consumed_ms, action id, rollout id.
    pub consume_action: &'static str,
    /// Binds: action id. Returns (rollout_id, consumed_by).
    pub action_owner: &'static str,
    /// Binds: name, problems, since_ms, held_run. Keeps `since_ms` when the problems are
    /// the same.
    pub set_invalid: &'static str,
    /// Binds: name.
    pub clear_invalid: &'static str,
    /// No binds. Returns invalid-spec rows by name.
    pub invalid_specs: &'static str,
    /// Binds: name. Returns the invalid-spec row.
    pub invalid_spec: &'static str,
    /// No binds. Returns 1 when the store has the `invalid_specs` table (migration 3).
    pub tracks_invalid: &'static str,
    /// No binds. Returns (generation, fingerprint) of the newest configuration.
    pub latest_configuration: &'static str,
    /// Binds: fingerprint, loaded_ms, fingerprint. Adds a configuration unless the newest
    /// has this fingerprint.
    pub insert_configuration: &'static str,
    /// No binds. Returns 1 when the schema has the `runners` table (migration 2), else 0:
    /// a reader that does not migrate may open an older store.
    pub tracks_runners: &'static str,
    /// Binds: host, pid, command, version, started_ms, heartbeat_ms, period_ms. Returns
    /// the runner row.
    pub register_runner: &'static str,
    /// Binds: heartbeat_ms, runner id. Touches only a runner that has not stopped.
    pub heartbeat: &'static str,
    /// Binds: heartbeat_ms, stopped_ms, runner id.
    pub runner_stopped: &'static str,
    /// Binds: rollout id, runner id. Only the runner's own claim is released (and its
    /// lease with it).
    pub release_run: &'static str,
    /// Binds: rollout id. Returns the runner row of the run's runner, if any.
    pub runner_of: &'static str,
    /// No binds. Returns (rollout id, runner id) for every unfinished run with a runner:
    /// two integers a row, for a reader of many runs ([`super::Store::claims`]).
    pub claims: &'static str,
    /// No binds. Returns every runner row.
    pub runners: &'static str,
    /// The series of metrics (migration 4).
    pub series: SeriesSql,
    /// Leases (migration 6).
    pub leases: LeaseSql,
    /// The webhook outbox (migration 7).
    pub outbox: OutboxSql,
}

/// The statements of the webhook outbox ([`super::outbox`]); every time in them is the
/// database's. A row is *pending* while neither delivered nor failed.
#[derive(Debug)]
pub(super) struct OutboxSql {
    /// Binds: rollout id (nullable), seq (nullable), endpoint, body. Created and due now.
    pub insert: &'static str,
    /// Binds: endpoint. Serialises the claims of one endpoint until the transaction ends
    /// (PostgreSQL: an advisory lock; SQLite serialises writers anyway and touches nothing).
    pub claim_lock: &'static str,
    /// Binds: runner id, ttl_ms, endpoint, how many. Claims up to that many of the
    /// endpoint's pending rows, oldest first, for ttl_ms — only while no other runner holds
    /// a live claim on the endpoint and its oldest pending row is due (so the endpoint's
    /// rows go out in order, by one runner at a time). Returns (id, rollout_id, seq, body,
    /// attempts).
    pub claim: &'static str,
    /// Binds: runner id, ttl_ms. Extends the runner's claims on pending rows. Returns
    /// their ids.
    pub renew: &'static str,
    /// Binds: id. Marks the row delivered (one more attempt).
    pub delivered: &'static str,
    /// Binds: backoff_ms, last_error, id. One more attempt, due again after the backoff.
    pub retry: &'static str,
    /// Binds: last_error, id. Marks the row failed (one more attempt).
    pub failed: &'static str,
    /// Binds: runner id. Ends the runner's claims on pending rows.
    pub release: &'static str,
    /// No binds. Returns the endpoints with pending rows.
    pub endpoints: &'static str,
    /// No binds. Returns how many rows are pending.
    pub pending: &'static str,
    /// Binds: delivered age ms, failed age ms. Deletes rows delivered (failed) longer ago.
    pub prune: &'static str,
    /// No binds. Returns every row, by id.
    pub rows: &'static str,
}

/// The statements of leases ([`super::leases`]); every time in them is the database's.
#[derive(Debug)]
pub(super) struct LeaseSql {
    /// No binds. Returns the database's clock (ms since the epoch).
    pub now: &'static str,
    /// Binds: runner id, ttl_ms. The runner's lease: every run it holds lives until then
    /// (one row written per renewal, whatever the number of runs).
    pub runner_lease: &'static str,
    /// Binds: runner id, ttl_ms, how many. Claims up to that many unfinished runs whose
    /// lease is free or expired, oldest first, skipping rows another claimer has locked;
    /// each gets the next epoch. Returns (id, lease_epoch, lease_expires_ms).
    ///
    /// A lease is live while its runner's lease lasts *or* its own claim's expiry is
    /// ahead: on PostgreSQL a claimer whose snapshot predates another's committed claim
    /// re-checks the row's new version (read committed), but the `runners` subquery still
    /// reads its old snapshot, where the other runner's lease may not be renewed yet; the
    /// row's own `lease_expires_ms` is the new version's, so the run is not claimed twice
    /// (the four-claimer store test saw it 1 time in 3 under load).
    pub claim_free: &'static str,
    /// Binds: runner id, ttl_ms, rollout id. Claims one run — unfinished, or finished
    /// (an operator's request may reopen it) — if its lease is free, expired or the
    /// runner's own, always with the next epoch (a driver started again is told apart from
    /// the one before it, and that one's release frees nothing). Returns (id, lease_epoch,
    /// lease_expires_ms).
    pub claim_one: &'static str,
    /// Binds: runner id, ttl_ms, rollout id. Claims one unfinished run whoever holds it,
    /// with the next epoch. Returns (id, lease_epoch, lease_expires_ms).
    pub take_one: &'static str,
    /// Binds: runner id, runner id. The unfinished runs the runner holds, with its lease's
    /// end (after [`LeaseSql::runner_lease`] extended it). Returns (id, lease_epoch,
    /// lease_expires_ms).
    pub renew: &'static str,
    /// Binds: runner id, rollout id, epoch. Frees the run's lease if the runner holds it
    /// under that epoch (a later claim of the same run by the same runner is not freed).
    pub release_one: &'static str,
    /// Binds: runner id. Frees every lease the runner holds.
    pub release_all: &'static str,
    /// No binds. Returns (runner id, runs) for every runner holding live leases.
    pub held: &'static str,
    /// Binds: rollout id. Returns (runner_id, lease_epoch, lease_expires_ms, now) of the run.
    pub of_run: &'static str,
    /// No binds. Returns how many runs are unfinished.
    pub unfinished: &'static str,
    /// Binds: runner id. Ends every claim's own expiry of the runner's runs (tests: a
    /// lease that expired is its runner's lease and its claim both past).
    #[cfg(test)]
    pub expire_claims: &'static str,
}

/// The statements of the metric series ([`super::series`]).
#[derive(Debug)]
pub(super) struct SeriesSql {
    /// Binds: rollout id, phase_index, metric, at_ms, value, verdict.
    pub append: &'static str,
    /// Binds: rollout id, phase_index, metric, points appended. Returns the points the
    /// series holds now.
    pub count: &'static str,
    /// Binds: points, rollout id, phase_index, metric.
    pub set_count: &'static str,
    /// Binds: rollout id, phase_index, metric, how many. Returns the oldest points (id,
    /// at_ms, value, verdict, count), oldest first.
    pub oldest: &'static str,
    /// Binds: rollout id, phase_index, metric, then the at_ms and id of the newest point
    /// to delete: deletes it and every older point of the series.
    pub delete_oldest: &'static str,
    /// Binds: rollout id, phase_index, metric, a JSON array of points `{"id", "at_ms",
    /// "value", "verdict", "count"}` to insert (merged points keep the id of the later
    /// point they stand for, so the series' order stays).
    pub insert_merged: &'static str,
    /// Binds: rollout id. Returns the run's points by phase, metric and time.
    pub of_run: &'static str,
    /// No binds. Returns 1 when the store has the series (migration 4).
    pub tracked: &'static str,
}

/// SQLite: `?` placeholders, `RETURNING`, `ON CONFLICT … DO NOTHING`.
pub(super) const SQLITE: Sql = Sql {
    rollouts: SelectRollouts {
        by_id: concat!("SELECT ", rollout_columns!(), " FROM rollouts WHERE id = ?"),
        all: concat!("SELECT ", rollout_columns!(), " FROM rollouts ORDER BY id"),
        unfinished: concat!(
            "SELECT ",
            rollout_columns!(),
            " FROM rollouts WHERE finished = 0 ORDER BY id"
        ),
        runs_of: concat!(
            "SELECT ",
            rollout_columns!(),
            " FROM rollouts WHERE name = ? ORDER BY run"
        ),
        latest_of: concat!(
            "SELECT ",
            rollout_columns!(),
            " FROM rollouts WHERE name = ? ORDER BY run DESC LIMIT 1"
        ),
        // `UNIQUE (name, run)` answers the inner query per row.
        latest_all: concat!(
            "SELECT ",
            rollout_columns!(),
            " FROM rollouts AS r WHERE run = (SELECT MAX(run) FROM rollouts WHERE name = r.name) ORDER BY id"
        ),
    },
    // `rollouts_by_updated` (migration 5) finds the changed rows; `UNIQUE (name, run)` the
    // latest run and `UNIQUE (rollout_id, seq)` the last audit event.
    latest_changed: "SELECT r.id, r.name, r.run, r.spec, r.checkpoint, r.state, r.finished, \
         r.generation, r.created_ms, r.updated_ms, a.actor AS last_actor, a.action AS last_action \
         FROM rollouts r LEFT JOIN audit_events a ON a.rollout_id = r.id \
         AND a.seq = (SELECT MAX(seq) FROM audit_events WHERE rollout_id = r.id) \
         WHERE r.updated_ms >= ? AND r.run = (SELECT MAX(l.run) FROM rollouts l WHERE l.name = r.name) \
         ORDER BY r.id",
    changed_since: "SELECT id, name, run, generation, updated_ms FROM rollouts \
         WHERE updated_ms >= ? ORDER BY updated_ms, id",
    // A write first, so the transaction takes the write lock (waiting out the busy timeout)
    // before it reads anything.
    create_rollout: concat!(
        "INSERT INTO rollouts (name, run, spec, checkpoint, state, finished, generation, \
         created_ms, updated_ms) \
         SELECT ?, COALESCE(MAX(run), 0) + 1, ?, ?, ?, 0, 1, ?, ? \
         FROM rollouts WHERE name = ? RETURNING ",
        rollout_columns!()
    ),
    bump_generation: "UPDATE rollouts SET generation = generation + 1, checkpoint = ?, \
                      state = ?, finished = ?, updated_ms = ? WHERE id = ? AND generation = ? \
                      AND (? IS NULL OR lease_epoch = ?)",
    generation_of: "SELECT name, generation, lease_epoch FROM rollouts WHERE id = ?",
    replace_spec: "UPDATE rollouts SET spec = ? WHERE id = ?",
    append_event: "INSERT INTO audit_events (rollout_id, seq, at_ms, actor, action, reason, \
                   state_before, state_after, progress) \
                   SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, ?, ? \
                   FROM audit_events WHERE rollout_id = ? RETURNING seq",
    insert_measurement: "INSERT INTO measurements (rollout_id, phase_index, metric, idx, \
                         at_ms, verdict, value, message, details, retention) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    prune_measurements: concat!(
        "DELETE FROM measurements \
         WHERE rollout_id = ? AND phase_index = ? AND metric = ? \
         AND verdict NOT IN ",
        kept_verdicts!(),
        " AND id NOT IN (SELECT id FROM measurements \
         WHERE rollout_id = ? AND phase_index = ? AND metric = ? \
         AND verdict NOT IN ",
        kept_verdicts!(),
        " ORDER BY id DESC LIMIT ?)"
    ),
    last_ordinal: "SELECT COALESCE(MAX(ordinal), 0) AS last FROM steps WHERE rollout_id = ?",
    insert_intent: "INSERT INTO steps (rollout_id, step_id, ordinal, step, status, result, \
                    updated_ms) VALUES (?, ?, ?, ?, 'intent', NULL, ?) \
                    ON CONFLICT (rollout_id, step_id) DO NOTHING",
    step_done: "UPDATE steps SET status = ?, result = ?, updated_ms = ? \
                WHERE rollout_id = ? AND step_id = ? AND (? IS NULL OR ? = \
                (SELECT lease_epoch FROM rollouts WHERE id = ?))",
    steps: "SELECT step_id, step, status, result, updated_ms FROM steps \
            WHERE rollout_id = ? ORDER BY ordinal",
    audit: "SELECT seq, at_ms, actor, action, reason, state_before, state_after, progress \
            FROM audit_events WHERE rollout_id = ? ORDER BY seq",
    measurements: "SELECT phase_index, metric, idx, at_ms, verdict, value, message, details, \
                   retention FROM measurements WHERE rollout_id = ? ORDER BY id",
    request_action: "INSERT INTO action_requests (rollout_id, rollout, action, actor, reason, \
                     at_ms) SELECT id, name, ?, ?, ?, ? FROM rollouts WHERE id = ? RETURNING id",
    runs_with_actions: "SELECT DISTINCT rollout_id FROM action_requests WHERE consumed_by IS NULL",
    pending_actions: "SELECT id, rollout_id, rollout, action, actor, reason, at_ms \
                      FROM action_requests \
                      WHERE rollout_id = ? AND consumed_by IS NULL ORDER BY id",
    consume_action: "UPDATE action_requests SET consumed_by = ?, consumed_ms = ? \
                     WHERE id = ? AND rollout_id = ? AND consumed_by IS NULL",
    action_owner: "SELECT rollout_id, consumed_by FROM action_requests WHERE id = ?",
    set_invalid: "INSERT INTO invalid_specs (name, problems, since_ms, held_run) \
                  VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                  since_ms = CASE WHEN invalid_specs.problems = excluded.problems \
                  THEN invalid_specs.since_ms ELSE excluded.since_ms END, \
                  problems = excluded.problems, held_run = excluded.held_run",
    clear_invalid: "DELETE FROM invalid_specs WHERE name = ?",
    invalid_specs: "SELECT name, problems, since_ms, held_run FROM invalid_specs ORDER BY name",
    invalid_spec: "SELECT name, problems, since_ms, held_run FROM invalid_specs WHERE name = ?",
    tracks_invalid: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                     AND name = 'invalid_specs'",
    latest_configuration: "SELECT generation, fingerprint FROM configurations \
                           ORDER BY generation DESC LIMIT 1",
    insert_configuration: "INSERT INTO configurations (fingerprint, loaded_ms) SELECT ?, ? \
                           WHERE NOT EXISTS (SELECT 1 FROM configurations WHERE fingerprint = ? \
                           AND generation = (SELECT MAX(generation) FROM configurations))",
    tracks_runners: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'runners'",
    register_runner: concat!(
        "INSERT INTO runners (host, pid, command, version, started_ms, heartbeat_ms, \
         period_ms) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING ",
        runner_returning!()
    ),
    heartbeat: "UPDATE runners SET heartbeat_ms = ? WHERE id = ? AND stopped_ms IS NULL",
    runner_stopped: "UPDATE runners SET heartbeat_ms = ?, stopped_ms = ? WHERE id = ?",
    release_run: "UPDATE rollouts SET runner_id = NULL, lease_expires_ms = NULL \
                  WHERE id = ? AND runner_id = ?",
    runner_of: concat!(
        "SELECT ",
        runner_columns!(),
        " FROM rollouts JOIN runners ON runners.id = rollouts.runner_id WHERE rollouts.id = ?"
    ),
    claims: "SELECT id, runner_id FROM rollouts WHERE finished = 0 AND runner_id IS NOT NULL",
    runners: concat!("SELECT ", runner_columns!(), " FROM runners"),
    series: SeriesSql {
        append: "INSERT INTO series_points (rollout_id, phase_index, metric, at_ms, value, \
                 verdict, count) VALUES (?, ?, ?, ?, ?, ?, 1)",
        count: "INSERT INTO series (rollout_id, phase_index, metric, points) VALUES (?, ?, ?, ?) \
                ON CONFLICT (rollout_id, phase_index, metric) \
                DO UPDATE SET points = series.points + excluded.points RETURNING points",
        set_count: "UPDATE series SET points = ? \
                    WHERE rollout_id = ? AND phase_index = ? AND metric = ?",
        oldest: "SELECT id, at_ms, value, verdict, count FROM series_points \
                 WHERE rollout_id = ? AND phase_index = ? AND metric = ? \
                 ORDER BY at_ms, id LIMIT ?",
        delete_oldest: "DELETE FROM series_points \
                        WHERE rollout_id = ? AND phase_index = ? AND metric = ? \
                        AND (at_ms, id) <= (?, ?)",
        insert_merged: "INSERT INTO series_points (id, rollout_id, phase_index, metric, at_ms, \
                        value, verdict, count) \
                        SELECT json_extract(p.value, '$.id'), ?1, ?2, ?3, \
                        json_extract(p.value, '$.at_ms'), json_extract(p.value, '$.value'), \
                        json_extract(p.value, '$.verdict'), json_extract(p.value, '$.count') \
                        FROM json_each(?4) AS p",
        of_run: "SELECT phase_index, metric, at_ms, value, verdict, count FROM series_points \
                 WHERE rollout_id = ? ORDER BY phase_index, metric, at_ms, id",
        tracked: "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                  AND name = 'series_points'",
    },
    // SQLite serialises writers, so a claim needs no row locks: the first statement of the
    // transaction takes the write lock and sees every earlier claim.
    leases: LeaseSql {
        runner_lease: "UPDATE runners SET lease_until_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER) + ?2 WHERE id = ?1",
        now: concat!("SELECT ", sqlite_now_ms!()),
        claim_free: "UPDATE rollouts SET runner_id = ?1, lease_epoch = lease_epoch + 1, lease_expires_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER) + ?2 WHERE id IN (SELECT id FROM rollouts WHERE finished = 0 AND NOT (lease_expires_ms IS NOT NULL AND (lease_expires_ms >= CAST(unixepoch('subsec') * 1000 AS INTEGER) OR COALESCE((SELECT lease_until_ms FROM runners WHERE runners.id = rollouts.runner_id), 0) >= CAST(unixepoch('subsec') * 1000 AS INTEGER))) ORDER BY id LIMIT ?3) RETURNING id, lease_epoch, lease_expires_ms",
        claim_one: "UPDATE rollouts SET lease_epoch = lease_epoch + 1, runner_id = ?1, lease_expires_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER) + ?2 WHERE id = ?3 AND (NOT (lease_expires_ms IS NOT NULL AND (lease_expires_ms >= CAST(unixepoch('subsec') * 1000 AS INTEGER) OR COALESCE((SELECT lease_until_ms FROM runners WHERE runners.id = rollouts.runner_id), 0) >= CAST(unixepoch('subsec') * 1000 AS INTEGER))) OR runner_id = ?1) RETURNING id, lease_epoch, lease_expires_ms",
        take_one: concat!(
            "UPDATE rollouts SET lease_epoch = lease_epoch + 1, runner_id = ?1, \
             lease_expires_ms = ",
            sqlite_now_ms!(),
            " + ?2 WHERE id = ?3 AND finished = 0 RETURNING id, lease_epoch, lease_expires_ms"
        ),
        renew: "SELECT id, lease_epoch, COALESCE((SELECT lease_until_ms FROM runners WHERE runners.id = ?1), 0) AS lease_expires_ms FROM rollouts WHERE runner_id = ?1 AND finished = 0 AND lease_expires_ms IS NOT NULL",
        release_one: "UPDATE rollouts SET lease_expires_ms = NULL \
                      WHERE runner_id = ?1 AND id = ?2 AND lease_epoch = ?3",
        release_all: "UPDATE rollouts SET lease_expires_ms = NULL WHERE runner_id = ?1",
        held: "SELECT rollouts.runner_id, COUNT(*) FROM rollouts JOIN runners ON runners.id = rollouts.runner_id WHERE rollouts.finished = 0 AND rollouts.lease_expires_ms IS NOT NULL AND runners.lease_until_ms >= CAST(unixepoch('subsec') * 1000 AS INTEGER) GROUP BY rollouts.runner_id",
        of_run: "SELECT rollouts.runner_id, rollouts.lease_epoch, CASE WHEN rollouts.lease_expires_ms IS NULL THEN NULL ELSE runners.lease_until_ms END AS lease_expires_ms, CAST(unixepoch('subsec') * 1000 AS INTEGER) FROM rollouts LEFT JOIN runners ON runners.id = rollouts.runner_id WHERE rollouts.id = ?",
        unfinished: "SELECT COUNT(*) FROM rollouts WHERE finished = 0",
        #[cfg(test)]
        expire_claims: "UPDATE rollouts SET lease_expires_ms = 0 WHERE runner_id = ?1 AND lease_expires_ms IS NOT NULL",
    },
    outbox: OutboxSql {
        insert: concat!(
            "INSERT INTO outbox (rollout_id, seq, endpoint, body, created_ms, next_try_ms) \
             VALUES (?, ?, ?, ?, ",
            sqlite_now_ms!(),
            ", ",
            sqlite_now_ms!(),
            ")"
        ),
        claim_lock: "SELECT ? IS NOT NULL",
        claim: concat!(
            "UPDATE outbox SET claimed_by = ?1, claimed_until_ms = ",
            sqlite_now_ms!(),
            " + ?2 WHERE id IN (SELECT id FROM outbox WHERE endpoint = ?3 \
             AND delivered_ms IS NULL AND failed_ms IS NULL ORDER BY id LIMIT ?4) \
             AND NOT EXISTS (SELECT 1 FROM outbox b WHERE b.endpoint = ?3 \
             AND b.delivered_ms IS NULL AND b.failed_ms IS NULL AND b.claimed_by <> ?1 \
             AND b.claimed_until_ms >= ",
            sqlite_now_ms!(),
            ") AND (SELECT h.next_try_ms FROM outbox h WHERE h.endpoint = ?3 \
             AND h.delivered_ms IS NULL AND h.failed_ms IS NULL ORDER BY h.id LIMIT 1) <= ",
            sqlite_now_ms!(),
            " RETURNING id, rollout_id, seq, body, attempts"
        ),
        renew: concat!(
            "UPDATE outbox SET claimed_until_ms = ",
            sqlite_now_ms!(),
            " + ?2 WHERE claimed_by = ?1 AND claimed_until_ms IS NOT NULL \
             AND delivered_ms IS NULL AND failed_ms IS NULL RETURNING id"
        ),
        delivered: concat!(
            "UPDATE outbox SET attempts = attempts + 1, claimed_until_ms = NULL, \
             delivered_ms = ",
            sqlite_now_ms!(),
            " WHERE id = ?"
        ),
        retry: concat!(
            "UPDATE outbox SET attempts = attempts + 1, next_try_ms = ",
            sqlite_now_ms!(),
            " + ?, last_error = ? WHERE id = ?"
        ),
        failed: concat!(
            "UPDATE outbox SET attempts = attempts + 1, claimed_until_ms = NULL, \
             last_error = ?, failed_ms = ",
            sqlite_now_ms!(),
            " WHERE id = ?"
        ),
        release: "UPDATE outbox SET claimed_until_ms = NULL WHERE claimed_by = ? \
                  AND delivered_ms IS NULL AND failed_ms IS NULL",
        endpoints: "SELECT DISTINCT endpoint FROM outbox \
                    WHERE delivered_ms IS NULL AND failed_ms IS NULL",
        pending: "SELECT COUNT(*) FROM outbox WHERE delivered_ms IS NULL AND failed_ms IS NULL",
        prune: concat!(
            "DELETE FROM outbox WHERE delivered_ms < ",
            sqlite_now_ms!(),
            " - ?1 OR failed_ms < ",
            sqlite_now_ms!(),
            " - ?2"
        ),
        rows: "SELECT id, rollout_id, seq, endpoint, body, created_ms, attempts, next_try_ms, \
               claimed_by, claimed_until_ms, delivered_ms, failed_ms, last_error \
               FROM outbox ORDER BY id",
    },
};
/// PostgreSQL: `$n` placeholders, identity ids, `FOR UPDATE SKIP LOCKED` for claims, the
/// server's clock (`clock_timestamp()`) for leases, `finished` read back as a boolean.
pub(super) const POSTGRES: Sql = Sql {
    rollouts: SelectRollouts {
        by_id: "SELECT id, name, run, spec, checkpoint, state, (finished <> 0) AS finished, generation, created_ms, updated_ms FROM rollouts WHERE id = $1",
        all: "SELECT id, name, run, spec, checkpoint, state, (finished <> 0) AS finished, generation, created_ms, updated_ms FROM rollouts ORDER BY id",
        unfinished: "SELECT id, name, run, spec, checkpoint, state, (finished <> 0) AS finished, generation, created_ms, updated_ms FROM rollouts WHERE finished = 0 ORDER BY id",
        runs_of: "SELECT id, name, run, spec, checkpoint, state, (finished <> 0) AS finished, generation, created_ms, updated_ms FROM rollouts WHERE name = $1 ORDER BY run",
        latest_of: "SELECT id, name, run, spec, checkpoint, state, (finished <> 0) AS finished, generation, created_ms, updated_ms FROM rollouts WHERE name = $1 ORDER BY run DESC LIMIT 1",
        latest_all: "SELECT id, name, run, spec, checkpoint, state, (finished <> 0) AS finished, generation, created_ms, updated_ms FROM rollouts AS r WHERE run = (SELECT MAX(run) FROM rollouts WHERE name = r.name) ORDER BY id",
    },
    latest_changed: "SELECT r.id, r.name, r.run, r.spec, r.checkpoint, r.state, (r.finished <> 0) AS finished, r.generation, r.created_ms, r.updated_ms, a.actor AS last_actor, a.action AS last_action FROM rollouts r LEFT JOIN audit_events a ON a.rollout_id = r.id AND a.seq = (SELECT MAX(seq) FROM audit_events WHERE rollout_id = r.id) WHERE r.updated_ms >= $1 AND r.run = (SELECT MAX(l.run) FROM rollouts l WHERE l.name = r.name) ORDER BY r.id",
    changed_since: "SELECT id, name, run, generation, updated_ms FROM rollouts WHERE updated_ms >= $1 ORDER BY updated_ms, id",
    create_rollout: "INSERT INTO rollouts (name, run, spec, checkpoint, state, finished, generation, created_ms, updated_ms) SELECT $1, COALESCE(MAX(run), 0) + 1, $2, $3, $4, 0, 1, $5, $6 FROM rollouts WHERE name = $7 RETURNING id, name, run, spec, checkpoint, state, (finished <> 0) AS finished, generation, created_ms, updated_ms",
    bump_generation: "UPDATE rollouts SET generation = generation + 1, checkpoint = $1, \
                      state = $2, finished = $3, updated_ms = $4 WHERE id = $5 \
                      AND generation = $6 AND ($7::BIGINT IS NULL OR lease_epoch = $8)",
    generation_of: "SELECT name, generation, lease_epoch FROM rollouts WHERE id = $1",
    replace_spec: "UPDATE rollouts SET spec = $1 WHERE id = $2",
    // Every runner listens on `rollgate_events` (run id:seq), delivered at commit: a server
    // shows and streams the events of runs another runner drives.
    append_event: "WITH appended AS (INSERT INTO audit_events (rollout_id, seq, at_ms, actor, \
                   action, reason, state_before, state_after, progress) \
                   SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7, $8 \
                   FROM audit_events WHERE rollout_id = $9 RETURNING rollout_id, seq), \
                   told AS (SELECT pg_notify('rollgate_events', rollout_id::TEXT || ':' || \
                   seq::TEXT) FROM appended) \
                   SELECT appended.seq FROM appended, told",
    insert_measurement: "INSERT INTO measurements (rollout_id, phase_index, metric, idx, at_ms, verdict, value, message, details, retention) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    prune_measurements: "DELETE FROM measurements WHERE rollout_id = $1 AND phase_index = $2 AND metric = $3 AND verdict NOT IN ('fail', 'error') AND id NOT IN (SELECT id FROM measurements WHERE rollout_id = $4 AND phase_index = $5 AND metric = $6 AND verdict NOT IN ('fail', 'error') ORDER BY id DESC LIMIT $7)",
    last_ordinal: "SELECT COALESCE(MAX(ordinal), 0) AS last FROM steps WHERE rollout_id = $1",
    insert_intent: "INSERT INTO steps (rollout_id, step_id, ordinal, step, status, result, updated_ms) VALUES ($1, $2, $3, $4, 'intent', NULL, $5) ON CONFLICT (rollout_id, step_id) DO NOTHING",
    step_done: "UPDATE steps SET status = $1, result = $2, updated_ms = $3 WHERE rollout_id = $4 AND step_id = $5 AND ($6 IS NULL OR $7 = (SELECT lease_epoch FROM rollouts WHERE id = $8))",
    steps: "SELECT step_id, step, status, result, updated_ms FROM steps WHERE rollout_id = $1 ORDER BY ordinal",
    audit: "SELECT seq, at_ms, actor, action, reason, state_before, state_after, progress FROM audit_events WHERE rollout_id = $1 ORDER BY seq",
    measurements: "SELECT phase_index, metric, idx, at_ms, verdict, value, message, details, retention FROM measurements WHERE rollout_id = $1 ORDER BY id",
    // The holder of the run listens on `rollgate_actions` (the run's id): an action sent to
    // any runner (or the CLI) wakes it at once, delivered when this insert commits.
    request_action: "WITH requested AS (INSERT INTO action_requests (rollout_id, rollout, \
                     action, actor, reason, at_ms) SELECT id, name, $1, $2, $3, $4 FROM rollouts \
                     WHERE id = $5 RETURNING id, rollout_id), \
                     told AS (SELECT pg_notify('rollgate_actions', rollout_id::TEXT) FROM requested) \
                     SELECT requested.id FROM requested, told",
    runs_with_actions: "SELECT DISTINCT rollout_id FROM action_requests WHERE consumed_by IS NULL",
    pending_actions: "SELECT id, rollout_id, rollout, action, actor, reason, at_ms FROM action_requests WHERE rollout_id = $1 AND consumed_by IS NULL ORDER BY id",
    consume_action: "UPDATE action_requests SET consumed_by = $1, consumed_ms = $2 WHERE id = $3 AND rollout_id = $4 AND consumed_by IS NULL",
    action_owner: "SELECT rollout_id, consumed_by FROM action_requests WHERE id = $1",
    set_invalid: "INSERT INTO invalid_specs (name, problems, since_ms, held_run) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET since_ms = CASE WHEN invalid_specs.problems = excluded.problems THEN invalid_specs.since_ms ELSE excluded.since_ms END, problems = excluded.problems, held_run = excluded.held_run",
    clear_invalid: "DELETE FROM invalid_specs WHERE name = $1",
    invalid_specs: "SELECT name, problems, since_ms, held_run FROM invalid_specs ORDER BY name",
    invalid_spec: "SELECT name, problems, since_ms, held_run FROM invalid_specs WHERE name = $1",
    tracks_invalid: "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'invalid_specs'",
    latest_configuration: "SELECT generation, fingerprint FROM configurations ORDER BY generation DESC LIMIT 1",
    insert_configuration: "INSERT INTO configurations (fingerprint, loaded_ms) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM configurations WHERE fingerprint = $3 AND generation = (SELECT MAX(generation) FROM configurations))",
    tracks_runners: "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'runners'",
    register_runner: "INSERT INTO runners (host, pid, command, version, started_ms, heartbeat_ms, period_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, host, pid, command, version, started_ms, heartbeat_ms, period_ms, stopped_ms",
    heartbeat: "UPDATE runners SET heartbeat_ms = $1 WHERE id = $2 AND stopped_ms IS NULL",
    runner_stopped: "UPDATE runners SET heartbeat_ms = $1, stopped_ms = $2 WHERE id = $3",
    release_run: "UPDATE rollouts SET runner_id = NULL, lease_expires_ms = NULL WHERE id = $1 AND runner_id = $2",
    runner_of: "SELECT runners.id, runners.host, runners.pid, runners.command, runners.version, runners.started_ms, runners.heartbeat_ms, runners.period_ms, runners.stopped_ms FROM rollouts JOIN runners ON runners.id = rollouts.runner_id WHERE rollouts.id = $1",
    claims: "SELECT id, runner_id FROM rollouts WHERE finished = 0 AND runner_id IS NOT NULL",
    runners: "SELECT runners.id, runners.host, runners.pid, runners.command, runners.version, runners.started_ms, runners.heartbeat_ms, runners.period_ms, runners.stopped_ms FROM runners",
    series: SeriesSql {
        append: "INSERT INTO series_points (rollout_id, phase_index, metric, at_ms, value, verdict, count) VALUES ($1, $2, $3, $4, $5, $6, 1)",
        count: "INSERT INTO series (rollout_id, phase_index, metric, points) VALUES ($1, $2, $3, $4) ON CONFLICT (rollout_id, phase_index, metric) DO UPDATE SET points = series.points + excluded.points RETURNING points",
        set_count: "UPDATE series SET points = $1 WHERE rollout_id = $2 AND phase_index = $3 AND metric = $4",
        oldest: "SELECT id, at_ms, value, verdict, count FROM series_points WHERE rollout_id = $1 AND phase_index = $2 AND metric = $3 ORDER BY at_ms, id LIMIT $4",
        delete_oldest: "DELETE FROM series_points WHERE rollout_id = $1 AND phase_index = $2 AND metric = $3 AND (at_ms, id) <= ($4, $5)",
        insert_merged: "INSERT INTO series_points (id, rollout_id, phase_index, metric, at_ms, value, verdict, count) SELECT (p->>'id')::BIGINT, $1, $2, $3, (p->>'at_ms')::BIGINT, (p->>'value')::DOUBLE PRECISION, p->>'verdict', (p->>'count')::BIGINT FROM json_array_elements($4::TEXT::JSON) AS p",
        of_run: "SELECT phase_index, metric, at_ms, value, verdict, count FROM series_points WHERE rollout_id = $1 ORDER BY phase_index, metric, at_ms, id",
        tracked: "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'series_points'",
    },
    leases: LeaseSql {
        runner_lease: "UPDATE runners SET lease_until_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2 WHERE id = $1",
        now: "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        claim_free: "WITH free AS (SELECT id FROM rollouts WHERE finished = 0 AND NOT (lease_expires_ms IS NOT NULL AND (lease_expires_ms >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT OR COALESCE((SELECT lease_until_ms FROM runners WHERE runners.id = rollouts.runner_id), 0) >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)) ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) UPDATE rollouts SET runner_id = $1, lease_epoch = lease_epoch + 1, lease_expires_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2 FROM free WHERE rollouts.id = free.id RETURNING rollouts.id, rollouts.lease_epoch, rollouts.lease_expires_ms",
        claim_one: "UPDATE rollouts SET lease_epoch = lease_epoch + 1, runner_id = $1, lease_expires_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2 WHERE id = $3 AND (NOT (lease_expires_ms IS NOT NULL AND (lease_expires_ms >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT OR COALESCE((SELECT lease_until_ms FROM runners WHERE runners.id = rollouts.runner_id), 0) >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)) OR runner_id = $1) RETURNING id, lease_epoch, lease_expires_ms",
        take_one: "UPDATE rollouts SET lease_epoch = lease_epoch + 1, runner_id = $1, lease_expires_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2 WHERE id = $3 AND finished = 0 RETURNING id, lease_epoch, lease_expires_ms",
        renew: "SELECT id, lease_epoch, COALESCE((SELECT lease_until_ms FROM runners WHERE runners.id = $1), 0) AS lease_expires_ms FROM rollouts WHERE runner_id = $1 AND finished = 0 AND lease_expires_ms IS NOT NULL",
        release_one: "UPDATE rollouts SET lease_expires_ms = NULL WHERE runner_id = $1 AND id = $2 AND lease_epoch = $3",
        release_all: "UPDATE rollouts SET lease_expires_ms = NULL WHERE runner_id = $1",
        held: "SELECT rollouts.runner_id, COUNT(*) FROM rollouts JOIN runners ON runners.id = rollouts.runner_id WHERE rollouts.finished = 0 AND rollouts.lease_expires_ms IS NOT NULL AND runners.lease_until_ms >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT GROUP BY rollouts.runner_id",
        of_run: "SELECT rollouts.runner_id, rollouts.lease_epoch, CASE WHEN rollouts.lease_expires_ms IS NULL THEN NULL ELSE runners.lease_until_ms END AS lease_expires_ms, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT FROM rollouts LEFT JOIN runners ON runners.id = rollouts.runner_id WHERE rollouts.id = $1",
        unfinished: "SELECT COUNT(*) FROM rollouts WHERE finished = 0",
        #[cfg(test)]
        expire_claims: "UPDATE rollouts SET lease_expires_ms = 0 WHERE runner_id = $1 AND lease_expires_ms IS NOT NULL",
    },
    outbox: OutboxSql {
        // One reading of the clock for both: created and due at the same instant.
        insert: "INSERT INTO outbox (rollout_id, seq, endpoint, body, created_ms, next_try_ms) SELECT $1, $2, $3, $4, t.ms, t.ms FROM (SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS ms) AS t",
        claim_lock: "SELECT pg_advisory_xact_lock(7007, hashtext($1))",
        claim: "WITH due AS (SELECT id FROM outbox WHERE endpoint = $3 AND delivered_ms IS NULL AND failed_ms IS NULL AND NOT EXISTS (SELECT 1 FROM outbox b WHERE b.endpoint = $3 AND b.delivered_ms IS NULL AND b.failed_ms IS NULL AND b.claimed_by <> $1 AND b.claimed_until_ms >= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT) AND (SELECT h.next_try_ms FROM outbox h WHERE h.endpoint = $3 AND h.delivered_ms IS NULL AND h.failed_ms IS NULL ORDER BY h.id LIMIT 1) <= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) UPDATE outbox SET claimed_by = $1, claimed_until_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2 FROM due WHERE outbox.id = due.id RETURNING outbox.id, outbox.rollout_id, outbox.seq, outbox.body, outbox.attempts",
        renew: "UPDATE outbox SET claimed_until_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $2 WHERE claimed_by = $1 AND claimed_until_ms IS NOT NULL AND delivered_ms IS NULL AND failed_ms IS NULL RETURNING id",
        delivered: "UPDATE outbox SET attempts = attempts + 1, claimed_until_ms = NULL, delivered_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT WHERE id = $1",
        retry: "UPDATE outbox SET attempts = attempts + 1, next_try_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + $1, last_error = $2 WHERE id = $3",
        failed: "UPDATE outbox SET attempts = attempts + 1, claimed_until_ms = NULL, last_error = $1, failed_ms = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT WHERE id = $2",
        release: "UPDATE outbox SET claimed_until_ms = NULL WHERE claimed_by = $1 AND delivered_ms IS NULL AND failed_ms IS NULL",
        endpoints: "SELECT DISTINCT endpoint FROM outbox WHERE delivered_ms IS NULL AND failed_ms IS NULL",
        pending: "SELECT COUNT(*) FROM outbox WHERE delivered_ms IS NULL AND failed_ms IS NULL",
        prune: "DELETE FROM outbox WHERE delivered_ms < (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT - $1 OR failed_ms < (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT - $2",
        rows: "SELECT id, rollout_id, seq, endpoint, body, created_ms, attempts, next_try_ms, claimed_by, claimed_until_ms, delivered_ms, failed_ms, last_error FROM outbox ORDER BY id",
    },
};
