//! Test helpers shared by the target, gate and spec tests: a sample step, relative paths to
//! temporary folders, and a tiny scripted HTTP/1.1 server on 127.0.0.1:0 that records what
//! it received. Written by hand (not a mock crate) so the tests see real sockets and real
//! reqwest behaviour.

use super::{Operation, Step};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A step with every field set.
pub(crate) fn step() -> Step {
    Step {
        id: "web#1/3-update-batch".into(),
        rollout: "web".into(),
        operation: Operation::UpdateBatch,
        phase: "half".into(),
        phase_index: 1,
        phase_count: 3,
        weight: 12.5,
        stable_version: "v1".into(),
        canary_version: "v2".into(),
        instances: vec!["web-1".into(), "web-2".into()],
        updated: 2,
        total: 16,
    }
}

/// `abs` as a path relative to the current directory (`../../tmp/x`), so that a test can
/// use relative paths to a temporary folder without changing the current directory (which
/// the tests, running in parallel, share).
pub(crate) fn relative_to_cwd(abs: &std::path::Path) -> std::path::PathBuf {
    use std::path::{Component, PathBuf};
    let cwd = std::env::current_dir().expect("current directory");
    assert!(abs.is_absolute() && cwd.is_absolute(), "{}", abs.display());
    let mut out = PathBuf::new();
    for c in cwd.components() {
        if matches!(c, Component::Normal(_)) {
            out.push("..");
        }
    }
    for c in abs.components() {
        if let Component::Normal(part) = c {
            out.push(part);
        }
    }
    assert!(out.is_relative());
    out
}

/// One request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Status, extra headers, body.
    Status(u16, Vec<(String, String)>, String),
    /// Read the request and never answer (until the server is dropped).
    Hang,
}

/// Shorthand for a plain reply.
pub(crate) fn reply(status: u16, body: &str) -> Reply {
    Reply::Status(status, Vec::new(), body.into())
}

/// A scripted server: the n-th request gets the n-th reply (the last one repeats). Dropping
/// it aborts the accept task, so no test leaves a server behind.
pub(crate) struct Server {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut hung = Vec::new();
            let mut n = 0usize;
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let Some(req) = read_request(&mut conn).await else {
                    continue;
                };
                log.lock().unwrap().push(req);
                let r = replies
                    .get(n)
                    .or(replies.last())
                    .cloned()
                    .unwrap_or(reply(500, "no reply scripted"));
                n += 1;
                match r {
                    Reply::Hang => hung.push(conn),
                    Reply::Status(status, headers, body) => {
                        let mut head = format!(
                            "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
                            body.len()
                        );
                        for (k, v) in headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        let _ = conn.write_all(head.as_bytes()).await;
                        let _ = conn.write_all(body.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    }
                }
            }
        });
        Server {
            addr,
            received,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(conn: &mut TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// A URL on 127.0.0.1 where nothing listens (the port was just released).
pub(crate) async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}
