//! The replay backend: answers queries from recorded series, so a verification can be
//! dry-run on a fresh machine and a whole rollout replayed on a simulated clock.
//!
//! Two file formats:
//! - **rollgate JSON** (what `rollgate metrics record` writes): a list of recorded queries,
//!   each with its series. A query is answered from the recording of the same query text
//!   (whitespace-insensitive).
//! - **OpenMetrics text** (`name{label="v"} value timestamp` lines, as Prometheus exposes
//!   and `promtool` backfills). Queries are plain selectors — `name`, `name{a="b", c!="d"}`
//!   — matched against the series' labels (`__name__` included).
//!
//! Evaluation follows Prometheus: the value of a series at time t is its latest sample at or
//! before t, if that sample is at most the lookback (5 minutes) old; a range query evaluates
//! every step. Replaying a recorded range at its recorded step therefore gives back exactly
//! the recorded values.
//!
//! The recording can be shifted onto the rollout's clock: with [`Replay::aligned_to`], the
//! recording's first sample happens at the given time, and every answer is in rollout time.

use super::{Backend, BoxFuture, QueryError, QueryErrorKind, QueryResult, Series, Window};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How far back an evaluation looks for a sample, as Prometheus' default lookback delta.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The earliest sample time a recording may hold: 0001-01-01T00:00:00Z. Together with
/// [`MAX_TIME_MS`] this keeps every sum and difference of recording times (alignment, spans,
/// lookback) far inside `i64`, whatever the file says.
pub const MIN_TIME_MS: i64 = -62_135_596_800_000;
/// The latest sample time a recording may hold: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Why a sample time is refused, or `None` when it is a valid time.
fn time_problem_ms(ms: i64) -> Option<String> {
    (!(MIN_TIME_MS..=MAX_TIME_MS).contains(&ms)).then(|| {
        format!(
            "the timestamp {ms} ms is outside the years 1 to 9999; write Unix time in milliseconds (JSON) or seconds (OpenMetrics)"
        )
    })
}

/// An error in a recording file, at a 1-based line and column. Its message never quotes the
/// file's content: the file may not be a recording at all (a path mistyped, or pointed at
/// something secret), and an error is shown to whoever asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingError {
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// 1-based column (0: the line as a whole).
    pub col: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl RecordingError {
    fn whole(message: impl Into<String>) -> Self {
        RecordingError {
            line: 0,
            col: 0,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RecordingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.line, self.col)?;
        }
        f.write_str(&self.message)
    }
}

/// A recording: what `rollgate metrics record` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Recording {
    /// Format version (1).
    pub version: u32,
    /// The recorded queries.
    pub queries: Vec<RecordedQuery>,
}

/// One recorded query and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecordedQuery {
    /// The backend it was recorded from (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The query text.
    pub query: String,
    /// The range and step it was recorded over (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// See `start_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// See `start_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<u64>,
    /// The result.
    pub series: Vec<RecordedSeries>,
}

/// A series in a recording. Values are numbers, or the strings `"NaN"`, `"+Inf"`, `"-Inf"`
/// (JSON has no such numbers); `null` is a missing value and reads as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedSeries {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `[time_ms, value]` pairs, oldest first. Times must lie in years 1 to 9999 and be
    /// unique within the series (as Prometheus refuses a second sample at one timestamp).
    #[serde(deserialize_with = "checked_points")]
    pub points: Vec<(i64, JsonValue)>,
}

/// A series' points, refusing out-of-range and duplicate times while the JSON is read, so the
/// error carries the line and column of the offending point.
fn checked_points<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(i64, JsonValue)>, D::Error> {
    struct Points;
    impl<'de> serde::de::Visitor<'de> for Points {
        type Value = Vec<(i64, JsonValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of [time_ms, value] pairs")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut points = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            while let Some((t, v)) = seq.next_element::<(i64, JsonValue)>()? {
                if let Some(problem) = time_problem_ms(t) {
                    return Err(serde::de::Error::custom(problem));
                }
                if !seen.insert(t) {
                    return Err(serde::de::Error::custom(format!(
                        "a second point at {t} ms in one series; Prometheus refuses duplicate samples at one timestamp: keep one"
                    )));
                }
                points.push((t, v));
            }
            Ok(points)
        }
    }
    d.deserialize_seq(Points)
}

