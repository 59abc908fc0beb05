//! `rollgate serve --config DIR --db URL --listen ADDR --tokens FILE`: run every rollout
//! of a configuration folder at once, with the HTTP API of [`crate::api`].
//!
//! It prints `rollgate serve: listening on http://ADDR` on stderr once the port is bound
//! (with `--listen 127.0.0.1:0` the system picks a free port, and that line says which),
//! and with `--ui-listen ADDR` `rollgate serve: web view on http://ADDR` once the web
//! view's port is bound ([`crate::ui`]),
//! then loads the folder and resumes every unfinished run. Exit codes: 0 stopped by
//! SIGINT/SIGTERM, 3 the store or the plugin host failed, 4 invalid input (a configuration
//! that does not load, a bad tokens file, an address that cannot be bound).
//!
//! The server is the runner of the runs it drives ([`crate::engine::runner`]): registered
//! before the folder loads, beating every `--heartbeat`, marked stopped on SIGINT/SIGTERM.
//! Several servers may share one store: each drives the runs it holds a lease on
//! (`--lease-ttl`, `--max-runs`; [`crate::server`]'s lease manager), and a clean stop
//! frees its leases at once.

use super::exit;
use crate::api::{self, Tokens};
use crate::server::{Fleet, FleetConfig};
use crate::spec::model::NotificationSpec;
use crate::store::{Location, Store};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// `rollgate serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration: a folder (or file) of MetricBackend, Plugin, VerificationTemplate
    /// and Rollout documents, reloaded when it changes.
    #[arg(long)]
    pub config: PathBuf,
    /// The store: `sqlite:PATH` or a plain path (`?sync=normal` trades the fsync of every
    /// commit for throughput; a process crash still loses nothing), or a PostgreSQL database
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` that several servers may share.
    #[arg(long, default_value = "sqlite:rollgate.db")]
    pub db: String,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The API's bearer tokens: lines `TOKEN ROLE NAME`, ROLE read-only or operator.
    #[arg(long)]
    pub tokens: PathBuf,
    /// Where compiled plugins are cached (default: the user cache folder).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Refuse every oci:// plugin that is not signed (cosign, key-based) by the key its
    /// Plugin document names in verify.cosign.publicKey.
    #[arg(long)]
    pub require_signed_plugins: bool,
    /// How often the configuration folder is looked at for changes.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub reload_interval: String,
    /// A webhook told of every rollout's state changes and decisions (repeatable).
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// How often the server looks in the store for actions another process wrote, in one
    /// query for all its runs (actions through the API are seen at once).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub action_poll: String,
    /// A server-side reference that documents applied through the API may use although the
    /// folder's own documents do not (repeatable): `env:NAME`, `file:PATH` or
    /// `exec:["program","arg",…]`. Default: none.
    #[arg(long = "api-allow-ref", value_name = "REF")]
    pub api_allow_ref: Vec<String>,
    /// How often the server records its heartbeat in the store (100ms to 1h); `rollgate
    /// get` and the API report a runner silent for three periods as stopped reporting.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub heartbeat: String,
    /// How long this server's lease on a run lasts (1s to 10min): several servers share
    /// one store and split its runs; a lease is renewed every third of it, a server that
    /// cannot renew stops driving at 0.8 of it, and a dead server's runs are taken over
    /// after it.
    #[arg(long, default_value = "15s", value_name = "DURATION")]
    pub lease_ttl: String,
    /// The most runs this server drives at once (default: no cap beyond its fair share of
    /// the store's unfinished runs).
    #[arg(long, value_name = "N")]
    pub max_runs: Option<u64>,
    /// Also serve the web view (pages for people, sign-in with the tokens) on this
    /// address; off when absent.
    #[arg(long, value_name = "ADDR")]
    pub ui_listen: Option<String>,
}

