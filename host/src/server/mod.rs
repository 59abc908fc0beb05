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

pub mod notify;
pub mod refs;
pub mod supervise;
pub mod v2;
pub mod views;

use crate::engine::clock::now_ms;
use crate::engine::reversal::{self, ReverseError};
use crate::engine::runner::Runner;
use crate::engine::state::State;
use crate::engine::{
    Action, Committed, ENGINE_ACTOR, Engine, NewRun, Progress, RetryError, Wakers, create_run,
    retry_run,
};
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

/// How long an action request waits for the run to apply or refuse it before the API
/// answers "queued".
const OUTCOME_WAIT: Duration = Duration::from_secs(5);

/// The actor of runs a server starts by itself.
pub const SERVE_ACTOR: &str = "rollgate serve";

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The configuration folder (or file).
    pub config: PathBuf,
    /// How often the folder is looked at for changes.
    pub reload_every: Duration,
    /// Fallback: how often a waiting run looks in the store for actions written by another
    /// process (actions through the API wake the run at once).
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
}

/// One committed change, as the event stream and webhooks carry it (its serde shape is
/// the v1 event and the webhook payload; [`v2::Event`] adds the progress after it).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Server-wide, increasing: the order events were committed in.
    pub seq: u64,
    /// The rollout.
    pub rollout: String,
    /// Its run.
    pub run: i64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// Who (`rollgate`, `policy:NAME`, `gate:NAME`, an operator's identity).
    pub actor: String,
    /// What (`start`, `pause`, `rollback`, `metric-failed`, …).
    pub action: String,
    /// `decision`, `state` (a state change that is not a decision) or `metric`.
    pub kind: &'static str,
    /// Why: the explanation, with the numbers.
    pub reason: String,
    /// State before.
    pub state_before: String,
    /// State after.
    pub state_after: String,
    /// The phase and weight after.
    pub phase: String,
    /// The weight after.
    pub weight: f64,
    /// The progress after the commit (the v2 stream carries it; v1 and webhooks do not).
    #[serde(skip)]
    #[schemars(skip)]
    pub progress: Arc<Progress>,
}

/// Audit actions that are decisions (what the failure policy, a gate, an operator or the
/// engine decided), as opposed to bookkeeping (`apply`, `metric-*`).
const DECISIONS: &[&str] = &[
    "start",
    "verified",
    "next-phase",
    "promote",
    "promote-full",
    "pause",
    "resume",
    "rollback",
    "abort",
    "succeed",
    "rolled-back",
    "deadline",
    "retry",
];

fn kind_of(action: &str, before: &str, after: &str) -> &'static str {
    if DECISIONS.contains(&action) {
        "decision"
    } else if action.starts_with("metric-") {
        "metric"
    } else if before != after {
        "state"
    } else {
        "step"
    }
}

/// Who took a decision, from the audit actor.
fn cause_of(actor: &str) -> &'static str {
    if actor.starts_with("policy:") {
        "verification"
    } else if actor.starts_with("gate:") {
        "gate"
    } else if actor == ENGINE_ACTOR || actor == SERVE_ACTOR {
        "engine"
    } else {
        "operator"
    }
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

/// The running configuration: the bundle and the engine built from it.
struct Loaded {
    bundle: Bundle,
    engine: Engine,
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
    /// Orders events: the sequence number and the send happen under it.
    seq: Mutex<u64>,
    known: Mutex<BTreeMap<String, Known>>,
    /// Rollouts in the state `invalid-spec`, as the store holds them.
    invalid: Mutex<BTreeMap<String, InvalidSpec>>,
    notifier: Notifier,
    ready: AtomicBool,
    /// This server as the store's runner ([`Fleet::register_runner`]), with its heartbeat
    /// task.
    runner: Mutex<Option<(Runner, tokio::task::JoinHandle<()>)>>,
    /// The runner's id, for the engines built from each configuration.
    runner_id: std::sync::OnceLock<i64>,
}

/// The server's rollouts. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

/// A refused configuration or request, with every problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub Vec<String>);