/// A sample value in JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsonValue(pub f64);

impl Serialize for JsonValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v == f64::INFINITY {
            s.serialize_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            s.serialize_str("-Inf")
        } else {
            s.serialize_f64(v)
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(JsonValue(f64::NAN)),
            serde_json::Value::Number(n) => n
                .as_f64()
                .map(JsonValue)
                .ok_or_else(|| serde::de::Error::custom("number out of range")),
            serde_json::Value::String(s) => parse_value(&s).map(JsonValue).ok_or_else(|| {
                serde::de::Error::custom(
                    "a string that is not a sample value: write a number, NaN, +Inf or -Inf",
                )
            }),
            _ => Err(serde::de::Error::custom(
                "not a sample value: write a number, null, NaN, +Inf or -Inf",
            )),
        }
    }
}

/// Read a rollgate JSON recording. A syntax or shape error is given at its line and column,
/// and without quoting the file: serde's messages name a value it did not expect (`invalid
/// type: string "…"`, `unknown field `…``), and the file may hold anything.
pub fn parse_recording_json(text: &str) -> Result<Recording, RecordingError> {
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = match full.rsplit_once(" at line ") {
            Some((message, _)) if e.line() > 0 => message,
            _ => full.as_str(),
        };
        RecordingError {
            line: e.line(),
            col: e.column(),
            message: format!("not a rollgate recording: {}", unquoted(message)),
        }
    })
}

/// `message` without the pieces serde quotes from the input: `string "…"` becomes `string`,
/// `` unknown field `…` `` `unknown field` (likewise variants). What serde expected
/// (`` expected one of `version`, `queries` ``, `` missing field `version` ``) is rollgate's
/// own text and stays.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = [
            ("string \"", '"', "string"),
            ("unknown field `", '`', "unknown field"),
            ("unknown variant `", '`', "unknown variant"),
            ("integer `", '`', "integer"),
            ("floating point `", '`', "floating point"),
        ]
        .into_iter()
        .filter_map(|(open, close, word)| rest.find(open).map(|i| (i, open, close, word)))
        .min_by_key(|(i, ..)| *i);
        let Some((i, open, close, word)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i]);
        out.push_str(word);
        let after = &rest[i + open.len()..];
        let mut escaped = false;
        let end = after.char_indices().find_map(|(j, c)| match (c, escaped) {
            (_, true) => {
                escaped = false;
                None
            }
            ('\\', false) => {
                escaped = true;
                None
            }
            (c, false) if c == close => Some(j + c.len_utf8()),
            _ => None,
        });
        match end {
            Some(end) => rest = &after[end..],
            None => return out,
        }
    }
}

/// A sample value as Prometheus and OpenMetrics write it.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

impl RecordedSeries {
    fn to_series(&self) -> Series {
        Series {
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            points: self.points.iter().map(|(t, v)| (*t, v.0)).collect(),
        }
    }
}

impl From<&Series> for RecordedSeries {
    fn from(s: &Series) -> Self {
        RecordedSeries {
            labels: s.labels.iter().cloned().collect(),
            points: s.points.iter().map(|(t, v)| (*t, JsonValue(*v))).collect(),
        }
    }
}

/// Labels of a series, sorted by name.
type Labels = Vec<(String, String)>;
/// A label matcher: name, equal (`=`) or not (`!=`), value.
type Matcher = (String, bool, String);

/// How queries are matched against the recording.
#[derive(Debug, Clone)]
enum Source {
    /// By query text.
    Queries(Vec<(String, Vec<Series>)>),
    /// By label selector.
    Series(Vec<Series>),
}

/// The replay backend.
#[derive(Debug, Clone)]
pub struct Replay {
    source: Source,
    first_ms: i64,
    last_ms: i64,
    offset_ms: i64,
}