/// The store and durability of a `--db` value: a SQLite file (`sqlite:PATH`, a plain
/// path; `?sync=normal|full`) or a PostgreSQL URL (its own options, passed to the driver).
fn parse_db(url: &str) -> Result<(Location, bool), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Location::Postgres(url.to_string()), true));
    }
    let (rest, query) = match url.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (url, None),
    };
    let path = if let Some(p) = rest.strip_prefix("sqlite://") {
        p
    } else if let Some(p) = rest.strip_prefix("sqlite:") {
        p
    } else if rest.contains("://") {
        return Err(format!(
            "--db {}: only SQLite (sqlite:PATH) and PostgreSQL (postgres://…) stores are supported",
            crate::store::redact_url(url)
        ));
    } else {
        rest
    };
    if path.is_empty() {
        return Err(format!("--db {url:?}: no file path; use sqlite:PATH"));
    }
    let mut full = true;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair {
            "sync=full" => full = true,
            "sync=normal" => full = false,
            other => {
                return Err(format!(
                    "--db {url:?}: unknown option {other:?}; use sync=full or sync=normal"
                ));
            }
        }
    }
    let path = PathBuf::from(path);
    Ok((Location::File(path), full))
}

/// `rollgate serve`.
pub async fn run(args: ServeArgs) -> u8 {
    let fail = |code: u8, message: String| {
        eprintln!("rollgate serve: {message}");
        code
    };
    let duration = |flag: &str, text: &str| {
        rollgate_duration::parse_ms(text)
            .map(|ms| Duration::from_millis(ms.max(10)))
            .map_err(|e| format!("--{flag}: {e}"))
    };
    let (reload_every, action_poll) = match (
        duration("reload-interval", &args.reload_interval),
        duration("action-poll", &args.action_poll),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(exit::INVALID_INPUT, e),
    };
    let heartbeat = match crate::engine::runner::parse_period(&args.heartbeat) {
        Ok(p) => p,
        Err(e) => return fail(exit::INVALID_INPUT, format!("--heartbeat: {e}")),
    };
    let lease_ttl = match crate::engine::lease::parse_ttl(&args.lease_ttl) {
        Ok(t) => t,
        Err(e) => return fail(exit::INVALID_INPUT, format!("--lease-ttl: {e}")),
    };
    if args.max_runs == Some(0) {
        return fail(
            exit::INVALID_INPUT,
            "--max-runs 0: a server that may drive no run drives nothing; give at least 1, or \
             leave it out for no cap"
                .into(),
        );
    }
    let mut global_webhooks = Vec::new();
    for url in &args.notify {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                global_webhooks.push(NotificationSpec {
                    url: url.clone(),
                    events: Vec::new(),
                })
            }
            _ => {
                return fail(
                    exit::INVALID_INPUT,
                    // Shown without user info, query or fragment: they may be secrets.
                    format!(
                        "--notify {}: not an http(s) URL; give http://HOST/PATH or https://HOST/PATH",
                        crate::server::notify::shown(url)
                    ),
                );
            }
        }
    }
    let mut api_allow = std::collections::BTreeSet::new();
    for reference in &args.api_allow_ref {
        match crate::server::refs::parse_allowed(reference) {
            Ok(r) => {
                api_allow.insert(r);
            }
            Err(e) => {
                return fail(
                    exit::INVALID_INPUT,
                    format!("--api-allow-ref {reference:?}: {e}"),
                );
            }
        }
    }
    let tokens = match Tokens::load(&args.tokens) {
        Ok(t) => t,
        Err(e) => return fail(exit::INVALID_INPUT, e),
    };
    let (db, full_sync) = match parse_db(&args.db) {
        Ok(d) => d,
        Err(e) => return fail(exit::INVALID_INPUT, e),
    };
    let store = match Store::open_at(&db, full_sync).await {
        Ok(s) => s,
        Err(e) => return fail(exit::INVALID_INPUT, e.to_string()),
    };
    let host =
        match super::plugin_host::host_with(args.cache_dir.as_deref(), args.require_signed_plugins)
        {
            Ok(h) => h,
            Err(e) => return fail(exit::PLUGIN_ERROR, e.to_string()),
        };
    let fleet = Fleet::new(
        FleetConfig {
            config: args.config.clone(),
            reload_every,
            action_poll,
            global_webhooks,
            event_buffer: 65_536,
            api_allow,
            heartbeat,
            lease_ttl,
            max_runs: args.max_runs,
        },
        store,
        host,
    );
    let (listener, address) = match bind("--listen", &args.listen).await {
        Ok(bound) => bound,
        Err(e) => return fail(exit::INVALID_INPUT, e),
    };
    let ui = match &args.ui_listen {
        Some(at) => match bind("--ui-listen", at).await {
            Ok(bound) => Some(bound),
            Err(e) => return fail(exit::INVALID_INPUT, e),
        },
        None => None,
    };
    let ui = ui.map(|(listener, at)| spawn_ui(listener, at, &fleet, tokens.clone()));
    let app = api::router(fleet.clone(), tokens);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
    });
    eprintln!("rollgate serve: listening on http://{address}");
    if let Some((_, _, at)) = &ui {
        eprintln!("rollgate serve: web view on http://{at}");
    }
    if let Err(e) = fleet.register_runner().await {
        return fail(exit::PLUGIN_ERROR, e.to_string());
    }
    if let Err(refused) = fleet.start().await {
        let _ = fleet.stop_runner().await;
        for line in &refused.0 {
            eprintln!("rollgate serve: {line}");
        }
        return fail(
            exit::INVALID_INPUT,
            format!(
                "{} problem(s) in {}; not serving",
                refused.0.len(),
                args.config.display()
            ),
        );
    }
    eprintln!(
        "rollgate serve: ready: {} rollout(s) from {}, {} run(s) driven",
        fleet.configured().len(),
        args.config.display(),
        fleet.driving()
    );
    fleet.spawn_watch();
    // The start burst's garbage back to the kernel now, and the churn's from then on.
    let trimmer = crate::heap::spawn_trimmer(crate::heap::TRIM_EVERY);
    let served = server.await;
    trimmer.abort();
    if let Some((state, mut task, _)) = ui {
        // The same signal stopped it; event streams end now, and a page still loading
        // gets a few seconds.
        state.close();
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
    // The drivers stop at safe points, every lease is freed at once, the runner is marked
    // stopped: the other runners take the runs over now.
    if let Err(e) = fleet.shutdown().await {
        eprintln!("rollgate serve: cannot mark this runner stopped in the store: {e}");
    }
    match served {
        Ok(Ok(())) => {
            eprintln!("rollgate serve: stopped");
            exit::OK
        }
        Ok(Err(e)) => fail(exit::PLUGIN_ERROR, format!("the HTTP server failed: {e}")),
        Err(e) => fail(
            exit::PLUGIN_ERROR,
            format!("the HTTP server task failed: {e}"),
        ),
    }
}

