//! Rollouts whose documents do not load (the `invalid-spec` state) and the numbered
//! configurations runners loaded: what `rollgate run`, `serve`, `get` and the API share
//! through the store.

use super::db::{Scalar, query, query_as, query_scalar};
use super::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// A rollout in the state `invalid-spec`: why, since when, and the run it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvalidSpec {
    /// The rollout.
    pub name: String,
    /// Every problem, as `file:line:col: field: what to do`.
    pub problems: Vec<String>,
    /// Since when these problems stand.
    pub since_ms: i64,
    /// The store id of an unfinished run that is not driven until they are fixed.
    pub held_run: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct InvalidRecord {
    name: String,
    problems: String,
    since_ms: i64,
    held_run: Option<i64>,
}

/// Read only through the pools.
impl super::db::Row for InvalidRecord {}

impl From<InvalidRecord> for InvalidSpec {
    fn from(r: InvalidRecord) -> InvalidSpec {
        InvalidSpec {
            // Written by rollgate as a JSON array; anything else is shown as it is.
            problems: serde_json::from_str(&r.problems).unwrap_or_else(|_| vec![r.problems]),
            name: r.name,
            since_ms: r.since_ms,
            held_run: r.held_run,
        }
    }
}

impl Store {
    /// Record that rollout `name` does not load, with its problems and the run held (if
    /// any). `since_ms` stays what it was while the problems are the same.
    pub async fn set_invalid(
        &self,
        name: &str,
        problems: &[String],
        held_run: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let problems = serde_json::to_string(problems)
            .map_err(|e| StoreError::Db(format!("cannot serialise problems: {e}")))?;
        query(|s| s.set_invalid)
            .bind(name)
            .bind(problems)
            .bind(now_ms)
            .bind(held_run)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Rollout `name` loads again; whether it was invalid.
    pub async fn clear_invalid(&self, name: &str) -> Result<bool, StoreError> {
        let done = query(|s| s.clear_invalid)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done > 0)
    }

    /// Whether this store records invalid-spec rollouts (a store written before they were,
    /// opened by a reader that does not migrate, does not: it has none).
    async fn tracks_invalid(&self) -> Result<bool, StoreError> {
        let tables: i64 = query_scalar(|s| s.tracks_invalid).one(&self.pool).await?;
        Ok(tables > 0)
    }

    /// Every rollout in the state `invalid-spec`, by name.
    pub async fn invalid_specs(&self) -> Result<Vec<InvalidSpec>, StoreError> {
        if !self.tracks_invalid().await? {
            return Ok(Vec::new());
        }
        let rows: Vec<InvalidRecord> = query_as(|s| s.invalid_specs).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(InvalidSpec::from).collect())
    }

    /// Rollout `name`'s problems, when it is in the state `invalid-spec`.
    pub async fn invalid_spec(&self, name: &str) -> Result<Option<InvalidSpec>, StoreError> {
        if !self.tracks_invalid().await? {
            return Ok(None);
        }
        let row: Option<InvalidRecord> = query_as(|s| s.invalid_spec)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(InvalidSpec::from))
    }

    /// The generation of the configuration with this fingerprint: the newest one when it
    /// is the same, else a new one.
    pub async fn configuration(&self, fingerprint: &str, now_ms: i64) -> Result<i64, StoreError> {
        query(|s| s.insert_configuration)
            .bind(fingerprint)
            .bind(now_ms)
            .bind(fingerprint)
            .execute(&self.writer)
            .await?;
        let (generation, _): (i64, String) = query_as(|s| s.latest_configuration)
            .fetch_one(&self.writer)
            .await?;
        Ok(generation)
    }
}