fn normalise_query(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Replay {
    /// Read a recording: rollgate JSON (`.json`) or OpenMetrics text (anything else).
    /// Errors name the file, and the line and column where the file says where.
    pub fn open(path: &Path) -> Result<Replay, String> {
        let text = crate::files::read_text(path, &crate::files::RECORDING)
            .map_err(|e| e.describe(path))?;
        let json =
            path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let at = |e: RecordingError| match e.line {
            0 => format!("{}: {}", path.display(), e.message),
            _ => format!("{}:{e}", path.display()),
        };
        if json {
            let recording = parse_recording_json(&text).map_err(at)?;
            Replay::from_recording(&recording).map_err(|e| format!("{}: {e}", path.display()))
        } else {
            Replay::from_openmetrics(&text).map_err(at)
        }
    }

    /// Serve a recording.
    pub fn from_recording(recording: &Recording) -> Result<Replay, String> {
        if recording.version != 1 {
            return Err(format!(
                "recording version {} is not supported (this rollgate reads version 1)",
                recording.version
            ));
        }
        let queries: Vec<(String, Vec<Series>)> = recording
            .queries
            .iter()
            .map(|q| {
                let mut series: Vec<Series> =
                    q.series.iter().map(RecordedSeries::to_series).collect();
                for s in &mut series {
                    s.points.sort_by_key(|p| p.0);
                }
                (normalise_query(&q.query), series)
            })
            .collect();
        // A recording built in code was not checked by the JSON reader: the same rules.
        for (i, (_, series)) in queries.iter().enumerate() {
            for s in series {
                let times = s.points.iter().map(|p| p.0);
                if let Some(problem) = times.clone().find_map(time_problem_ms) {
                    return Err(format!("queries[{i}]: {problem}"));
                }
                if let Some(w) = s.points.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(format!(
                        "queries[{i}]: two points at {} ms in one series: keep one",
                        w[0].0
                    ));
                }
            }
        }
        let all = queries.iter().flat_map(|(_, s)| s.iter());
        let (first_ms, last_ms) = bounds(all).ok_or("the recording holds no samples")?;
        Ok(Replay {
            source: Source::Queries(queries),
            first_ms,
            last_ms,
            offset_ms: 0,
        })
    }

    /// Serve OpenMetrics text (timestamps required). Refused, at the line: a line that is
    /// not a sample, a timestamp that is not finite or outside the years 1 to 9999, and a
    /// second sample of one series at one timestamp (Prometheus refuses it too).
    pub fn from_openmetrics(text: &str) -> Result<Replay, RecordingError> {
        let mut by_labels: BTreeMap<Labels, Vec<(i64, f64, usize)>> = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // In characters, as editors count: leading white space may be wider than a byte.
            let col = raw.chars().count() - raw.trim_start().chars().count() + 1;
            let (labels, value, time) = parse_sample(line).map_err(|message| RecordingError {
                line: n + 1,
                col,
                message,
            })?;
            by_labels
                .entry(labels)
                .or_default()
                .push((time, value, n + 1));
        }
        let mut series = Vec::with_capacity(by_labels.len());
        for (labels, mut points) in by_labels {
            points.sort_by_key(|p| (p.0, p.2));
            if let Some(w) = points.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(RecordingError {
                    line: w[1].2,
                    col: 1,
                    message: format!(
                        "a second sample of this series at timestamp {} ms (the first is on line {}); Prometheus refuses duplicate samples at one timestamp: keep one",
                        w[1].0, w[0].2
                    ),
                });
            }
            let points = points.into_iter().map(|(t, v, _)| (t, v)).collect();
            series.push(Series { labels, points });
        }
        let (first_ms, last_ms) = bounds(series.iter())
            .ok_or_else(|| RecordingError::whole("no samples in the OpenMetrics text"))?;
        Ok(Replay {
            source: Source::Series(series),
            first_ms,
            last_ms,
            offset_ms: 0,
        })
    }

    /// Shift the recording so that its first sample happens at `origin_ms` on the rollout's
    /// clock. Refused when the shifted recording would leave the years 1 to 9999.
    pub fn aligned_to(mut self, origin_ms: i64) -> Result<Replay, String> {
        let shifted = origin_ms
            .checked_sub(self.first_ms)
            .filter(|offset| {
                self.last_ms
                    .checked_add(*offset)
                    .is_some_and(|last| time_problem_ms(last).is_none())
                    && time_problem_ms(origin_ms).is_none()
            })
            .ok_or_else(|| {
                format!(
                    "the recording cannot be aligned to {origin_ms} ms: shifted, it would leave the years 1 to 9999"
                )
            })?;
        self.offset_ms = shifted;
        Ok(self)
    }

    /// The recording's time span on the rollout's clock (after alignment). Both ends are
    /// inside the years 1 to 9999 ([`Replay::aligned_to`] refuses any other shift).
    pub fn span_ms(&self) -> (i64, i64) {
        (
            self.first_ms.saturating_add(self.offset_ms),
            self.last_ms.saturating_add(self.offset_ms),
        )
    }

    fn candidates(&self, backend: &str, query: &str) -> Result<Vec<&Series>, QueryError> {
        match &self.source {
            Source::Queries(queries) => {
                let wanted = normalise_query(query);
                if let Some((_, series)) = queries.iter().find(|(q, _)| *q == wanted) {
                    return Ok(series.iter().collect());
                }
                let known: Vec<&str> = queries.iter().map(|(q, _)| q.as_str()).take(5).collect();
                Err(QueryError::new(
                    QueryErrorKind::BadQuery,
                    backend,
                    format!(
                        "the recording has no query {wanted:?}; it holds [{}]; record it with `rollgate metrics record`",
                        known.join("; ")
                    ),
                ))
            }
            Source::Series(series) => {
                let selector = Selector::parse(query)
                    .map_err(|e| QueryError::new(QueryErrorKind::BadQuery, backend, e))?;
                Ok(series
                    .iter()
                    .filter(|s| selector.matches(&s.labels))
                    .collect())
            }
        }
    }

    fn evaluate(&self, series: &[&Series], window: Window) -> Vec<Series> {
        let times = evaluation_times(window);
        series
            .iter()
            .filter_map(|s| {
                let points: Vec<(i64, f64)> = times
                    .iter()
                    .filter_map(|&t| {
                        value_at(&s.points, t.checked_sub(self.offset_ms)?).map(|v| (t, v))
                    })
                    .collect();
                (!points.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    points,
                })
            })
            .collect()
    }
}