/// Serve the web view on `listener` until SIGINT/SIGTERM: its state (to close its event
/// streams), its task and where it listens.
fn spawn_ui(
    listener: tokio::net::TcpListener,
    at: String,
    fleet: &Fleet,
    tokens: Tokens,
) -> (
    crate::ui::UiState,
    tokio::task::JoinHandle<std::io::Result<()>>,
    String,
) {
    let state = crate::ui::UiState::serve(fleet.clone(), tokens);
    state.warm();
    let app = crate::ui::router(state.clone());
    let closing = state.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown().await;
                closing.close();
            })
            .await
    });
    (state, task, at)
}

/// Listen on `at` (the value of the option `flag`): the listener and the address it got
/// (with port 0, the one the system picked), or the error to print.
pub(super) async fn bind(
    flag: &str,
    at: &str,
) -> Result<(tokio::net::TcpListener, String), String> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| format!("{flag} {at}: cannot listen there: {e}"))?;
    let address = listener
        .local_addr()
        .map_or_else(|_| at.to_string(), |a| a.to_string());
    Ok((listener, address))
}

/// SIGINT or SIGTERM.
pub(super) async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_urls() {
        type Case<'a> = (&'a str, Result<(&'a str, bool), &'a str>);
        let cases: [Case<'_>; 6] = [
            ("sqlite:roll.db", Ok(("roll.db", true))),
            ("sqlite:///var/lib/r.db", Ok(("/var/lib/r.db", true))),
            ("plain.db?sync=normal", Ok(("plain.db", false))),
            (
                "mysql://db/rollgate",
                Err("only SQLite (sqlite:PATH) and PostgreSQL"),
            ),
            ("sqlite:", Err("no file path")),
            ("sqlite:x.db?fast=1", Err("unknown option")),
        ];
        for (url, want) in cases {
            match (parse_db(url), want) {
                (Ok((p, full)), Ok((wp, wfull))) => {
                    assert_eq!((p, full), (Location::File(wp.into()), wfull), "{url}")
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{url}: {e}"),
                (got, _) => panic!("{url}: {got:?}"),
            }
        }
    }
}
