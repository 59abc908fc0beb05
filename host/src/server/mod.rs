//! Server mode: one process runs every rollout of a configuration folder at once.
//!
//! [`Fleet`] owns what `rollgate serve` keeps between requests: the configuration loaded
//! from the folder (reloaded when its files change, rollout by rollout: a rollout whose
//! documents — or a template, plugin or backend it uses — do not load or set up is
//! `invalid-spec` with every problem, and the others apply), the store, a driver task per
//! unfinished run, the stream of committed events, and the notifier. The HTTP edge is
//! [`crate::api`]; this module knows nothing of HTTP.
//!
//! A rollout that turns `invalid-spec` while a run of it is in progress: the run goes on
//! with the configuration it started with (its task keeps the plugins and backends it was
//! started with) until it ends or is resumed (a resume re-reads the documents, and is
//! refused while they do not load). A stored run whose own spec cannot be set up with the
//! current documents (after a restart, say) is *held*: not driven, shown `invalid-spec`,
//! and driven again from its checkpoint — no completed step applied again — as soon as the
//! documents load, audited with both configuration generations.
//!
//! Why a task per run is not a busy loop: a run's task sleeps on the runtime's timer wheel
//! until its next measurement, pause end or gate check is due, and on a [`Wakers`]
//! notification when an operator acts — it never polls the store in a tight loop. What is
//! shared across runs (a backend's concurrency and rate limits, identical queries) lives in
//! [`crate::metrics::Backends`], built once per configuration.
//!
//! What a configuration change does to rollouts: a rollout that appears starts a run; a
//! rollout whose spec changed after its run ended starts a new run; a run in progress keeps
//! the spec (and the plugins and backends) it started with, and the change applies to the
//! next run, as with `rollgate run`.
//!
//! # Where things are
//!
//! This file holds [`Fleet`] and what it keeps ([`FleetConfig`], [`ConfigStatus`], the
//! loaded configuration), loading and reloading the folder, and starting and resuming runs.
//!
//! | file | what it holds |
//! |---|---|
//! | `invalid.rs` | rollout by rollout: the store's `invalid-spec` records, held runs, how a rollout looks with its record, re-reading documents on a resume |
//! | `events.rs` | the event stream: what every commit does ([`Event`], counting, webhooks) |
//! | `leases.rs` | the lease manager: several servers on one store split its runs (renewals, lost leases, local deadlines, the fair share, a clean stop) |
//! | `act.rs` | operator actions ([`Fleet::act`]): a request and the run's answer, retries, the rollback of a succeeded run |
//! | `documents.rs` | documents applied through the API ([`Fleet::apply`], [`api_file_name`]) |
//! | `refs.rs` | the server-side references those documents may use |
//! | `notify.rs` | webhook delivery from the store's outbox (every runner delivers; each notification once per webhook) |
//! | `supervise.rs` | the tasks' panics: caught, logged, counted |
//! | `views.rs`, `v2.rs` | the v1 documents (frozen) and the v2 documents with their JSON Schemas |

mod act;
mod documents;
mod events;
mod invalid;
mod leases;
pub mod notify;
pub mod refs;
pub mod supervise;
pub mod v2;
pub mod views;

pub use documents::api_file_name;
pub use events::Event;
use invalid::{Reread, overlay};

use crate::engine::clock::now_ms;
use crate::engine::lease::Leases;
use crate::engine::runner::Runner;
use crate::engine::{Engine, EngineError, NewRun, Progress, Wakers, create_run_after};
use crate::plugin::PluginHost;
use crate::spec::model::{Bundle, RolloutSpec};
use crate::store::{InvalidSpec, RolloutRow, Store};
use notify::Notifier;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// How many runs a (re)load creates at once: their creations are written together.
const CREATIONS_IN_FLIGHT: usize = 512;

