//! The operator actions (`pause`, `resume`, `promote`, `promote-full`, `abort`,
//! `rollback`, `retry`): asked of a `rollgate serve` API (`--server`), or written to the
//! store file a running `rollgate run` picks them up from. A rollback of a succeeded run and
//! a retry create the next run instead (`rollgate run` starts it).

use super::{Format, Out, exit};
use crate::engine::clock::now_ms;
use crate::engine::reversal::{self, ReverseError};
use crate::engine::state::{Control, State};
use crate::engine::{Action, RetryError, retry_run};
use crate::store::{Location, RolloutRow, Store};
use clap::Args;

/// An action on a rollout.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The rollout's name.
    pub rollout: String,
    /// The state store the runner uses: a SQLite file or a `postgres://` URL (`--db` is the
    /// same option).
    #[arg(
        long,
        alias = "db",
        default_value = "rollgate.db",
        value_name = "FILE|URL"
    )]
    pub store: Location,
    /// Why (audited).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who (audited; default $USER). With --server the identity of the token is audited.
    #[arg(long)]
    pub actor: Option<String>,
    /// Ask a `rollgate serve` API instead of writing to a store file (http://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The API token, with --server (default: $ROLLGATE_TOKEN); actions need an operator's.
    #[arg(long)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `rollgate pause|resume|promote|promote-full|abort|rollback|retry NAME`.
pub async fn action(action: Action, args: ActionArgs) -> u8 {
    let mut out = Out::default();
    let code = action_inner(action, &args, &mut out).await;
    out.flush();
    code
}

async fn action_inner(action: Action, args: &ActionArgs, out: &mut Out) -> u8 {
    if let Some(url) = &args.server {
        return remote(action, args, url, out).await;
    }
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into());
    if let Err(e) = crate::engine::check_request(&actor, &args.reason) {
        out.err(format!("rollgate: {}: {e}", action.name()));
        return exit::INVALID_INPUT;
    }
    let store = match Store::open_at(&args.store, true).await {
        Ok(s) => s,
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            return exit::INVALID_INPUT;
        }
    };
    let latest = match store.latest(&args.rollout).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            out.err(format!(
                "rollgate: no rollout named {:?} in {}; start it with `rollgate run FILE`",
                args.rollout, args.store
            ));
            return exit::INVALID_INPUT;
        }
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            return exit::PLUGIN_ERROR;
        }
    };
    if action == Action::Rollback && latest.state == State::Succeeded.name() {
        return rollback_after_success(&store, &latest, &actor, args, out).await;
    }
    if action == Action::Retry {
        retry(&store, &latest, &actor, args, out).await
    } else {
        request(action, &store, &latest, &actor, args, out).await
    }
}

/// The action asked of a server's API, and its answer printed.
async fn remote(action: Action, args: &ActionArgs, url: &str, out: &mut Out) -> u8 {
    let remote = super::remote::Remote::new(url, args.token.as_deref());
    let path = format!(
        "/rollouts/{}/{}",
        super::remote::segment(&args.rollout),
        action.name()
    );
    let body = serde_json::json!({ "reason": args.reason });
    match remote.post::<serde_json::Value>(&path, &body).await {
        Ok(v) => {
            out.line(match args.format {
                Format::Json => v.to_string(),
                Format::Human => remote_line(action, args, &v),
            });
            exit::OK
        }
        Err(e) => {
            out.err(format!("rollgate: {}", e.message));
            e.code
        }
    }
}

/// A server's answer to an action, for people: the run it started, the action applied, or
/// the request queued.
fn remote_line(action: Action, args: &ActionArgs, v: &serde_json::Value) -> String {
    let field = |k: &str| {
        v.get(k)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .unwrap_or_default()
    };
    if action == Action::Retry || v.get("reverses").is_some() {
        format!(
            "{}: run {} started by the server ({})",
            args.rollout,
            field("run"),
            field("reason")
        )
    } else if field("outcome") == "applied" {
        format!(
            "{}: {} applied to run {} ({} → {})",
            args.rollout,
            action.name(),
            field("run"),
            field("stateBefore"),
            field("state")
        )
    } else {
        format!(
            "{}: {} requested (#{}; run {} is {}); the server applies it at the run's next step",
            args.rollout,
            action.name(),
            field("request"),
            field("run"),
            field("state")
        )
    }
}