/// The times a window is evaluated at: its instant, or every step of its range (at most a
/// million).
fn evaluation_times(window: Window) -> Vec<i64> {
    match window {
        Window::Instant(t) => vec![t],
        Window::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            let step = i64::try_from(step_ms.max(1)).unwrap_or(i64::MAX);
            let mut v = Vec::new();
            let mut t = start_ms;
            while t <= end_ms && v.len() < 1_000_000 {
                v.push(t);
                // At the end of i64 the range ends: a saturating step would stick there and
                // repeat one point (found by the fuzzer).
                let Some(next) = t.checked_add(step) else {
                    break;
                };
                t = next;
            }
            v
        }
    }
}

fn bounds<'a>(series: impl Iterator<Item = &'a Series>) -> Option<(i64, i64)> {
    series
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
}

/// The latest sample at or before `t`, within the lookback.
fn value_at(points: &[(i64, f64)], t: i64) -> Option<f64> {
    let idx = points.partition_point(|p| p.0 <= t);
    let (time, value) = *points.get(idx.checked_sub(1)?)?;
    (t.checked_sub(time)? <= LOOKBACK_MS).then_some(value)
}

impl Backend for Replay {
    fn kind(&self) -> &'static str {
        "replay"
    }

    fn query<'a>(
        &'a self,
        backend: &'a str,
        query: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<QueryResult, QueryError>> {
        Box::pin(async move {
            let candidates = self.candidates(backend, query)?;
            Ok(QueryResult {
                series: self.evaluate(&candidates, window),
                warnings: Vec::new(),
            })
        })
    }
}

/// `name{label="value", other!="x"}`: equality matchers only.
#[derive(Debug, PartialEq)]
struct Selector {
    matchers: Vec<Matcher>,
}

