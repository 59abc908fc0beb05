//! Durations and small values as a document writes them: each checked where it is
//! written, a problem reported at its position and a default used in its place.

use super::Loader;
use super::source::Src;
use crate::spec::docs::{self, P};
use crate::spec::model::Millis;
use crate::spec::parse_duration;

impl Loader {
    pub(super) fn duration(&mut self, src: &Src, p: &P<String>, path: &str) -> Option<Millis> {
        match parse_duration(&p.value) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.errors.push(src.err(p, path, e));
                None
            }
        }
    }

    /// `value` (read from `p`) if it is at most `max`, else a problem at `p`.
    pub(super) fn capped<T>(
        &mut self,
        src: &Src,
        p: &P<T>,
        path: &str,
        value: u64,
        max: u64,
        unit: &str,
    ) -> Option<u64> {
        match crate::plugin::limits::ceiling::check(value, max, unit) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(src.err(p, path, e));
                None
            }
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        src: &Src,
        p: &P<String>,
        path: &str,
    ) -> Option<Millis> {
        let ms = self.duration(src, p, path)?;
        if ms == 0 {
            self.errors
                .push(src.err(p, path, format!("{:?} must be more than 0", p.value)));
            return None;
        }
        Some(ms)
    }

    /// An optional count within `min..=max` (`default` when absent or out of range, which
    /// is reported with the allowed range).
    pub(super) fn bounded(
        &mut self,
        src: &Src,
        p: Option<&P<u32>>,
        path: &str,
        default: u32,
        (min, max): (u32, u32),
    ) -> u32 {
        match p {
            None => default,
            Some(p) if (min..=max).contains(&p.value) => p.value,
            Some(p) => {
                self.errors.push(src.err(
                    p,
                    path,
                    format!("{} is out of range; use {min} to {max}", p.value),
                ));
                default
            }
        }
    }

    pub(super) fn opt_duration(
        &mut self,
        src: &Src,
        p: &Option<P<String>>,
        path: &str,
        default: Millis,
        positive: bool,
    ) -> Millis {
        match p {
            None => default,
            Some(p) if positive => self.positive_duration(src, p, path).unwrap_or(default),
            Some(p) => self.duration(src, p, path).unwrap_or(default),
        }
    }

    pub(super) fn size(&mut self, src: &Src, p: &P<docs::SizeDoc>, path: &str) -> Option<u64> {
        let text = match &p.value {
            docs::SizeDoc::Bytes(n) => return Some(*n),
            docs::SizeDoc::Text(t) => t.trim(),
        };
        let (digits, factor) = if let Some(d) = text.strip_suffix("Ki") {
            (d, 1u64 << 10)
        } else if let Some(d) = text.strip_suffix("Mi") {
            (d, 1 << 20)
        } else if let Some(d) = text.strip_suffix("Gi") {
            (d, 1 << 30)
        } else {
            (text, 1)
        };
        match digits
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
        {
            Some(n) => Some(n),
            None => {
                self.errors.push(src.err(
                    p,
                    path,
                    format!(
                        "invalid size {text:?}: write bytes (1048576) or a number with Ki, Mi or Gi (64Mi)"
                    ),
                ));
                None
            }
        }
    }

    pub(super) fn url(&mut self, src: &Src, p: &P<String>, path: &str) {
        let ok = ["http://", "https://"]
            .iter()
            .any(|s| p.value.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
        if !ok {
            self.errors.push(src.err(
                p,
                path,
                format!("invalid URL {:?}: use an http:// or https:// URL", p.value),
            ));
        }
    }

    /// A choice of exactly one field (`what` sets one of `options`); false after reporting.
    pub(super) fn exactly_one<T>(
        &mut self,
        src: &Src,
        at: &P<T>,
        path: &str,
        what: &str,
        options: &[(&str, bool)],
    ) -> bool {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let set: Vec<&str> = options
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        if set.len() == 1 {
            return true;
        }
        let message = if set.is_empty() {
            format!("the {what} needs one of {}", names.join(", "))
        } else {
            format!(
                "the {what} sets {}; set exactly one of {}",
                set.join(" and "),
                names.join(", ")
            )
        };
        self.errors.push(src.err(at, path, message));
        false
    }
}