/// The actor of runs a server starts by itself.
pub const SERVE_ACTOR: &str = "rollgate serve";

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The configuration folder (or file).
    pub config: PathBuf,
    /// How often the folder is looked at for changes.
    pub reload_every: Duration,
    /// How often the server looks in the store (one query for all its runs) for actions
    /// written by another process (actions through the API wake the run at once).
    pub action_poll: Duration,
    /// Webhooks told of every rollout's events.
    pub global_webhooks: Vec<crate::spec::model::NotificationSpec>,
    /// How many events the stream keeps for a slow subscriber before it skips.
    pub event_buffer: usize,
    /// Server-side references (`env:NAME`, `file:PATH`, `exec:[…]`, canonical as
    /// [`refs::parse_allowed`] makes them) that documents applied through the API may use
    /// besides those of the folder's own documents.
    pub api_allow: std::collections::BTreeSet<String>,
    /// How often the server, as the runner of its runs, records its heartbeat.
    pub heartbeat: Duration,
    /// How long a lease on a run lasts from its claim or last renewal (renewed every
    /// third of it; driven at most 0.8 of it past the last renewal sent).
    pub lease_ttl: Duration,
    /// The most runs this server holds at once (`None`: no cap beyond its fair share).
    pub max_runs: Option<u64>,
}

/// The outcome of the last look at the configuration.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// Configurations applied so far (1 after the first load).
    pub generation: u64,
    /// When the running configuration was loaded.
    pub loaded_ms: i64,
    /// Rollouts in the running configuration.
    pub rollouts: usize,
    /// The configuration's number in the store: the one runs are audited with (a folder
    /// whose files are the same as last time keeps its number across restarts).
    pub config_generation: i64,
    /// Each rollout in the state `invalid-spec`, with every problem.
    pub invalid: BTreeMap<String, Vec<String>>,
    /// Problems that cost no rollout: an unreadable file, a document whose kind or name
    /// cannot be read, a shared document no rollout uses.
    pub problems: Vec<String>,
    /// The last change that was refused, with every problem; cleared by a good change.
    pub last_error: Option<Vec<String>>,
    /// When it was refused.
    pub last_error_ms: Option<i64>,
}

/// A run whose drive failed on the store is driven again after this, then twice as long
/// each time up to [`STORE_RETRY_MAX`].
const STORE_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait before a run that failed on the store is driven again.
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

/// The running configuration: the bundle and the engine built from it.
struct Loaded {
    bundle: Bundle,
    /// Shared by every driver task started under this configuration (a clone in each
    /// task would be 256 bytes a run).
    engine: Arc<Engine>,
    /// Each invalid rollout's problems.
    invalid: BTreeMap<String, Vec<String>>,
    /// Stored runs held (not driven) because their spec cannot be set up: id → (rollout,
    /// problems).
    held: BTreeMap<i64, (String, Vec<String>)>,
    /// Problems that cost no rollout.
    problems: Vec<String>,
    /// Each rollout's own webhooks (only rollouts that have some): looked up per commit.
    webhooks: std::collections::HashMap<String, Vec<crate::spec::model::NotificationSpec>>,
    /// What the folder's files looked like when loaded.
    fingerprint: Vec<crate::files::Stamp>,
}

/// What the fleet knows of each rollout without asking the store: the last progress.
#[derive(Debug, Clone)]
struct Known {
    id: i64,
    progress: Progress,
}

