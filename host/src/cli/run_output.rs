//! What `rollgate run` shows while it runs: on a terminal, the live tree of every rollout
//! redrawn in place ([`Shown`], [`Board`]); elsewhere one progress line per change, JSON
//! lines for tools; and the problems that keep rollouts from running ([`report`]).

use super::{Format, Out};
use crate::engine::{Observer, Progress, setup};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How progress is shown: on a terminal, people get the live tree of every rollout redrawn
/// in place; elsewhere (logs, CI, pipes) one line per change, and JSON lines for tools.
pub(super) struct Shown {
    /// The output format.
    pub(super) format: Format,
    live: bool,
    board: Arc<Mutex<Board>>,
}

impl Shown {
    pub(super) fn new(format: Format) -> Shown {
        let live = format == Format::Human && super::style::stderr_live();
        Shown {
            format,
            live,
            board: Arc::new(Mutex::new(Board::default())),
        }
    }

    /// What the engine calls with every progress report.
    pub(super) fn observer(&self) -> Observer {
        let live = self.live;
        let format = self.format;
        let last_lines = Mutex::new(HashMap::<String, String>::new());
        let board = self.board.clone();
        Arc::new(move |p: &Progress| {
            if live {
                let mut board = board.lock().unwrap_or_else(|e| e.into_inner());
                board.update(p);
                return;
            }
            // The engine reports progress at every step of its loop; a line that says
            // nothing new for its rollout is not printed again.
            let line = progress_line(p, format);
            let key = format!("{}#{}", p.rollout, p.run);
            let mut last = last_lines.lock().unwrap_or_else(|e| e.into_inner());
            if last.get(&key) != Some(&line) {
                emit(&line, format);
                last.insert(key, line);
            }
        })
    }

    /// On a terminal: the final state of every tree, whenever the last throttled drawing
    /// was.
    pub(super) fn draw_last(&self) {
        if self.live {
            self.board.lock().unwrap_or_else(|e| e.into_inner()).draw();
        }
    }
}

/// The live trees of `rollgate run` on a terminal: the latest progress of each rollout,
/// redrawn in place at most ten times a second (a simulated clock reports thousands of
/// steps a second; drawing each would only flicker).
#[derive(Default)]
struct Board {
    latest: std::collections::BTreeMap<String, Progress>,
    drawn_lines: usize,
    drawn_at: Option<std::time::Instant>,
}

impl Board {
    fn update(&mut self, p: &Progress) {
        self.latest
            .insert(format!("{}#{}", p.rollout, p.run), p.clone());
        if self
            .drawn_at
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.draw();
        }
    }

    fn draw(&mut self) {
        use std::io::Write;
        let text = self
            .latest
            .values()
            .map(|p| super::status::tree(p, true).join("\n"))
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut err = std::io::stderr().lock();
        if self.drawn_lines > 0 {
            let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn_lines);
        }
        let _ = writeln!(err, "{text}");
        self.drawn_lines = text.lines().count();
        self.drawn_at = Some(std::time::Instant::now());
    }
}

/// Print the problems that cost no rollout, then each invalid rollout with its own: the
/// first [`crate::files::MAX_PROBLEMS_SHOWN`] problems one by one, then how many more.
pub(super) fn report(
    out: &mut Out,
    other: &[String],
    invalid: &std::collections::BTreeMap<String, Vec<setup::Problem>>,
) {
    let mut shown = 0usize;
    let mut show = |out: &mut Out, line: String| {
        if shown < crate::files::MAX_PROBLEMS_SHOWN {
            out.err(line);
        }
        shown += 1;
    };
    for p in other {
        show(out, format!("rollgate: {p}"));
    }
    for (name, problems) in invalid {
        out.err(format!(
            "rollgate: rollout {name:?} is invalid-spec ({} problem(s)); it does not run:",
            problems.len()
        ));
        for p in problems {
            show(out, format!("rollgate:   {p}"));
        }
    }
    if shown > crate::files::MAX_PROBLEMS_SHOWN {
        out.err(format!(
            "rollgate: … and {} more problem(s) not shown; fix the ones above first",
            shown - crate::files::MAX_PROBLEMS_SHOWN
        ));
    }
}

/// One live progress line (stderr for people, stdout JSON lines for tools).
/// One progress report as a line: JSON for machines, a one-line summary for people.
fn progress_line(p: &Progress, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string(p).unwrap_or_default(),
        Format::Human => {
            let metrics: Vec<String> = p
                .metrics
                .iter()
                .map(|m| {
                    let [ok, fail, inc, nodata, err] = m.counts;
                    format!(
                        "{}{} {} ✔{ok} ✖{fail} ?{inc} ∅{nodata} ⚠{err}{}",
                        if m.background { "bg:" } else { "" },
                        m.name,
                        m.status,
                        m.last_value
                            .map(|v| format!(" last {v:.4}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!(
                "[{}#{}] {} phase {}/{} {} weight {} | {}{}",
                p.rollout,
                p.run,
                p.state,
                (p.phase + 1).min(p.phase_count),
                p.phase_count,
                p.phase_name,
                p.weight,
                p.message,
                if metrics.is_empty() {
                    String::new()
                } else {
                    format!(" | {}", metrics.join("; "))
                }
            )
        }
    }
}

/// Progress goes to stdout as JSON lines, or to stderr for people (stdout keeps the outcome).
fn emit(line: &str, format: Format) {
    use std::io::Write;
    if line.is_empty() {
        return;
    }
    let _ = match format {
        Format::Json => writeln!(std::io::stdout(), "{line}"),
        Format::Human => writeln!(std::io::stderr(), "{line}"),
    };
}
