//! The two databases behind one set of store functions: a SQLite file or a PostgreSQL
//! server.
//!
//! The store's code builds each statement once — which statement (a field of
//! [`Sql`](super::sql::Sql)), and its parameters in order — with [`query`], [`query_as`] or
//! [`query_scalar`], and runs it on a [`Pool`] or inside a [`Tx`]. The dialect is chosen
//! where it runs: the SQL text comes from that database's `Sql` value
//! ([`SQLITE`](super::sql::SQLITE) or [`POSTGRES`](super::sql::POSTGRES)) and the
//! parameters are bound to that driver's query. Rows decode through the same
//! `sqlx::FromRow` derives for both, so the store's row types and its logic exist once.

use super::sql::{POSTGRES, SQLITE, Sql};
use super::{StoreError, db};
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{FromRow, Postgres, Sqlite};
use std::marker::PhantomData;

/// A pool of connections to one of the two databases.
#[derive(Debug, Clone)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction on one of the two databases; dropped without [`Tx::commit`], it rolls back.
pub(super) enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, Sqlite>),
    Postgres(sqlx::Transaction<'c, Postgres>),
}

impl Pool {
    /// Start a transaction.
    pub async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await.map_err(db)?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await.map_err(db)?),
        })
    }

    /// Close every connection (waits for those in use to come back).
    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

#[cfg(test)]
impl Pool {
    /// The SQLite pool, for tests of SQLite itself (pragmas, hand-made old schemas).
    pub fn sqlite(&self) -> &SqlitePool {
        match self {
            Pool::Sqlite(p) => p,
            Pool::Postgres(_) => panic!("a SQLite-only test was given a PostgreSQL store"),
        }
    }
}

impl Tx<'_> {
    /// Commit the transaction.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await.map_err(db),
            Tx::Postgres(tx) => tx.commit().await.map_err(db),
        }
    }
}

/// Where a statement runs: a pool (one statement on any free connection) or a transaction.
pub(super) enum Conn<'e> {
    SqlitePool(&'e SqlitePool),
    PostgresPool(&'e PgPool),
    Sqlite(&'e mut SqliteConnection),
    Postgres(&'e mut PgConnection),
}

impl<'e> From<&'e Pool> for Conn<'e> {
    fn from(pool: &'e Pool) -> Conn<'e> {
        match pool {
            Pool::Sqlite(p) => Conn::SqlitePool(p),
            Pool::Postgres(p) => Conn::PostgresPool(p),
        }
    }
}

impl<'e, 'c> From<&'e mut Tx<'c>> for Conn<'e> {
    fn from(tx: &'e mut Tx<'c>) -> Conn<'e> {
        match tx {
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }
}

/// One bound parameter, in the few types the store's columns have.
#[derive(Debug, Clone)]
pub(super) enum Arg<'a> {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<&'a str>),
    Owned(String),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<f64>> for Arg<'_> {
    fn from(v: Option<f64>) -> Self {
        Arg::Float(v)
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}
impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Owned(v)
    }
}

/// A row type both drivers decode (every `sqlx::FromRow` derive and tuple of the store's
/// column types is one).
pub(super) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// A statement (picked from the dialect's [`Sql`] where it runs) and its parameters.
pub(super) struct Query<'a, F, O> {
    pick: F,
    args: Vec<Arg<'a>>,
    out: PhantomData<fn() -> O>,
}

/// A statement that returns no rows (or whose rows are not read).
pub(super) fn query<'a, F: Fn(&Sql) -> &'static str>(pick: F) -> Query<'a, F, ()> {
    Query {
        pick,
        args: Vec::new(),
        out: PhantomData,
    }
}

/// A statement whose rows decode as `T`.
pub(super) fn query_as<'a, T: Row, F: Fn(&Sql) -> &'static str>(pick: F) -> Query<'a, F, T> {
    Query {
        pick,
        args: Vec::new(),
        out: PhantomData,
    }
}

/// A statement whose rows are one column of type `T`.
pub(super) fn query_scalar<'a, T, F: Fn(&Sql) -> &'static str>(pick: F) -> Query<'a, F, (T,)>
where
    (T,): Row,
{
    query_as(pick)
}

