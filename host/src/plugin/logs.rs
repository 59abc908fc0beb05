//! Plugin output — `log` calls, stdout and stderr — goes to `tracing` tagged with the plugin's
//! name. A plugin can write as much as it likes; the host forwards at most a steady rate per
//! plugin (a token bucket), counts what it drops, and says so when it forwards again.

use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi_io::bytes::Bytes;

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// trace
    Trace,
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
}

/// Lines per second a plugin may log in the long run.
const RATE_PER_SEC: f64 = 50.0;
/// Lines a plugin may log in a burst.
const BURST: f64 = 200.0;
/// The longest line forwarded; longer lines are cut.
const MAX_LINE: usize = 2048;
/// How much of the end of stderr is kept per call, to explain traps.
const STDERR_TAIL: usize = 2048;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Dropped since the last forwarded line (announced with the next one).
    unannounced: u64,
    /// Dropped since the sink was made.
    dropped_total: u64,
}

/// The log destination of one plugin, shared by all its calls.
#[derive(Debug)]
pub struct LogSink {
    plugin: Arc<str>,
    bucket: Mutex<Bucket>,
}

impl LogSink {
    /// A sink for the plugin `plugin`.
    pub fn new(plugin: Arc<str>) -> Self {
        LogSink {
            plugin,
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                last: Instant::now(),
                unannounced: 0,
                dropped_total: 0,
            }),
        }
    }

    /// Total lines dropped so far by the rate limit.
    pub fn dropped(&self) -> u64 {
        self.bucket.lock().map(|b| b.dropped_total).unwrap_or(0)
    }

    /// Forward one line, unless the plugin is over its rate.
    pub fn emit(&self, level: Level, line: &str) {
        let announce_dropped = {
            let Ok(mut b) = self.bucket.lock() else {
                return;
            };
            let now = Instant::now();
            let refill = now.duration_since(b.last).as_secs_f64() * RATE_PER_SEC;
            b.tokens = (b.tokens + refill).min(BURST);
            b.last = now;
            if b.tokens < 1.0 {
                b.unannounced += 1;
                b.dropped_total += 1;
                return;
            }
            b.tokens -= 1.0;
            std::mem::take(&mut b.unannounced)
        };
        let plugin = &*self.plugin;
        if announce_dropped > 0 {
            tracing::warn!(
                plugin,
                dropped = announce_dropped,
                "plugin log lines dropped (rate limit)"
            );
        }
        let line = cut(line, MAX_LINE);
        match level {
            Level::Trace => tracing::trace!(plugin, "{line}"),
            Level::Debug => tracing::debug!(plugin, "{line}"),
            Level::Info => tracing::info!(plugin, "{line}"),
            Level::Warn => tracing::warn!(plugin, "{line}"),
            Level::Error => tracing::error!(plugin, "{line}"),
        }
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The output of one call: splits stdout/stderr into lines for the sink and keeps the end
/// of stderr (where a Rust panic message lands).
#[derive(Debug)]
pub struct CallOutput {
    sink: Arc<LogSink>,
    stderr_tail: Mutex<Vec<u8>>,
}

impl CallOutput {
    /// Output of a new call to the plugin behind `sink`.
    pub fn new(sink: Arc<LogSink>) -> Arc<Self> {
        Arc::new(CallOutput {
            sink,
            stderr_tail: Mutex::new(Vec::new()),
        })
    }

    /// The end of what the call wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default()
    }

    /// The stdout stream to give WASI.
    pub fn stdout(self: &Arc<Self>) -> Stdio {
        Stdio {
            out: self.clone(),
            stderr: false,
        }
    }

    /// The stderr stream to give WASI.
    pub fn stderr(self: &Arc<Self>) -> Stdio {
        Stdio {
            out: self.clone(),
            stderr: true,
        }
    }
}

/// stdout or stderr of one call.
#[derive(Clone)]
pub struct Stdio {
    out: Arc<CallOutput>,
    stderr: bool,
}

impl IsTerminal for Stdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Stdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            io: self.clone(),
            partial: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            io: self.clone(),
            partial: Vec::new(),
        })
    }
}

/// Splits written bytes into lines. Never refuses a write: what is over the limits is
/// dropped, so a chatty plugin cannot make its own `println!` fail.
struct LineWriter {
    io: Stdio,
    partial: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        let level = if self.io.stderr {
            Level::Warn
        } else {
            Level::Info
        };
        if self.io.stderr
            && let Ok(mut tail) = self.io.out.stderr_tail.lock()
        {
            tail.extend_from_slice(bytes);
            if tail.len() > STDERR_TAIL {
                let excess = tail.len() - STDERR_TAIL;
                tail.drain(..excess);
            }
        }
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.io.out.sink.emit(level, &line);
                self.partial.clear();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let level = if self.io.stderr {
                Level::Warn
            } else {
                Level::Info
            };
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.io.out.sink.emit(level, &line);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst_and_counted() {
        let sink = LogSink::new("flood".into());
        for i in 0..10_000 {
            sink.emit(Level::Info, &format!("line {i}"));
        }
        // The burst passes; nearly everything else is dropped (a few tokens may refill
        // while the loop runs, never thousands).
        let dropped = sink.dropped();
        assert!(dropped >= 10_000 - 200 - 100, "dropped {dropped}");
        assert!(dropped <= 10_000 - 200, "dropped {dropped}");
    }

    #[test]
    fn lines_are_split_and_stderr_tail_kept() {
        let out = CallOutput::new(Arc::new(LogSink::new("p".into())));
        let mut w = LineWriter {
            io: out.stderr(),
            partial: Vec::new(),
        };
        w.push(b"first\nsec");
        w.push(b"ond\n");
        assert!(w.partial.is_empty());
        let big = vec![b'x'; 5000];
        w.push(&big);
        w.push(b"\npanicked at src/lib.rs:1:1: boom\n");
        let tail = out.stderr_tail();
        assert!(tail.len() <= STDERR_TAIL);
        assert!(tail.ends_with("boom\n"), "{tail}");
    }
}
