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
//!
//! A SQLite store's committer ([`super::group`]) runs the same code on a third kind of
//! connection, [`Writer::Direct`]: its own `rusqlite` connection on its own thread, where a
//! statement runs in place instead of being handed to sqlx's worker thread and back (a
//! batch of 512 commits is some 3,000 statements: that many thread hand-offs were most of
//! the CPU a busy fleet spent). It reads the few row types the commit path reads
//! ([`Row::from_direct`]).

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
    /// On a [`Writer::Direct`] connection.
    Direct(DirectTx<'c>),
}

/// A transaction on a [`Writer::Direct`] connection: `BEGIN IMMEDIATE` (it holds the write
/// lock from its start, so a busy store makes it wait for the busy timeout rather than fail
/// on its first write), rolled back when dropped uncommitted. It borrows the connection
/// mutably — `rusqlite`'s own transaction borrows it shared, which would make every future
/// holding a [`Tx`] unable to move between threads.
pub(super) struct DirectTx<'c> {
    conn: &'c mut rusqlite::Connection,
    open: bool,
}

impl<'c> DirectTx<'c> {
    fn begin(conn: &'c mut rusqlite::Connection) -> Result<DirectTx<'c>, StoreError> {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(direct)?;
        Ok(DirectTx { conn, open: true })
    }

    fn commit(mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(direct)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for DirectTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            // A failed rollback leaves nothing to do: the connection's next `BEGIN` fails
            // and names the problem.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Where a committer writes: a pool, or (SQLite) its own connection.
pub(super) enum Writer {
    Pool(Pool),
    Direct(rusqlite::Connection),
}

impl Writer {
    /// Start a transaction.
    pub async fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        match self {
            Writer::Pool(pool) => pool.begin().await,
            Writer::Direct(c) => Ok(Tx::Direct(DirectTx::begin(c)?)),
        }
    }
}

/// Connections of a SQLite store for the statements that return many rows — a runner's
/// leases (one row a run it holds: 100,000 at a time) — run on a blocking thread: through
/// sqlx's driver each row is handed from its worker thread to the caller, and a renewal
/// of 100,000 leases, holding the write lock meanwhile, took over a second.
#[derive(Debug)]
pub(super) struct DirectPool {
    options: super::group::DirectOptions,
    idle: std::sync::Mutex<Option<rusqlite::Connection>>,
}

impl DirectPool {
    pub fn new(options: super::group::DirectOptions) -> DirectPool {
        DirectPool {
            options,
            idle: std::sync::Mutex::new(None),
        }
    }

    /// Run `work` on a blocking thread with a connection (the idle one, or a new one);
    /// a connection left inside a transaction (a failure) is closed, not kept.
    pub async fn run<R, F>(self: &std::sync::Arc<Self>, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<R, StoreError> + Send + 'static,
    {
        let pool = std::sync::Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
            let conn = match idle {
                Some(conn) => conn,
                None => super::group::open_direct(&pool.options)?,
            };
            let mut writer = Writer::Direct(conn);
            let result = work(&mut writer);
            if let Writer::Direct(conn) = writer
                && conn.is_autocommit()
            {
                *pool.idle.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Db(format!("a store task stopped: {e}")))?
    }
}

/// A `rusqlite` error as the store's ([`super::db`]'s mapping for sqlx's).
pub(super) fn direct(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Duplicate(e.to_string())
        }
        _ => StoreError::Db(e.to_string()),
    }
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
            Tx::Direct(tx) => tx.commit(),
        }
    }
}