impl Selector {
    fn parse(text: &str) -> Result<Selector, String> {
        let t = text.trim();
        let (name, rest) = match t.find('{') {
            Some(i) => (&t[..i], &t[i..]),
            None => (t, ""),
        };
        let mut matchers = Vec::new();
        let name = name.trim();
        if !name.is_empty() {
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                return Err(format!(
                    "the replay backend answers plain selectors such as name{{label=\"value\"}}, not {t:?}; record the full query with `rollgate metrics record` instead"
                ));
            }
            matchers.push(("__name__".to_string(), true, name.to_string()));
        }
        if !rest.is_empty() {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("selector {t:?}: unbalanced braces"))?;
            let labels = parse_labels(inner).map_err(|e| format!("selector {t:?}: {e}"))?;
            matchers.extend(labels);
        }
        if matchers.is_empty() {
            return Err(format!(
                "selector {t:?} matches nothing: name a metric or a label"
            ));
        }
        Ok(Selector { matchers })
    }

    fn matches(&self, labels: &[(String, String)]) -> bool {
        self.matchers.iter().all(|(name, equal, value)| {
            let actual = labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

/// Parse `a="1", b!="2"` (with `\"`, `\\` and `\n` escapes).
fn parse_labels(mut s: &str) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start().trim_start_matches(',').trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("a label needs a value")?;
        let name = &s[..name_end];
        if name.is_empty() {
            return Err("expected a label name".into());
        }
        s = s[name_end..].trim_start();
        let equal = if let Some(r) = s.strip_prefix("!=") {
            s = r;
            false
        } else if let Some(r) = s.strip_prefix('=') {
            if r.starts_with('~') {
                return Err(
                    "regular expression matchers (=~, !~) are not supported by replay".into(),
                );
            }
            s = r;
            true
        } else {
            return Err("expected = or != after a label name".into());
        };
        s = s
            .trim_start()
            .strip_prefix('"')
            .ok_or("label values are quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        out.push((name.to_string(), equal, value));
        s = &s[end + 1..];
    }
}

/// One OpenMetrics sample line: labels (with `__name__`), value, time in ms.
fn parse_sample(line: &str) -> Result<(Labels, f64, i64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("expected a metric name, a value and a timestamp")?;
    let name = &line[..name_end];
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let close = find_closing_brace(inner).ok_or("unbalanced braces")?;
        let matchers = parse_labels(&inner[..close])?;
        for (k, equal, v) in matchers {
            if !equal {
                return Err("`!=` is not valid in a sample".into());
            }
            labels.push((k, v));
        }
        rest = &inner[close + 1..];
    }
    labels.sort();
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .and_then(parse_value)
        .ok_or("expected a sample value")?;
    let time: f64 = fields
        .next()
        .ok_or("a timestamp is required to replay a sample")?
        .parse()
        .map_err(|_| "the timestamp is not a number (seconds)")?;
    if fields.next().is_some_and(|extra| !extra.starts_with('#')) {
        return Err(
            "unexpected text after the timestamp; a sample line is: name{labels} value timestamp"
                .into(),
        );
    }
    Ok((labels, value, seconds_to_ms(time)?))
}

/// An OpenMetrics timestamp (seconds, possibly fractional) in milliseconds, refused when it
/// is not finite or outside the years 1 to 9999.
fn seconds_to_ms(seconds: f64) -> Result<i64, String> {
    if !seconds.is_finite() {
        return Err("the timestamp is not a finite number of seconds".into());
    }
    let ms = (seconds * 1000.0).round();
    // Compared as floats first: a cast of a huge float would saturate silently.
    if !(MIN_TIME_MS as f64..=MAX_TIME_MS as f64).contains(&ms) {
        return Err(
            "the timestamp is outside the years 1 to 9999; write Unix time in seconds".into(),
        );
    }
    // In range, so the cast is exact.
    Ok(ms as i64)
}

fn find_closing_brace(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (c, in_quotes, escaped) {
            (_, _, true) => escaped = false,
            ('\\', true, false) => escaped = true,
            ('"', _, false) => in_quotes = !in_quotes,
            ('}', false, false) => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