struct Inner {
    config: FleetConfig,
    store: Store,
    host: PluginHost,
    wakers: Arc<Wakers>,
    loaded: RwLock<Option<Arc<Loaded>>>,
    status: Mutex<ConfigStatus>,
    /// Held while the configuration changes (a reload, an apply).
    changing: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Arc<Event>>,
    /// Commits that carry measurements but no event (a metric measured again, still
    /// running): (rollout, run), for the web view's live charts; the event stream stays as
    /// it is.
    measured: broadcast::Sender<(String, i64)>,
    /// Orders events: the sequence number and the send happen under it.
    seq: Mutex<u64>,
    known: Mutex<BTreeMap<String, Known>>,
    /// Rollouts in the state `invalid-spec`, as the store holds them.
    invalid: Mutex<BTreeMap<String, InvalidSpec>>,
    notifier: Arc<Notifier>,
    ready: AtomicBool,
    /// This server as the store's runner ([`Fleet::register_runner`]), with its heartbeat
    /// task.
    runner: Mutex<Option<(Runner, tokio::task::JoinHandle<()>)>>,
    /// The runner's id, for the engines built from each configuration.
    runner_id: std::sync::OnceLock<i64>,
    /// The runner's leases ([`leases`]), once it registered.
    leases: std::sync::OnceLock<Arc<Leases>>,
    /// Tells the lease manager to look now.
    poke: tokio::sync::Notify,
    /// The lease manager's task.
    manager: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether another runner held runs at the last lease tick.
    others_held: std::sync::atomic::AtomicBool,
    /// The database listener ([`Fleet::spawn_listener`]), stopped with the manager.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The poll of the store for action requests other processes wrote
    /// ([`Wakers::poll_store`]), stopped at shutdown.
    action_poll: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The newest `updated_ms` of the runs read back from the store for what other runners
    /// drive.
    seen_ms: Mutex<i64>,
}

/// The server's rollouts. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

/// A refused configuration or request, with every problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub Vec<String>);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

/// What the configuration's spec files look like now (see [`crate::files::stamps`]: the
/// loader's own walk, so change detection sees exactly the files a load reads).
fn fingerprint(path: &Path) -> Vec<crate::files::Stamp> {
    crate::files::stamps(path)
}

impl Fleet {
    /// A fleet over `store`; nothing runs until [`Fleet::start`].
    pub fn new(config: FleetConfig, store: Store, host: PluginHost) -> Fleet {
        let (events, _) = broadcast::channel(config.event_buffer.max(16));
        let (measured, _) = broadcast::channel(config.event_buffer.max(16));
        Fleet {
            inner: Arc::new(Inner {
                notifier: Arc::new(Notifier::new(store.clone())),
                config,
                store,
                host,
                wakers: Arc::new(Wakers::default()),
                loaded: RwLock::new(None),
                status: Mutex::new(ConfigStatus::default()),
                changing: tokio::sync::Mutex::new(()),
                events,
                measured,
                seq: Mutex::new(0),
                known: Mutex::new(BTreeMap::new()),
                invalid: Mutex::new(BTreeMap::new()),
                ready: AtomicBool::new(false),
                runner: Mutex::new(None),
                runner_id: std::sync::OnceLock::new(),
                leases: std::sync::OnceLock::new(),
                poke: tokio::sync::Notify::new(),
                manager: Mutex::new(None),
                listener: Mutex::new(None),
                action_poll: Mutex::new(None),
                others_held: std::sync::atomic::AtomicBool::new(true),
                seen_ms: Mutex::new(i64::MIN),
            }),
        }
    }

