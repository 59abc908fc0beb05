//! rollgate end to end: the real `rollgate` binary, real compiled plugins, a real
//! Prometheus, real SQLite files, and stand-ins only for what cannot run here (the Datadog
//! SaaS API). One test binary, one module per area; what several areas need (running the
//! binary, the servers, the stand-ins) is in [`common`], the `rollgate serve` harness in
//! `common::serve`, and long specs are files under `tests/fixtures/<area>/`.
//!
//! | module | what it covers |
//! |---|---|
//! | `cli` | `plugin inspect`/`check`, `schema`, `lint`, exit codes and messages |
//! | `files` | the one file walker and reader: FIFOs, devices, caps, ConfigMap mounts, moves |
//! | `rollout` | the engine through `rollgate run`: strategies, targets, gates, actions |
//! | `reversal` | rollback after success, mode `new-rollout`, retry rolling forward |
//! | `crash` | SIGKILL mid-rollout: nothing applied twice, nothing lost |
//! | `postgres` | the store on a real PostgreSQL (`--db postgres://…`): run, get, history, actions |
//! | `invalid_spec` | rollout by rollout: invalid-spec rollouts, fixes that start or resume them, resume with fixed documents |
//! | `leases` | several `serve` runners on one store: the runs split, taken over after a SIGKILL, fenced after a SIGSTOP, handed over on SIGTERM, actions through any runner |
//! | `runner` | the runner's heartbeat: stale after SIGKILL, fresh after a restart, stopped after SIGTERM |
//! | `serve`, `serve_leaks` | server mode: API, auth, events, reloads, panics, secrets |
//! | `outbox` | webhooks through the store's outbox: two servers on one store, SIGKILL mid-delivery |
//! | `series` | the metric series of a run: `GET /api/v2/rollouts/NAME/series` |
//! | `status` | `get`, `history`, the live tree |
//! | `ui` | the web view's server: sign-in, sessions, CSRF, headers, the list, store views |
//! | `verify`, `replay` | CI dry-runs over live backends and recordings |
//! | `prometheus`, `datadog`, `slo` | the backends against a real Prometheus and a Datadog stand-in |
//! | `plugin_sandbox`, `plugin_kit`, `judge`, `http_check` | plugins: limits, the author kit, the shipped plugins |
//! | `oci` | plugins from a real OCI registry (`docker-registry`): push, pin, pull, the cache, signatures, credentials (Basic and a token service), TLS, a registry down or silent |
//! | `demo` | the live demo on real parts |
//! | `browser` | the web view in a real headless Chromium (WebDriver) |

mod common;

mod browser;
mod cli;
mod crash;
#[cfg(feature = "datadog")]
mod datadog;
mod demo;
mod files;
mod http_check;
mod invalid_spec;
mod judge;
mod leases;
mod oci;
mod outbox;
mod plugin_kit;
mod plugin_sandbox;
mod postgres;
mod prometheus;
mod replay;
mod reversal;
mod rollout;
mod runner;
mod series;
mod serve;
mod serve_leaks;
mod slo;
mod status;
mod ui;
mod ui_detail;
mod verify;