/// Where a statement runs: a pool (one statement on any free connection) or a transaction.
pub(super) enum Conn<'e> {
    SqlitePool(&'e SqlitePool),
    PostgresPool(&'e PgPool),
    Sqlite(&'e mut SqliteConnection),
    Postgres(&'e mut PgConnection),
    Direct(&'e mut rusqlite::Connection),
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
            Tx::Direct(tx) => Conn::Direct(tx.conn),
        }
    }
}

impl<'e> From<&'e mut Writer> for Conn<'e> {
    fn from(writer: &'e mut Writer) -> Conn<'e> {
        match writer {
            Writer::Pool(pool) => Conn::from(&*pool),
            Writer::Direct(c) => Conn::Direct(c),
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
/// column types, each named in `rows!`), and that the SQLite committer's own connection
/// decodes when the commit path reads it.
pub(super) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
    /// Whether a [`Writer::Direct`] connection reads this type ([`Row::from_direct`]).
    /// Only the commit path runs there; a query for another type fails before it runs,
    /// naming the type, instead of guessing its columns.
    const DIRECT: bool = false;

    /// The row as read on a [`Writer::Direct`] connection.
    fn from_direct(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
        let _ = row;
        Err(unread::<Self>())
    }
}

/// A row type a [`Writer::Direct`] connection does not read.
fn unread<T>() -> StoreError {
    StoreError::Db(format!(
        "the SQLite committer does not read {} rows (a bug; please report it)",
        std::any::type_name::<T>()
    ))
}

/// Tuples of column values: the same on every connection.
macro_rules! tuple_rows {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> Row for ($($t,)+)
        where
            ($($t,)+): for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
            $($t: rusqlite::types::FromSql),+
        {
            const DIRECT: bool = true;

            fn from_direct(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
                Ok(($(row.get::<_, $t>($i).map_err(direct)?,)+))
            }
        }
    };
}
tuple_rows!(A 0);
tuple_rows!(A 0, B 1);
tuple_rows!(A 0, B 1, C 2);
tuple_rows!(A 0, B 1, C 2, D 3);
tuple_rows!(A 0, B 1, C 2, D 3, E 4);
tuple_rows!(A 0, B 1, C 2, D 3, E 4, F 5);

/// The rows the commit path reads on a [`Writer::Direct`] connection: a created run.
impl Row for super::RolloutRow {
    const DIRECT: bool = true;

    fn from_direct(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
        let get = |name: &str| row.get::<_, i64>(name).map_err(direct);
        let text = |name: &str| row.get::<_, String>(name).map_err(direct);
        Ok(super::RolloutRow {
            id: get("id")?,
            name: text("name")?,
            run: get("run")?,
            spec: text("spec")?,
            checkpoint: text("checkpoint")?,
            state: text("state")?,
            finished: get("finished")? != 0,
            generation: get("generation")?,
            created_ms: get("created_ms")?,
            updated_ms: get("updated_ms")?,
        })
    }
}

/// … and a series' oldest points, merged when it grows past its cap.
impl Row for super::series::Stored {
    const DIRECT: bool = true;

    fn from_direct(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
        Ok(super::series::Stored {
            id: row.get("id").map_err(direct)?,
            at_ms: row.get("at_ms").map_err(direct)?,
            value: row.get("value").map_err(direct)?,
            verdict: row.get("verdict").map_err(direct)?,
            count: row.get("count").map_err(direct)?,
        })
    }
}

/// … and a runner's leases, renewed or claimed ([`DirectPool`]).
impl Row for super::leases::Lease {
    const DIRECT: bool = true;

    fn from_direct(row: &rusqlite::Row<'_>) -> Result<Self, StoreError> {
        Ok(super::leases::Lease {
            rollout_id: row.get("id").map_err(direct)?,
            epoch: row.get("lease_epoch").map_err(direct)?,
            expires_ms: row.get("lease_expires_ms").map_err(direct)?,
        })
    }
}

/// Rows only the pools read.
impl Row for super::ActionRequest {}
impl Row for super::AuditRecord {}
impl Row for super::listing::Changed {}
impl Row for super::listing::ListedRow {}
impl Row for super::outbox::Claimed {}
impl Row for super::outbox::OutboxRow {}
impl Row for super::MeasurementRow {}
impl Row for super::runners::RunnerRow {}
impl Row for super::StepRow {}
impl Row for super::series::SeriesPoint {}

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

/// Run the same expression on whichever connection `conn` is, with the dialect's SQL
/// (`direct` on a [`Conn::Direct`] connection, with SQLite's).
macro_rules! on {
    ($self:ident, $conn:expr, |$q:ident, $c:ident| $body:expr, direct |$d:ident| $direct:expr) => {
        match $conn {
            Conn::Direct($d) => $direct,
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
            Conn::Direct(c) => return direct_execute(c, ($self.pick)(&SQLITE), &$self.args),
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
        on!(
            self,
            conn.into(),
            |q, c| q.fetch_all(c).await,
            direct | c | {
                return direct_rows(c, (self.pick)(&SQLITE), &self.args, usize::MAX);
            }
        )
        .map_err(db)
    }

    /// The first row, which must exist.
    pub async fn fetch_one<'e>(self, conn: impl Into<Conn<'e>>) -> Result<T, StoreError> {
        on!(
            self,
            conn.into(),
            |q, c| q.fetch_one(c).await,
            direct | c | {
                return direct_rows(c, (self.pick)(&SQLITE), &self.args, 1)?
                    .pop()
                    .ok_or_else(|| {
                        StoreError::Db(
                            "no rows returned by a query that expected to return at least one row"
                                .into(),
                        )
                    });
            }
        )
        .map_err(db)
    }

    /// The first row, if any.
    pub async fn fetch_optional<'e>(
        self,
        conn: impl Into<Conn<'e>>,
    ) -> Result<Option<T>, StoreError> {
        on!(
            self,
            conn.into(),
            |q, c| q.fetch_optional(c).await,
            direct | c | {
                return Ok(direct_rows(c, (self.pick)(&SQLITE), &self.args, 1)?.pop());
            }
        )
        .map_err(db)
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

/// Prepare (from the connection's statement cache) and bind a statement on a
/// [`Conn::Direct`] connection.
fn direct_statement<'c>(
    c: &'c rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    let mut statement = c.prepare_cached(sql).map_err(direct)?;
    statement.clear_bindings();
    for (i, arg) in args.iter().enumerate() {
        let at = i + 1;
        match arg {
            Arg::Int(v) => statement.raw_bind_parameter(at, v),
            Arg::Float(v) => statement.raw_bind_parameter(at, v),
            Arg::Text(v) => statement.raw_bind_parameter(at, v),
            Arg::Owned(v) => statement.raw_bind_parameter(at, v.as_str()),
        }
        .map_err(direct)?;
    }
    Ok(statement)
}

/// Run a statement to its end on a [`Conn::Direct`] connection (any rows it returns are
/// stepped over, as sqlx's `execute` does); the number of rows it changed.
fn direct_execute(
    c: &rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> Result<u64, StoreError> {
    let mut statement = direct_statement(c, sql, args)?;
    let mut rows = statement.raw_query();
    while rows.next().map_err(direct)?.is_some() {}
    drop(rows);
    // As sqlx counts: a statement that writes nothing changed nothing (SQLite's counter
    // still holds the last write's count then).
    Ok(if statement.readonly() { 0 } else { c.changes() })
}

/// At most `limit` rows of a statement on a [`Conn::Direct`] connection.
fn direct_rows<T: Row>(
    c: &rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    if !T::DIRECT {
        return Err(unread::<T>());
    }
    let mut statement = direct_statement(c, sql, args)?;
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while out.len() < limit {
        match rows.next().map_err(direct)? {
            Some(row) => out.push(T::from_direct(row)?),
            None => break,
        }
    }
    Ok(out)
}
