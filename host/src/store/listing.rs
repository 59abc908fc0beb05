//! What changed since a time: the web view's list index reads the latest runs changed
//! since it last looked ([`Store::latest_changed`]), its event stream polls which runs
//! changed ([`Store::changed_since`]). Both find the rows by `updated_ms` (indexed,
//! migration 5), never by scanning every checkpoint.

use super::db::query_as;
use super::{RolloutRow, Store, StoreError};

/// The latest run of a rollout, with its last audit event's actor and action.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ListedRow {
    /// The run.
    #[sqlx(flatten)]
    pub row: RolloutRow,
    /// Who did the last thing audited (none when the log is empty).
    pub last_actor: Option<String>,
    /// What it was.
    pub last_action: Option<String>,
}

/// A run that changed: which, and to what generation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Changed {
    /// Store-wide id of the run.
    pub id: i64,
    /// The rollout.
    pub name: String,
    /// The run number.
    pub run: i64,
    /// Bumped by every commit.
    pub generation: i64,
    /// When it last changed.
    pub updated_ms: i64,
}

impl Store {
    /// The latest run of every rollout whose latest run changed at or after `since_ms`
    /// (`i64::MIN`: every rollout), oldest id first.
    pub async fn latest_changed(&self, since_ms: i64) -> Result<Vec<ListedRow>, StoreError> {
        query_as(|s| s.latest_changed)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await
    }

    /// Every run changed at or after `since_ms`, by `updated_ms`.
    pub async fn changed_since(&self, since_ms: i64) -> Result<Vec<Changed>, StoreError> {
        query_as(|s| s.changed_since)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await
    }
}
