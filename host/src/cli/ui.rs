//! `rollgate ui --store FILE [--listen ADDR] [--tokens FILE]`: the web view of a store
//! `rollgate run` wrote, read-only ([`crate::ui`]): the same pages as `rollgate serve
//! --ui-listen`, without actions.
//!
//! It prints `rollgate ui: listening on http://ADDR` on stderr once bound and runs until
//! SIGINT/SIGTERM (exit 0). Without `--tokens` nobody signs in and everyone reads, so it
//! listens only on a loopback address; with `--tokens` people sign in, and every role
//! reads only. Exit 4: a store that is not there or not a store, a bad tokens file, an
//! address that cannot be bound or that is not loopback without `--tokens`.

use super::exit;
use crate::api::Tokens;
use crate::store::Store;
use clap::Args;
use std::path::PathBuf;

/// `rollgate ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The store `rollgate run --store` wrote (read, never written).
    #[arg(long)]
    pub store: PathBuf,
    /// Where the web view listens; an address other than loopback needs `--tokens`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Require sign-in with a token of this file (lines `TOKEN ROLE NAME`); every role
    /// reads only here.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
}

/// `rollgate ui`.
pub async fn run(args: UiArgs) -> u8 {
    let fail = |code: u8, message: String| {
        eprintln!("rollgate ui: {message}");
        code
    };
    let tokens = match args.tokens.as_deref().map(Tokens::load).transpose() {
        Ok(t) => t,
        Err(e) => return fail(exit::INVALID_INPUT, e),
    };
    if tokens.is_none() {
        match tokio::net::lookup_host(&args.listen).await {
            Ok(mut addresses) => {
                if let Some(a) = addresses.find(|a| !a.ip().is_loopback()) {
                    return fail(
                        exit::INVALID_INPUT,
                        format!(
                            "--listen {}: {} is not a loopback address, and without --tokens anyone who reaches the web view reads every rollout; listen on 127.0.0.1 (or ::1), or add --tokens FILE to require sign-in",
                            args.listen,
                            a.ip()
                        ),
                    );
                }
            }
            Err(e) => {
                return fail(
                    exit::INVALID_INPUT,
                    format!("--listen {}: not an address to listen on: {e}", args.listen),
                );
            }
        }
    }
    if !args.store.is_file() {
        return fail(
            exit::INVALID_INPUT,
            format!(
                "--store {}: no such file; give the store `rollgate run --store FILE` wrote",
                args.store.display()
            ),
        );
    }
    let store = match Store::open_existing(&args.store).await {
        Ok(s) => s,
        Err(e) => return fail(exit::INVALID_INPUT, e.to_string()),
    };
    let (listener, address) = match super::serve::bind("--listen", &args.listen).await {
        Ok(bound) => bound,
        Err(e) => return fail(exit::INVALID_INPUT, e),
    };
    let state = crate::ui::UiState::store(store, tokens);
    state.warm();
    let app = crate::ui::router(state.clone());
    eprintln!("rollgate ui: listening on http://{address}");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            super::serve::shutdown().await;
            state.close();
        })
        .await;
    match served {
        Ok(()) => {
            eprintln!("rollgate ui: stopped");
            exit::OK
        }
        Err(e) => fail(exit::PLUGIN_ERROR, format!("the HTTP server failed: {e}")),
    }
}