/// The file name a `POST /api/v1/documents` body is written under in `<config>/api/`:
/// `<kind>-<metadata.name>.yaml` of its first document, every character outside
/// `[a-z0-9_-]` replaced by `-` (so a name can never leave that folder). Refuses a body that
/// is not YAML documents or whose first document lacks `kind` or `metadata.name`. Pure (no
/// file is touched): the fuzz target `api_documents` calls it.
pub fn api_file_name(text: &str) -> Result<String, Refused> {
    #[derive(serde::Deserialize)]
    struct Head {
        kind: Option<String>,
        metadata: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        name: Option<String>,
    }
    let heads: Vec<Head> = serde_saphyr::from_multiple(text)
        .map_err(|e| Refused(vec![format!("the request body is not YAML documents: {e}")]))?;
    let first = heads
        .first()
        .ok_or_else(|| Refused(vec!["the request body holds no document".into()]))?;
    let (Some(kind), Some(name)) = (
        first.kind.as_deref(),
        first.metadata.as_ref().and_then(|m| m.name.as_deref()),
    ) else {
        return Err(Refused(vec![
            "the first document needs `kind` and `metadata.name`".into(),
        ]));
    };
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    Ok(format!("{}-{}.yaml", safe(kind), safe(name)))
}

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

/// What a rollout looks like given its latest run's progress and its `invalid-spec` record
/// (see [`views::Snapshot::invalid`]): a run in progress that is not held keeps its state.
fn overlay(progress: Option<Progress>, invalid: Option<&InvalidSpec>) -> Progress {
    match (progress, invalid) {
        (Some(p), None) => p,
        (None, Some(i)) => views::invalid_progress(i, None),
        (Some(p), Some(i)) => {
            let finished = matches!(
                p.state.as_str(),
                "succeeded" | "rolled-back" | "aborted" | "failed"
            );
            if finished || i.held_run.is_some() {
                views::invalid_progress(i, Some(p))
            } else {
                p
            }
        }
        (None, None) => views::invalid_progress(
            &InvalidSpec {
                name: String::new(),
                problems: Vec::new(),
                since_ms: 0,
                held_run: None,
            },
            None,
        ),
    }
}

/// Where a run of `rollgate serve` re-reads its rollout's documents on a resume: the folder
/// is loaded again if it changed, and the running configuration answers.
struct Reread(std::sync::Weak<Inner>);

impl crate::engine::Reconfigure for Reread {
    fn reread<'a>(
        &'a self,
        rollout: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::engine::Reread> + Send + 'a>>
    {
        Box::pin(async move {
            use crate::engine::{Current, Reread as R};
            let Some(inner) = self.0.upgrade() else {
                return R::Keep("the server is stopping".into());
            };
            let fleet = Fleet { inner };
            let changed = fleet
                .current()
                .is_none_or(|l| l.fingerprint != fingerprint(&fleet.inner.config.config));
            if changed && let Err(refused) = fleet.reload().await {
                return R::Refuse(refused.0);
            }
            let Some(loaded) = fleet.current() else {
                return R::Keep("the server has no configuration yet".into());
            };
            if let Some(problems) = loaded.invalid.get(rollout) {
                return R::Refuse(problems.clone());
            }
            match loaded.bundle.rollouts.iter().find(|r| r.name == rollout) {
                Some(spec) => R::Adopt(Box::new(Current {
                    spec: spec.clone(),
                    plugins: loaded.engine.plugins.clone(),
                    metrics: loaded.engine.metrics.clone(),
                    generation: loaded.engine.config_generation,
                })),
                None => R::Keep(format!(
                    "rollout {rollout:?} is no longer in the configuration folder"
                )),
            }
        })
    }
}