/// Say that `action` created run `row`, which the next `rollgate run` starts (with the run
/// it reverses, for a rollback after success).
fn queued(
    out: &mut Out,
    format: Format,
    row: &RolloutRow,
    action: Action,
    reason: &str,
    reverses: Option<i64>,
) {
    out.line(match format {
        Format::Human => format!(
            "{}: run {} queued ({reason}); `rollgate run` starts it",
            row.name, row.run
        ),
        Format::Json => {
            let mut v = serde_json::json!({
                "rollout": row.name, "action": action.name(), "run": row.run,
                "state": row.state, "reason": reason,
            });
            if let Some(run) = reverses {
                v["reverses"] = run.into();
            }
            v.to_string()
        }
    });
}

/// After a success: a new run that takes the previous version back.
async fn rollback_after_success(
    store: &Store,
    latest: &RolloutRow,
    actor: &str,
    args: &ActionArgs,
    out: &mut Out,
) -> u8 {
    match reversal::rollback_after_success(store, latest, actor, &args.reason, now_ms()).await {
        Ok((row, reason)) => {
            queued(
                out,
                args.format,
                &row,
                Action::Rollback,
                &reason,
                Some(latest.run),
            );
            exit::OK
        }
        Err(e @ ReverseError::Refused(_)) => {
            out.err(format!("rollgate: {e}"));
            exit::PROBLEMS
        }
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            exit::PLUGIN_ERROR
        }
    }
}

/// A retry: the next run of an ended one, queued for `rollgate run`.
async fn retry(
    store: &Store,
    latest: &RolloutRow,
    actor: &str,
    args: &ActionArgs,
    out: &mut Out,
) -> u8 {
    match retry_run(store, latest, actor, &args.reason, now_ms()).await {
        Ok((row, reason)) => {
            queued(out, args.format, &row, Action::Retry, &reason, None);
            exit::OK
        }
        Err(e @ RetryError::NotEnded { .. }) => {
            out.err(format!("rollgate: {e}"));
            exit::PROBLEMS
        }
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            exit::PLUGIN_ERROR
        }
    }
}

/// Any other action: a request in the store, which the runner applies at its next step.
async fn request(
    action: Action,
    store: &Store,
    latest: &RolloutRow,
    actor: &str,
    args: &ActionArgs,
    out: &mut Out,
) -> u8 {
    // An ended run has no runner to refuse the request: the rule is asked here (only a
    // rollback reopens an ended run, and only one that did not restore the stable version
    // or finish the rollout already).
    if latest.finished
        && let Err(why) = crate::engine::permit_row(action, latest)
    {
        out.err(format!("rollgate: {why}"));
        return exit::PROBLEMS;
    }
    match store
        .request_action(latest.id, action.name(), actor, &args.reason, now_ms())
        .await
    {
        Ok(id) => {
            let pending = store.pending_actions(latest.id).await.unwrap_or_default();
            let control = Control::of(pending.iter().map(|a| a.action.as_str()));
            out.line(match args.format {
                Format::Human => format!(
                    "{}: {} requested (#{id}; run {} is {}, {}); the runner applies it at its next step",
                    args.rollout,
                    action.name(),
                    latest.run,
                    latest.state,
                    control.name()
                ),
                Format::Json => serde_json::json!({
                    "rollout": args.rollout, "action": action.name(), "request": id,
                    "run": latest.run, "state": latest.state, "control": control.name(),
                })
                .to_string(),
            });
            exit::OK
        }
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            exit::PLUGIN_ERROR
        }
    }
}