    /// The store's id of this server as a runner, once registered.
    pub fn runner_id(&self) -> Option<i64> {
        self.inner.runner_id.get().copied()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The notifier (the webhook outbox's deliverer on this runner, and its counters).
    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    /// Register this server as the runner of the store's runs and start its heartbeat (a
    /// supervised task); call before [`Fleet::start`], once. From then on the server
    /// drives runs only under their leases ([`leases`]): every run it drives records it,
    /// and `rollgate get` and the API tell whether it still beats.
    pub async fn register_runner(&self) -> Result<(), crate::store::StoreError> {
        if self.inner.runner_id.get().is_some() {
            return Ok(());
        }
        let runner =
            Runner::register(&self.inner.store, "serve", self.inner.config.heartbeat).await?;
        let _ = self.inner.runner_id.set(runner.id());
        let leases = Leases::new(
            self.inner.store.clone(),
            runner.id(),
            self.inner.config.lease_ttl,
        );
        let _ = self.inner.leases.set(Arc::new(leases));
        // A runner of this host that died (SIGKILL, a crash) frees its runs now, not
        // when their leases expire: a restart resumes them at once.
        crate::engine::lease::release_dead_local_runners(&self.inner.store, runner.id()).await?;
        let beat = supervise::spawn("heartbeat", "the runner's heartbeat".into(), runner.beat());
        *self.inner.runner.lock().unwrap_or_else(|e| e.into_inner()) = Some((runner, beat));
        Ok(())
    }

    /// A clean stop: the heartbeat ends and the runner is marked stopped, so the runs left
    /// unfinished read as waiting for a runner, not as driven by a dead one.
    pub async fn stop_runner(&self) -> Result<(), crate::store::StoreError> {
        let taken = self
            .inner
            .runner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Err(e) = self.inner.notifier.release().await {
            tracing::warn!(
                "cannot release this runner's webhook claims (another runner takes them when they expire): {e}"
            );
        }
        match taken {
            Some((runner, beat)) => {
                beat.abort();
                runner.stop().await
            }
            None => Ok(()),
        }
    }

    /// Load the configuration, resume every unfinished run in the store and start what the
    /// configuration asks for. Rollouts that do not load are `invalid-spec` and the others
    /// start; only a folder where nothing at all loads (a wrong path, no documents) keeps
    /// the server from starting.
    pub async fn start(&self) -> Result<(), Refused> {
        let _changing = self.inner.changing.lock().await;
        // Deliver the webhook outbox (rows left by earlier runs too) as this runner.
        self.inner
            .notifier
            .start(self.inner.runner_id.get().copied().unwrap_or(0));
        let begun = std::time::Instant::now();
        let loaded = self.build().await?;
        let built = begun.elapsed();
        if loaded.bundle.rollouts.is_empty()
            && loaded.bundle.backends.is_empty()
            && loaded.bundle.plugins.is_empty()
            && loaded.bundle.templates.is_empty()
            && loaded.invalid.is_empty()
            && !loaded.problems.is_empty()
        {
            return Err(Refused(loaded.problems.clone()));
        }
        self.install(loaded);
        // The runs started now do not each look for action requests first: one query
        // below finds the runs that have some (a request written meanwhile wakes its run
        // through the API, the listener or the poll).
        self.inner.wakers.set_quiet(true);
        let started = self.reconcile(true).await;
        let reconciled = begun.elapsed();
        if started.is_ok() && self.leases().is_some() {
            // The first share of the runs is claimed and driven before the server says
            // it is ready; the manager goes on from there.
            self.lease_tick().await;
            self.spawn_lease_manager();
            self.spawn_listener();
        }
        self.inner.wakers.set_quiet(false);
        started.map_err(|e| Refused(vec![e]))?;
        match self.inner.store.runs_with_actions().await {
            Ok(ids) => {
                for id in ids {
                    self.inner.wakers.wake(id);
                }
            }
            Err(e) => {
                tracing::warn!("cannot look for operator actions in the store: {e}");
                self.inner.wakers.wake_all();
            }
        }
        let poll = supervise::spawn(
            "action-poll",
            "the poll for operator actions".into(),
            self.inner
                .wakers
                .clone()
                .poll_store(self.inner.store.clone(), self.inner.config.action_poll),
        );
        if let Some(old) = self
            .inner
            .action_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(poll)
        {
            old.abort();
        }
        self.inner.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            load_ms = built.as_millis(),
            runs_ms = (reconciled - built).as_millis(),
            leases_ms = (begun.elapsed() - reconciled).as_millis(),
            "started"
        );
        Ok(())
    }

    /// True once the first configuration is loaded and the store's runs are resumed, and
    /// as long as no task of the process has panicked ([`supervise`]).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst) && supervise::panicked().is_empty()
    }

    /// Watch the folder ([`Fleet::watch`]) in a supervised task.
    pub fn spawn_watch(&self) -> tokio::task::JoinHandle<()> {
        let fleet = self.clone();
        supervise::spawn(
            "config-watch",
            "the configuration watch".into(),
            async move {
                fleet.watch().await;
            },
        )
    }