impl Fleet {
    /// A fleet over `store`; nothing runs until [`Fleet::start`].
    pub fn new(config: FleetConfig, store: Store, host: PluginHost) -> Fleet {
        let (events, _) = broadcast::channel(config.event_buffer.max(16));
        Fleet {
            inner: Arc::new(Inner {
                config,
                store,
                host,
                wakers: Arc::new(Wakers::default()),
                loaded: RwLock::new(None),
                status: Mutex::new(ConfigStatus::default()),
                changing: tokio::sync::Mutex::new(()),
                events,
                seq: Mutex::new(0),
                known: Mutex::new(BTreeMap::new()),
                invalid: Mutex::new(BTreeMap::new()),
                notifier: Notifier::new(),
                ready: AtomicBool::new(false),
                runner: Mutex::new(None),
                runner_id: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The notifier (its queue and counters).
    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    /// Register this server as the runner of the store's runs and start its heartbeat (a
    /// supervised task); call before [`Fleet::start`], once. Every run the server drives
    /// then records it, and `rollgate get` and the API tell whether it still beats.
    pub async fn register_runner(&self) -> Result<(), crate::store::StoreError> {
        if self.inner.runner_id.get().is_some() {
            return Ok(());
        }
        let runner =
            Runner::register(&self.inner.store, "serve", self.inner.config.heartbeat).await?;
        let _ = self.inner.runner_id.set(runner.id());
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
        let loaded = self.build().await?;
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
        self.reconcile(true).await.map_err(|e| Refused(vec![e]))?;
        self.inner.ready.store(true, Ordering::SeqCst);
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
        let fingerprint = fingerprint(path);
        let each = crate::spec::load_each(std::slice::from_ref(path));
        let store_failed = |e: crate::store::StoreError| Refused(vec![e.to_string()]);
        // The runs in progress (which may come from an older configuration) are set up
        // too: their plugins are loaded, and one that cannot be set up is held.
        let stored = self.inner.store.unfinished().await.map_err(store_failed)?;
        let stored_specs: Vec<(i64, RolloutSpec)> = stored
            .iter()
            .filter_map(|row| Some((row.id, serde_json::from_str(&row.spec).ok()?)))
            .collect();
        let runs: Vec<(i64, &RolloutSpec)> = stored_specs.iter().map(|(id, r)| (*id, r)).collect();
        let rollouts: Vec<&RolloutSpec> = each.bundle.rollouts.iter().collect();
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
            wakers: Some(self.inner.wakers.clone()),
            config_generation,
            reconfigure: Some(Arc::new(Reread(Arc::downgrade(&self.inner)))),
            runner: self.inner.runner_id.get().copied(),
        };
        let webhooks = bundle
            .rollouts
            .iter()
            .filter(|r| !r.notifications.is_empty())
            .map(|r| (r.name.clone(), r.notifications.clone()))
            .collect();
        Ok(Loaded {
            bundle,
            engine,
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
                self.spawn(&loaded.engine, row.id);
            }
        }
        let root_of = |spec: &RolloutSpec| {
            crate::spec::root_of(std::slice::from_ref(&self.inner.config.config), &spec.file)
        };
        for spec in &loaded.bundle.rollouts {
            let latest = store.latest(&spec.name).await.map_err(|e| e.to_string())?;
            match latest {
                // Driven (or held) above.
                Some(row) if !row.finished => {}
                // The same spec wherever the folder is mounted now (a reversal counts as the
                // spec it reversed: starting that again would undo the rollback).
                Some(row) if crate::engine::reversal::ran_spec(&row, spec, &root_of(spec)) => {
                    self.remember_row(&row);
                }
                Some(row) => {
                    let reason = format!(
                        "the configuration changed since run {} ended {}",
                        row.run, row.state
                    );
                    self.create_and_spawn(&loaded.engine, spec, "create", &reason, &row.state)
                        .await?;
                }
                None => {
                    self.create_and_spawn(&loaded.engine, spec, "create", "rollgate serve", "")
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Make the store's `invalid-spec` records what this configuration found (invalid
    /// rollouts, held runs), and tell the event stream and webhooks of each rollout that
    /// turned `invalid-spec` (or whose problems changed) and of each that loads again.
    async fn record_invalid(&self, loaded: &Loaded) -> Result<(), String> {
        let store = &self.inner.store;
        let err = |e: crate::store::StoreError| e.to_string();
        let now = now_ms();
        let mut wanted: BTreeMap<String, (Vec<String>, Option<i64>)> = loaded
            .invalid
            .iter()
            .map(|(name, problems)| (name.clone(), (problems.clone(), None)))
            .collect();
        for (id, (name, problems)) in &loaded.held {
            let entry = wanted.entry(name.clone()).or_default();
            for p in problems {
                if !entry.0.contains(p) {
                    entry.0.push(p.clone());
                }
            }
            entry.1 = Some(*id);
        }
        let before: BTreeMap<String, InvalidSpec> = store
            .invalid_specs()
            .await
            .map_err(err)?
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        for (name, (problems, held)) in &wanted {
            store
                .set_invalid(name, problems, *held, now)
                .await
                .map_err(err)?;
        }
        for name in before.keys().filter(|n| !wanted.contains_key(*n)) {
            store.clear_invalid(name).await.map_err(err)?;
        }
        let after: BTreeMap<String, InvalidSpec> = store
            .invalid_specs()
            .await
            .map_err(err)?
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        *self.inner.invalid.lock().unwrap_or_else(|e| e.into_inner()) = after.clone();
        // The status says what the store says, once it says it.
        {
            let mut status = self.inner.status.lock().unwrap_or_else(|e| e.into_inner());
            status.invalid = after
                .iter()
                .map(|(name, i)| (name.clone(), i.problems.clone()))
                .collect();
            status.problems = loaded.problems.clone();
        }
        let known = |name: &str| {
            self.inner
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .map(|k| k.progress.clone())
        };
        let webhooks = self.inner.config.global_webhooks.clone();
        for (name, invalid) in &after {
            let old = before.get(name);
            if old.is_some_and(|o| o.problems == invalid.problems && o.held_run == invalid.held_run)
            {
                continue;
            }
            let progress = known(name);
            let state_before = match (old, &progress) {
                (Some(_), _) => views::INVALID_SPEC.to_string(),
                (None, Some(p)) => p.state.clone(),
                (None, None) => String::new(),
            };
            let shown = overlay(progress.clone(), Some(invalid));
            self.inner.emit(
                Event {
                    seq: 0,
                    rollout: name.clone(),
                    run: shown.run,
                    at_ms: now,
                    actor: SERVE_ACTOR.to_string(),
                    action: views::INVALID_SPEC.to_string(),
                    kind: "state",
                    reason: invalid.problems.join("; "),
                    state_before,
                    state_after: shown.state.clone(),
                    phase: shown.phase_name.clone(),
                    weight: shown.weight,
                    progress: Arc::new(shown),
                },
                &webhooks,
            );
        }
        for name in before.keys().filter(|n| !after.contains_key(*n)) {
            let progress = known(name);
            self.inner.emit(
                Event {
                    seq: 0,
                    rollout: name.clone(),
                    run: progress.as_ref().map_or(0, |p| p.run),
                    at_ms: now,
                    actor: SERVE_ACTOR.to_string(),
                    action: "spec-valid".to_string(),
                    kind: "state",
                    reason: format!(
                        "the documents of rollout {name:?} load again (configuration generation {})",
                        loaded.engine.config_generation
                    ),
                    state_before: views::INVALID_SPEC.to_string(),
                    state_after: progress
                        .as_ref()
                        .map_or_else(|| "pending".to_string(), |p| p.state.clone()),
                    phase: progress
                        .as_ref()
                        .map(|p| p.phase_name.clone())
                        .unwrap_or_default(),
                    weight: progress.as_ref().map_or(0.0, |p| p.weight),
                    progress: Arc::new(overlay(progress.clone(), None)),
                },
                &webhooks,
            );
        }
        Ok(())
    }

    async fn create_and_spawn(
        &self,
        engine: &Engine,
        spec: &RolloutSpec,
        action: &str,
        reason: &str,
        before: &str,
    ) -> Result<RolloutRow, String> {
        let new = NewRun {
            actor: SERVE_ACTOR,
            action,
            reason,
            state_before: before,
        };
        let row = create_run(&self.inner.store, spec, now_ms(), new)
            .await
            .map_err(|e| e.to_string())?;
        self.remember_row(&row);
        self.spawn(engine, row.id);
        Ok(row)
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

    fn spawn(&self, engine: &Engine, id: i64) {
        if !self.inner.wakers.claim(id) {
            // Already driven: make sure it looks at its requests.
            self.inner.wakers.wake(id);
            return;
        }
        let engine = engine.clone();
        supervise::spawn("run", format!("run id {id}"), async move {
            if let Err(e) = engine.drive(id).await {
                tracing::error!(run = id, "the rollout stopped: {e}");
            }
        });
    }

    /// What every commit does in server mode: remember the progress, count, stream, notify.
    fn sink(&self) -> crate::engine::Sink {
        let weak = Arc::downgrade(&self.inner);
        Arc::new(move |c: &Committed<'_>| {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let telemetry = crate::telemetry::global();
            for m in c.measurements {
                telemetry.count(
                    "rollgate_measurements_total",
                    &[("verdict", m.verdict.as_str())],
                    1,
                );
            }
            inner
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    c.progress.rollout.clone(),
                    Known {
                        id: c.id,
                        progress: c.progress.clone(),
                    },
                );
            let webhooks = inner.webhooks_for(&c.progress.rollout);
            let progress = Arc::new(c.progress.clone());
            for e in c.events {
                let kind = kind_of(&e.action, &e.state_before, &e.state_after);
                if kind == "decision" {
                    let cause = cause_of(&e.actor);
                    telemetry.count(
                        "rollgate_decisions_total",
                        &[("decision", e.action.as_str()), ("by", cause)],
                        1,
                    );
                    if e.action == "rollback"
                        || e.action == "deadline" && e.state_after == "rolling-back"
                    {
                        let cause = if e.action == "deadline" {
                            "deadline"
                        } else {
                            cause
                        };
                        telemetry.count("rollgate_rollbacks_total", &[("cause", cause)], 1);
                    }
                }
                inner.emit(
                    Event {
                        seq: 0,
                        rollout: c.progress.rollout.clone(),
                        run: c.progress.run,
                        at_ms: e.at_ms,
                        actor: e.actor.clone(),
                        action: e.action.clone(),
                        kind,
                        reason: e.reason.clone(),
                        state_before: e.state_before.clone(),
                        state_after: e.state_after.clone(),
                        phase: c.progress.phase_name.clone(),
                        weight: c.progress.weight,
                        progress: progress.clone(),
                    },
                    &webhooks,
                );
            }
        })
    }

    /// How many subscribers the event stream has now (API streams and actions waiting for
    /// their outcome).
    pub fn subscribers(&self) -> usize {
        self.inner.events.receiver_count()
    }

    /// Subscribe to the events committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
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

    /// Ask for `action` on rollout `name` as `actor`. Actions other than retry are recorded
    /// in the store and the run is woken (or driven again, for a rollback of an aborted or
    /// failed run), then the answer waits (a few seconds at most) for the run to apply the
    /// action (`outcome: applied`, with the state after) or refuse it (409, with why); a
    /// run too busy to answer in time gets `outcome: queued`. Retry creates and starts the
    /// next run; so does a rollback of a succeeded run (the run that reverses it, with
    /// `reverses`). `Err((status, message))`.
    pub async fn act(
        &self,
        name: &str,
        action: Action,
        actor: &str,
        reason: &str,
    ) -> Result<serde_json::Value, (u16, String)> {
        crate::engine::check_request(actor, reason).map_err(|e| (400, e))?;
        let store = &self.inner.store;
        let internal = |e: crate::store::StoreError| (500, e.to_string());
        let invalid = self
            .inner
            .invalid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let latest = store.latest(name).await.map_err(internal)?;
        let latest = match (latest, &invalid) {
            (Some(row), _) => row,
            (None, Some(i)) => {
                return Err((
                    409,
                    format!(
                        "rollout {name:?} is invalid-spec and has no run to {}: {}; fix the documents and it starts",
                        action.name(),
                        i.problems.join("; ")
                    ),
                ));
            }
            (None, None) => return Err((404, format!("no rollout named {name:?}"))),
        };
        if let Some(i) = &invalid
            && (i.held_run == Some(latest.id) || action == Action::Retry)
        {
            let what = if action == Action::Retry {
                "a retry would start a run of documents that do not load".to_string()
            } else {
                format!(
                    "run {} is held until its documents load (it then resumes where it was by itself)",
                    latest.run
                )
            };
            return Err((
                409,
                format!(
                    "rollout {name:?} is invalid-spec: {what}; fix: {}",
                    i.problems.join("; ")
                ),
            ));
        }
        let engine = self
            .current()
            .map(|l| l.engine.clone())
            .ok_or_else(|| (503, "the server has no configuration yet".to_string()))?;
        if action == Action::Retry {
            let (row, reason) = retry_run(store, &latest, actor, reason, now_ms())
                .await
                .map_err(|e| match e {
                    RetryError::NotEnded { .. } => (409, e.to_string()),
                    RetryError::Engine(e) => (500, e.to_string()),
                })?;
            self.remember_row(&row);
            self.spawn(&engine, row.id);
            return Ok(serde_json::json!({
                "rollout": name, "action": "retry", "run": row.run, "state": row.state,
                "reason": reason,
            }));
        }
        if action == Action::Rollback && latest.state == State::Succeeded.name() {
            // After a success: a new run takes the previous version back, started at once.
            let (row, reason) =
                reversal::rollback_after_success(store, &latest, actor, reason, now_ms())
                    .await
                    .map_err(|e| match e {
                        ReverseError::Refused(_) => (409, e.to_string()),
                        ReverseError::Engine(e) => (500, e.to_string()),
                    })?;
            self.remember_row(&row);
            self.spawn(&engine, row.id);
            return Ok(serde_json::json!({
                "rollout": name, "action": "rollback", "run": row.run, "state": row.state,
                "reason": reason, "reverses": latest.run,
            }));
        }
        let reopens =
            action == Action::Rollback && matches!(latest.state.as_str(), "aborted" | "failed");
        if latest.finished && !reopens {
            return Err((
                409,
                format!(
                    "{name:?} run {} already ended {}; nothing to {}",
                    latest.run,
                    latest.state,
                    action.name()
                ),
            ));
        }
        // Listen before asking, so the engine's answer cannot be missed.
        let mut events = self.inner.events.subscribe();
        let request = store
            .request_action(latest.id, action.name(), actor, reason, now_ms())
            .await
            .map_err(internal)?;
        if !self.inner.wakers.wake(latest.id) {
            self.spawn(&engine, latest.id);
        }
        let refused = format!("{}-refused", action.name());
        let answer = tokio::time::timeout(OUTCOME_WAIT, async {
            loop {
                match events.recv().await {
                    Ok(e)
                        if e.rollout == name
                            && e.run == latest.run
                            && e.actor == actor
                            && (e.action == action.name() || e.action == refused) =>
                    {
                        return Some(e);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        match answer {
            Some(e) if e.action == refused => Err((409, e.reason.clone())),
            Some(e) => Ok(serde_json::json!({
                "rollout": name, "action": action.name(), "request": request,
                "run": latest.run, "outcome": "applied", "stateBefore": e.state_before,
                "state": e.state_after, "reason": e.reason,
            })),
            // The run is busy (a long plugin call, a slow target step): it will get to it.
            None => Ok(serde_json::json!({
                "rollout": name, "action": action.name(), "request": request,
                "run": latest.run, "outcome": "queued", "state": latest.state,
            })),
        }
    }

    /// Add or replace documents through the API: the text is written to
    /// `<config>/api/<kind>-<name>.yaml` (after its first document) and the configuration
    /// reloaded; when that is refused, the file is put back as it was and the problems
    /// returned. Returns the file written.
    pub async fn apply(&self, text: &str) -> Result<PathBuf, Refused> {
        let name = api_file_name(text)?;
        let root = &self.inner.config.config;
        if !root.is_dir() {
            return Err(Refused(vec![format!(
                "documents can only be applied to a configuration folder; {} is a file",
                root.display()
            )]));
        }
        let dir = root.join("api");
        let file = dir.join(name);
        let _changing = self.inner.changing.lock().await;
        // Before anything is written, read or resolved: a reference to the server's files,
        // environment or programs must be one the folder's own documents use, or allowed.
        // Nothing is looked up, so the answer is the same whether it exists or not.
        let found = refs::in_text(text, &file).map_err(|e| Refused(vec![e]))?;
        if !found.is_empty() {
            let mut allowed = self.inner.config.api_allow.clone();
            if let Some(current) = self.current() {
                allowed.extend(refs::in_bundle(&current.bundle, &dir));
            }
            let problems = refs::refused(&found, &allowed, &crate::spec::shown_path(&file));
            if !problems.is_empty() {
                tracing::warn!(
                    file = %file.display(),
                    refused = problems.len(),
                    "documents refused: server-side references not allowed through the API"
                );
                return Err(Refused(problems));
            }
        }
        let before = crate::files::read_text(&file, &crate::files::SPEC_FILE).ok();
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&file, text))
            .map_err(|e| Refused(vec![format!("cannot write {}: {e}", file.display())]))?;
        let result = match self.reload_caught().await {
            // Applied documents that do not load are refused, not installed as
            // `invalid-spec`: the caller is there to be told.
            Ok(()) => match self.problems_of(&file, text) {
                problems if problems.is_empty() => Ok(()),
                problems => Err(Refused(problems)),
            },
            Err(refused) => Err(refused),
        };
        match result {
            Ok(()) => Ok(file),
            Err(refused) => {
                let restored = match &before {
                    Some(old) => std::fs::write(&file, old),
                    None => std::fs::remove_file(&file),
                };
                if let Err(e) = restored {
                    tracing::error!(
                        "cannot restore {} after a refused apply: {e}",
                        file.display()
                    );
                }
                // The folder is as it was: load it again (a refused reload already kept
                // the running configuration).
                if self
                    .current()
                    .is_some_and(|l| l.fingerprint != fingerprint(root))
                {
                    let _ = self.reload_caught().await;
                }
                self.mark_seen();
                Err(refused)
            }
        }
    }

    /// The problems of the running configuration that concern documents applied as `text`
    /// in `file`: those written in the file, and those of the rollouts it declares.
    fn problems_of(&self, file: &Path, text: &str) -> Vec<String> {
        let Some(loaded) = self.current() else {
            return Vec::new();
        };
        let shown = format!("{}:", crate::spec::shown_path(file).display());
        #[derive(serde::Deserialize)]
        struct Head {
            kind: Option<String>,
            metadata: Option<Meta>,
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            name: Option<String>,
        }
        let declared: Vec<String> = serde_saphyr::from_multiple::<Head>(text)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.kind.as_deref() == Some("Rollout"))
            .filter_map(|h| h.metadata?.name)
            .collect();
        let mut out: Vec<String> = Vec::new();
        for (name, problems) in &loaded.invalid {
            for p in problems {
                if (declared.contains(name) || p.starts_with(&shown)) && !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        for p in &loaded.problems {
            if p.starts_with(&shown) && !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// Every rollout name the configuration holds.
    pub fn configured(&self) -> Vec<String> {
        self.current()
            .map(|l| l.bundle.rollouts.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    }
}

impl Inner {
    /// Number an event, send it to the webhooks that want it and to the event stream.
    fn emit(&self, mut event: Event, webhooks: &[crate::spec::model::NotificationSpec]) {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        event.seq = *seq;
        let event = Arc::new(event);
        if event.kind != "step" && event.kind != "metric" || event.state_before != event.state_after
        {
            for w in webhooks {
                if w.events.is_empty() || w.events.contains(&event.action) {
                    self.notifier.send(&w.url, event.clone());
                }
            }
        }
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// The webhooks for one rollout: the server's and the rollout's own (from the running
    /// configuration).
    fn webhooks_for(&self, rollout: &str) -> Vec<crate::spec::model::NotificationSpec> {
        let mut out = self.config.global_webhooks.clone();
        if let Some(loaded) = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && let Some(own) = loaded.webhooks.get(rollout)
        {
            out.extend(own.iter().cloned());
        }
        out
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