/// Bind the parameters to a driver's query, in order.
macro_rules! bound {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Int(v) => q.bind(*v),
                Arg::Float(v) => q.bind(*v),
                Arg::Text(v) => q.bind(*v),
                Arg::Owned(v) => q.bind(v.as_str()),
            };
        }
        q
    }};
}

/// Run the same expression on whichever connection `conn` is, with the dialect's SQL.
macro_rules! on {
    ($self:ident, $conn:expr, |$q:ident, $c:ident| $body:expr) => {
        match $conn {
            Conn::SqlitePool($c) => {
                let $q = bound!(sqlx::query_as(($self.pick)(&SQLITE)), &$self.args);
                $body
            }
            Conn::Sqlite($c) => {
                let $q = bound!(sqlx::query_as(($self.pick)(&SQLITE)), &$self.args);
                $body
            }
            Conn::PostgresPool($c) => {
                let $q = bound!(sqlx::query_as(($self.pick)(&POSTGRES)), &$self.args);
                $body
            }
            Conn::Postgres($c) => {
                let $q = bound!(sqlx::query_as(($self.pick)(&POSTGRES)), &$self.args);
                $body
            }
        }
    };
}

/// Likewise for a statement that returns no rows.
macro_rules! on_exec {
    ($self:ident, $conn:expr) => {
        match $conn {
            Conn::SqlitePool(c) => bound!(sqlx::query(($self.pick)(&SQLITE)), &$self.args)
                .execute(c)
                .await
                .map(|r| r.rows_affected()),
            Conn::Sqlite(c) => bound!(sqlx::query(($self.pick)(&SQLITE)), &$self.args)
                .execute(c)
                .await
                .map(|r| r.rows_affected()),
            Conn::PostgresPool(c) => bound!(sqlx::query(($self.pick)(&POSTGRES)), &$self.args)
                .execute(c)
                .await
                .map(|r| r.rows_affected()),
            Conn::Postgres(c) => bound!(sqlx::query(($self.pick)(&POSTGRES)), &$self.args)
                .execute(c)
                .await
                .map(|r| r.rows_affected()),
        }
    };
}

impl<'a, F: Fn(&Sql) -> &'static str, O> Query<'a, F, O> {
    /// Add the next parameter.
    pub fn bind(mut self, arg: impl Into<Arg<'a>>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Run it; the number of rows it changed.
    pub async fn execute<'e>(self, conn: impl Into<Conn<'e>>) -> Result<u64, StoreError> {
        on_exec!(self, conn.into()).map_err(db)
    }
}

impl<'a, F: Fn(&Sql) -> &'static str, T: Row> Query<'a, F, T> {
    /// Every row.
    pub async fn fetch_all<'e>(self, conn: impl Into<Conn<'e>>) -> Result<Vec<T>, StoreError> {
        on!(self, conn.into(), |q, c| q.fetch_all(c).await).map_err(db)
    }

    /// The first row, which must exist.
    pub async fn fetch_one<'e>(self, conn: impl Into<Conn<'e>>) -> Result<T, StoreError> {
        on!(self, conn.into(), |q, c| q.fetch_one(c).await).map_err(db)
    }

    /// The first row, if any.
    pub async fn fetch_optional<'e>(
        self,
        conn: impl Into<Conn<'e>>,
    ) -> Result<Option<T>, StoreError> {
        on!(self, conn.into(), |q, c| q.fetch_optional(c).await).map_err(db)
    }
}

/// The single column of a [`query_scalar`]'s rows.
pub(super) trait Scalar<T> {
    /// The first row's value, which must exist.
    async fn one<'e>(self, conn: impl Into<Conn<'e>>) -> Result<T, StoreError>;
    /// The first row's value, if any.
    async fn optional<'e>(self, conn: impl Into<Conn<'e>>) -> Result<Option<T>, StoreError>;
}

impl<'a, F: Fn(&Sql) -> &'static str, T> Scalar<T> for Query<'a, F, (T,)>
where
    (T,): Row,
{
    async fn one<'e>(self, conn: impl Into<Conn<'e>>) -> Result<T, StoreError> {
        Ok(self.fetch_one(conn).await?.0)
    }
    async fn optional<'e>(self, conn: impl Into<Conn<'e>>) -> Result<Option<T>, StoreError> {
        Ok(self.fetch_optional(conn).await?.map(|(v,)| v))
    }
}
