//! The store on a real PostgreSQL server (`--db postgres://…`, started by the tests through
//! `rollgate-pgtest`): `run`, `get`, `history` and the actions behave as on a SQLite file.

use crate::common::{quickstart, rollgate};
use rollgate_pgtest::Cluster;
use serde_json::Value;

/// `rollgate get NAME --format json` on `store`, parsed.
fn get_json(store: &str, name: &str) -> Value {
    let got = rollgate(&["get", name, "--db", store, "--format", "json"]);
    assert_eq!(got.code, 0, "get {name}: {}", got.stderr);
    serde_json::from_str(&got.stdout).expect("get --format json prints JSON")
}

/// The fields of a status that do not depend on where the store is.
fn essentials(status: &Value) -> Value {
    serde_json::json!({
        "name": status["name"],
        "run": status["run"],
        "state": status["state"],
        "phase": status["phase"],
        "failures": status["failures"],
        "counts": status["counts"],
    })
}

#[test]
fn the_quickstart_on_postgres_ends_as_on_sqlite() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database().expect("a database");
    let dir = tempfile::tempdir().expect("tempdir");
    let on_pg = quickstart(dir.path(), &url, &[]);
    assert_eq!(on_pg.code, 5, "{}\n{}", on_pg.stdout, on_pg.stderr);
    assert!(
        on_pg.stdout.contains("checkout: succeeded"),
        "{}",
        on_pg.stdout
    );
    assert!(
        on_pg.stdout.contains("payments: rolled-back"),
        "{}",
        on_pg.stdout
    );

    let file = dir.path().join("same.db").display().to_string();
    let on_file = quickstart(dir.path(), &file, &[]);
    assert_eq!(on_file.code, 5, "{}", on_file.stderr);
    for name in ["checkout", "payments"] {
        assert_eq!(
            essentials(&get_json(&url, name)),
            essentials(&get_json(&file, name)),
            "{name}: PostgreSQL and SQLite disagree"
        );
        let history = rollgate(&["history", name, "--db", &url]);
        assert_eq!(history.code, 0, "{}", history.stderr);
        let history_file = rollgate(&["history", name, "--store", &file]);
        assert_eq!(history.stdout, history_file.stdout, "history of {name}");
    }

    // An action through the CLI reaches the PostgreSQL store: a retry of the rolled-back
    // run is refused or recorded exactly as on the file.
    let retry_pg = rollgate(&["retry", "payments", "--db", &url, "--reason", "fixed"]);
    let retry_file = rollgate(&["retry", "payments", "--store", &file, "--reason", "fixed"]);
    assert_eq!(
        (retry_pg.code, retry_pg.stdout.replace(&url, "STORE")),
        (retry_file.code, retry_file.stdout.replace(&file, "STORE")),
        "{}\n{}",
        retry_pg.stderr,
        retry_file.stderr
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://rg:pa55w0rd-secret@127.0.0.1:{port}/rollgate");
    let got = rollgate(&["get", "web", "--db", &url]);
    assert_ne!(got.code, 0);
    assert!(
        got.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        got.stderr
    );
    assert!(!got.stderr.contains("pa55w0rd-secret"), "{}", got.stderr);
    assert!(!got.stdout.contains("pa55w0rd-secret"), "{}", got.stdout);
}