    /// The outcome of the last look at the configuration.
    pub fn config_status(&self) -> ConfigStatus {
        self.inner
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Look at the folder every `reload_every` and apply a change; runs until the process
    /// ends.
    pub async fn watch(self) {
        loop {
            tokio::time::sleep(self.inner.config.reload_every).await;
            let changed = {
                let loaded = self.current();
                let now = fingerprint(&self.inner.config.config);
                loaded.is_none_or(|l| l.fingerprint != now)
            };
            if changed && let Err(refused) = self.reload().await {
                tracing::warn!(
                    "configuration change refused; the running configuration stays: {refused}"
                );
            }
        }
    }

    /// Load the folder again and, when it loads and builds, make it the running
    /// configuration and start what it asks for. A refused change keeps the running
    /// configuration and is reported by [`Fleet::config_status`].
    /// A panic while loading is caught ([`supervise`]) and refuses the change like a
    /// problem would, so the watch goes on.
    pub async fn reload(&self) -> Result<(), Refused> {
        let _changing = self.inner.changing.lock().await;
        self.reload_caught().await
    }

    /// [`Fleet::reload`] with `changing` held: a panic is caught, recorded and refuses the
    /// change (an apply then puts the folder back as for any refusal).
    async fn reload_caught(&self) -> Result<(), Refused> {
        match supervise::catching("reload", "a configuration reload", self.reload_locked()).await {
            Ok(result) => result,
            Err(message) => {
                Err(self.refused(Refused(vec![format!(
                    "rollgate panicked while loading this configuration (a bug; please report it): {message}; the running configuration stays"
                )])))
            }
        }
    }

    async fn reload_locked(&self) -> Result<(), Refused> {
        // A failpoint for the tests of panic supervision (debug builds only): a reload
        // panics while the file named by ROLLGATE_TEST_PANIC_IF exists.
        #[cfg(debug_assertions)]
        if std::env::var_os("ROLLGATE_TEST_PANIC_IF")
            .is_some_and(|flag| std::path::Path::new(&flag).exists())
        {
            panic!("test failpoint: ROLLGATE_TEST_PANIC_IF exists");
        }
        match self.build().await {
            Ok(loaded) => {
                self.install(loaded);
                self.reconcile(false).await.map_err(|e| Refused(vec![e]))?;
                Ok(())
            }
            Err(refused) => Err(self.refused(refused)),
        }
    }

    /// Remember a refused change, so the same broken files are not reported again every
    /// few seconds: the problems become the status's `lastError`, and the folder as it is
    /// now counts as seen (it is not looked at again until it changes).
    fn refused(&self, refused: Refused) -> Refused {
        let mut status = self.inner.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_error = Some(refused.0.clone());
        status.last_error_ms = Some(now_ms());
        drop(status);
        self.mark_seen();
        refused
    }

    /// Record the folder's files as they are now as seen, keeping the running
    /// configuration (after a refused change, or a refused apply put back).
    fn mark_seen(&self) {
        if let Some(current) = self.current() {
            let mut same = current.clone_shallow();
            same.fingerprint = fingerprint(&self.inner.config.config);
            *self.inner.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(same));
        }
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.inner
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Load and build the configuration, rollout by rollout, without installing it.
    /// Fails only when the store does.
    async fn build(&self) -> Result<Loaded, Refused> {
        let path = &self.inner.config.config;
        let begun = std::time::Instant::now();
        let fingerprint = fingerprint(path);
        let each = crate::spec::load_each(std::slice::from_ref(path));
        let read = begun.elapsed();
        let store_failed = |e: crate::store::StoreError| Refused(vec![e.to_string()]);
        // The runs in progress (which may come from an older configuration) are set up
        // too: their plugins are loaded, and one that cannot be set up is held.
        let stored = self.inner.store.unfinished().await.map_err(store_failed)?;
        let stored_specs: Vec<(i64, RolloutSpec)> = stored
            .iter()
            .filter_map(|row| Some((row.id, serde_json::from_str(&row.spec).ok()?)))
            .collect();
        let runs: Vec<(i64, &RolloutSpec)> = stored_specs.iter().map(|(id, r)| (*id, r)).collect();
        let stored_read = begun.elapsed();
        let rollouts: Vec<&RolloutSpec> = each.bundle.rollouts.iter().map(|r| &**r).collect();
        // Live backends: a replay recording is aligned to when the server loaded it.
        let prepared = crate::engine::prepare::prepare(
            &self.inner.host,
            &each.bundle,
            &rollouts,
            &runs,
            false,
            Some(now_ms()),
        )
        .await;
        tracing::debug!(
            folder_ms = read.as_millis(),
            stored_ms = (stored_read - read).as_millis(),
            prepare_ms = (begun.elapsed() - stored_read).as_millis(),
            "configuration built"
        );
        let config_generation = self
            .inner
            .store
            .configuration(&each.fingerprint, now_ms())
            .await
            .map_err(store_failed)?;
        let mut invalid: BTreeMap<String, Vec<String>> = each
            .invalid
            .iter()
            .map(|(name, problems)| {
                (
                    name.clone(),
                    problems.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        for (name, problems) in &prepared.invalid {
            invalid
                .entry(name.clone())
                .or_default()
                .extend(problems.iter().map(ToString::to_string));
        }
        let held: BTreeMap<i64, (String, Vec<String>)> = prepared
            .held
            .iter()
            .filter_map(|(id, problems)| {
                let (_, spec) = stored_specs.iter().find(|(i, _)| i == id)?;
                Some((
                    *id,
                    (
                        spec.name.clone(),
                        problems.iter().map(ToString::to_string).collect(),
                    ),
                ))
            })
            .collect();
        let mut bundle = each.bundle;
        bundle.rollouts.retain(|r| !invalid.contains_key(&r.name));
        let problems = each
            .other
            .iter()
            .map(ToString::to_string)
            .chain(prepared.other.iter().map(ToString::to_string))
            .collect();
        let plugins = prepared.plugins;
        let backends = prepared.backends;
        let engine = Engine {
            store: self.inner.store.clone(),
            clock: Arc::new(crate::engine::clock::SystemClock),
            plugins: Arc::new(plugins),
            metrics: Arc::new(backends),
            http: reqwest::Client::new(),
            observer: None,
            action_poll: self.inner.config.action_poll,
            sink: Some(self.sink()),
            outbox: Some(self.outbox()),
            wakers: Some(self.inner.wakers.clone()),
            config_generation,
            reconfigure: Some(Arc::new(Reread(Arc::downgrade(&self.inner)))),
            runner: self.inner.runner_id.get().copied(),
            leases: self.inner.leases.get().cloned(),
            specs: Arc::new(crate::engine::SharedSpecs::new(&bundle.rollouts)),
        };
        let webhooks = bundle
            .rollouts
            .iter()
            .filter(|r| !r.notifications.is_empty())
            .map(|r| (r.name.clone(), r.notifications.clone()))
            .collect();
        Ok(Loaded {
            bundle,
            engine: Arc::new(engine),
            invalid,
            held,
            problems,
            webhooks,
            fingerprint,
        })
    }

    fn install(&self, loaded: Loaded) {
        let rollouts = loaded.bundle.rollouts.len();
        let config_generation = loaded.engine.config_generation;
        for problem in &loaded.problems {
            tracing::warn!("configuration problem (no rollout depends on it): {problem}");
        }
        for (name, problems) in &loaded.invalid {
            tracing::warn!(rollout = %name, "invalid-spec: {}", problems.join("; "));
        }
        *self.inner.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(loaded));
        let mut status = self.inner.status.lock().unwrap_or_else(|e| e.into_inner());
        status.generation += 1;
        status.config_generation = config_generation;
        status.loaded_ms = now_ms();
        status.rollouts = rollouts;
        status.last_error = None;
        status.last_error_ms = None;
        tracing::info!(
            generation = status.generation,
            rollouts,
            "configuration loaded"
        );
    }

    /// Start what the configuration asks for; on start, also resume every unfinished run.
    async fn reconcile(&self, recover: bool) -> Result<(), String> {
        let Some(loaded) = self.current() else {
            return Ok(());
        };
        let store = &self.inner.store;
        self.record_invalid(&loaded).await?;
        // Every unfinished run not held: resumed on start, and on a reload a run that was
        // held and now sets up (one already driven is only woken).
        for row in store.unfinished().await.map_err(|e| e.to_string())? {
            if loaded.held.contains_key(&row.id) {
                if recover {
                    self.remember_row(&row);
                }
                continue;
            }
            if recover || !self.inner.wakers.is_driving(row.id) {
                if recover {
                    tracing::info!(rollout = %row.name, run = row.run, state = %row.state, "resuming from the store");
                }
                self.remember_row(&row);
                self.start_run(&loaded.engine, row.id);
            }
        }
        let root_of = |spec: &RolloutSpec| {
            crate::spec::root_of(std::slice::from_ref(&self.inner.config.config), &spec.file)
        };
        // The latest run of every rollout in one query, and the runs to create written
        // together (the store's committer batches the creations queued meanwhile): a
        // folder of thousands of rollouts starts in one pass, not a round trip each.
        let latest: std::collections::HashMap<String, RolloutRow> = store
            .latest_all()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|row| (row.name.clone(), row))
            .collect();
        let mut creations = Vec::new();
        for spec in &loaded.bundle.rollouts {
            match latest.get(&spec.name) {
                // Driven (or held) above.
                Some(row) if !row.finished => {}
                // The same spec wherever the folder is mounted now (a reversal counts as the
                // spec it reversed: starting that again would undo the rollback).
                Some(row) if crate::engine::reversal::ran_spec(row, spec, &root_of(spec)) => {
                    self.remember_row(row);
                }
                Some(row) => {
                    let reason = format!(
                        "the configuration changed since run {} ended {}",
                        row.run, row.state
                    );
                    creations.push((spec, reason, (row.run, row.state.clone())));
                }
                None => creations.push((spec, "rollgate serve".to_string(), (0, String::new()))),
            }
        }
        // Many in flight, queued in the folder's order (so their ids follow it).
        use futures::StreamExt;
        let mut in_flight = futures::stream::FuturesOrdered::new();
        for (spec, reason, (run, state)) in &creations {
            if in_flight.len() >= CREATIONS_IN_FLIGHT
                && let Some(result) = in_flight.next().await
            {
                result?;
            }
            in_flight.push_back(self.create_and_start(
                &loaded.engine,
                spec,
                reason,
                (*run, state.as_str()),
            ));
        }
        while let Some(result) = in_flight.next().await {
            result?;
        }
        if self.leases().is_some() {
            self.poke_leases();
        }
        Ok(())
    }

    /// Create the run after run `after.0` (state `after.1`; 0: none) and start it. When
    /// another runner sharing the store created that run first, its row is read back and
    /// nothing else happens: that is not an error.
    async fn create_and_start(
        &self,
        engine: &Arc<Engine>,
        spec: &RolloutSpec,
        reason: &str,
        after: (i64, &str),
    ) -> Result<(), String> {
        let new = NewRun {
            actor: SERVE_ACTOR,
            action: "create",
            reason,
            state_before: after.1,
        };
        let store = &self.inner.store;
        match create_run_after(store, spec, now_ms(), new, after.0).await {
            Ok(row) => {
                self.remember_row(&row);
                self.start_run(engine, row.id);
                Ok(())
            }
            Err(EngineError::Store(crate::store::StoreError::RunTaken { .. })) => {
                tracing::info!(
                    rollout = %spec.name,
                    "another runner created run {} first",
                    after.0.saturating_add(1)
                );
                if let Some(row) = store.latest(&spec.name).await.map_err(|e| e.to_string())? {
                    self.remember_row(&row);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Start driving run `id` as the configuration asks: with leases only when this
    /// runner holds the run's (the lease manager claims free runs, fairly, when poked);
    /// without, at once.
    fn start_run(&self, engine: &Arc<Engine>, id: i64) {
        match self.leases() {
            Some(leases) if leases.get(id).is_none() => self.poke_leases(),
            _ => self.spawn(engine, id),
        }
    }

    /// Remember a stored run's progress. A run that cannot be read is remembered too, as
    /// `unreadable` with the reason, and logged: listed, never hidden.
    fn remember_row(&self, row: &RolloutRow) {
        let progress = views::progress(row);
        if progress.state == views::UNREADABLE {
            tracing::error!(rollout = %row.name, run = row.run, "{}", progress.message);
        }
        self.inner
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                row.name.clone(),
                Known {
                    id: row.id,
                    progress,
                },
            );
    }

    fn spawn(&self, engine: &Arc<Engine>, id: i64) {
        if !self.inner.wakers.claim(id) {
            // Already driven: make sure it looks at its requests.
            self.inner.wakers.wake(id);
            return;
        }
        let engine = engine.clone();
        let wakers = self.inner.wakers.clone();
        supervise::spawn("run", format!("run id {id}"), async move {
            let mut backoff = STORE_RETRY_FIRST;
            loop {
                match engine.drive(id).await {
                    Ok(_) => {}
                    // Logged where it happened; another runner drives the run (or will).
                    Err(e @ EngineError::Stopped { .. }) => tracing::info!(run = id, "{e}"),
                    Err(e @ EngineError::NotHeld { .. }) => tracing::info!(run = id, "{e}"),
                    // The store failed (a busy or unreachable database, a pool exhausted
                    // under load): the run is driven again from its last checkpoint, as
                    // after a restart, instead of being left undriven until one.
                    Err(e @ EngineError::Store(crate::store::StoreError::Db(_))) => {
                        tracing::warn!(
                            run = id,
                            "the store failed: {e}; driving the run again from its last \
                             checkpoint in {} s",
                            backoff.as_secs()
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(STORE_RETRY_MAX);
                        // Unless something else started driving it meanwhile.
                        if wakers.claim(id) {
                            continue;
                        }
                    }
                    Err(e) => tracing::error!(run = id, "the rollout stopped: {e}"),
                }
                return;
            }
        });
    }

    /// The rollouts the server knows, by name, with their last progress.
    pub fn rollouts(&self) -> Vec<(i64, Progress)> {
        let known = self
            .inner
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let invalid = self
            .inner
            .invalid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let names: std::collections::BTreeSet<&String> =
            known.keys().chain(invalid.keys()).collect();
        names
            .into_iter()
            .map(|name| {
                let k = known.get(name);
                (
                    k.map_or(0, |k| k.id),
                    overlay(k.map(|k| k.progress.clone()), invalid.get(name)),
                )
            })
            .collect()
    }

    /// How many rollouts are in each state (for `/metrics`).
    pub fn states(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (_, progress) in self.rollouts() {
            *out.entry(progress.state).or_default() += 1;
        }
        out
    }

    /// Runs with a driver task now.
    pub fn driving(&self) -> usize {
        self.inner.wakers.len()
    }

    /// Every rollout name the configuration holds.
    pub fn configured(&self) -> Vec<String> {
        self.current()
            .map(|l| l.bundle.rollouts.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    }
}

impl Loaded {
    fn clone_shallow(&self) -> Loaded {
        Loaded {
            bundle: self.bundle.clone(),
            engine: self.engine.clone(),
            invalid: self.invalid.clone(),
            held: self.held.clone(),
            problems: self.problems.clone(),
            webhooks: self.webhooks.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}
