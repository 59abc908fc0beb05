//! Conditions: `< 0.05`, `>= 0.99`, `[0.1, 0.2]`, `between 1 and 2`, `outside (0, 1)`.

use std::fmt;

/// A comparison of a value with constants.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// value < x
    Lt(f64),
    /// value <= x
    Le(f64),
    /// value > x
    Gt(f64),
    /// value >= x
    Ge(f64),
    /// value == x
    Eq(f64),
    /// value != x
    Ne(f64),
    /// value within the range (`lo_inclusive`, `hi_inclusive` say which ends count).
    Within {
        /// Lower bound.
        lo: f64,
        /// Whether the lower bound belongs to the range.
        lo_inclusive: bool,
        /// Upper bound.
        hi: f64,
        /// Whether the upper bound belongs to the range.
        hi_inclusive: bool,
        /// `outside`: the condition holds when the value is *not* within.
        negated: bool,
    },
}

const SYNTAX: &str = "expected `< x`, `<= x`, `> x`, `>= x`, `== x`, `!= x`, a range `[a, b]` \
                      (brackets inclusive, parentheses exclusive), `between a and b` or `outside [a, b]`";

fn number(text: &str, whole: &str) -> Result<f64, String> {
    let t = text.trim();
    let v: f64 = match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => t
            .parse()
            .map_err(|_| format!("condition {whole:?}: {t:?} is not a number; {SYNTAX}"))?,
    };
    if v.is_nan() {
        return Err(format!("condition {whole:?}: NaN cannot be compared with"));
    }
    Ok(v)
}

impl Condition {
    /// Parse a condition; the error says what was expected.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err(format!("empty condition; {SYNTAX}"));
        }
        for (op, make) in [
            ("<=", Condition::Le as fn(f64) -> Condition),
            (">=", Condition::Ge),
            ("==", Condition::Eq),
            ("!=", Condition::Ne),
            ("<", Condition::Lt),
            (">", Condition::Gt),
        ] {
            if let Some(rest) = s.strip_prefix(op) {
                return Ok(make(number(rest, s)?));
            }
        }
        let (negated, body) = match s.strip_prefix("outside") {
            Some(rest) => (true, rest.trim()),
            None => (false, s),
        };
        if let Some(rest) = body.strip_prefix("between") {
            let Some((lo, hi)) = rest.split_once(" and ") else {
                return Err(format!("condition {s:?}: write `between a and b`"));
            };
            return Self::range(number(lo, s)?, true, number(hi, s)?, true, negated, s);
        }
        let lo_inclusive = match body.chars().next() {
            Some('[') => true,
            Some('(') => false,
            _ => return Err(format!("condition {s:?} not understood; {SYNTAX}")),
        };
        let hi_inclusive = match body.chars().last() {
            Some(']') => true,
            Some(')') => false,
            _ => return Err(format!("condition {s:?}: a range must end with `]` or `)`")),
        };
        let inner = &body[1..body.len() - 1];
        let Some((lo, hi)) = inner.split_once(',') else {
            return Err(format!(
                "condition {s:?}: a range needs two bounds, `[a, b]`"
            ));
        };
        Self::range(
            number(lo, s)?,
            lo_inclusive,
            number(hi, s)?,
            hi_inclusive,
            negated,
            s,
        )
    }

    fn range(
        lo: f64,
        lo_inclusive: bool,
        hi: f64,
        hi_inclusive: bool,
        negated: bool,
        whole: &str,
    ) -> Result<Condition, String> {
        if lo > hi {
            return Err(format!(
                "condition {whole:?}: the lower bound {lo} is above the upper bound {hi}"
            ));
        }
        if lo == hi && !(lo_inclusive && hi_inclusive) {
            return Err(format!(
                "condition {whole:?} is an empty range: no value is within it; use [{lo}, {hi}] or == {lo}"
            ));
        }
        Ok(Condition::Within {
            lo,
            lo_inclusive,
            hi,
            hi_inclusive,
            negated,
        })
    }

    /// Whether `v` meets the condition. NaN meets none.
    pub fn holds(&self, v: f64) -> bool {
        if v.is_nan() {
            return false;
        }
        match *self {
            Condition::Lt(x) => v < x,
            Condition::Le(x) => v <= x,
            Condition::Gt(x) => v > x,
            Condition::Ge(x) => v >= x,
            Condition::Eq(x) => v == x,
            Condition::Ne(x) => v != x,
            Condition::Within {
                lo,
                lo_inclusive,
                hi,
                hi_inclusive,
                negated,
            } => {
                let above = if lo_inclusive { v >= lo } else { v > lo };
                let below = if hi_inclusive { v <= hi } else { v < hi };
                (above && below) != negated
            }
        }
    }
}

impl Condition {
    /// The lines a chart draws for this condition: one per finite bound, labelled with the
    /// side that meets it (`< 0.05`; a range `[a, b]` gives `>= a` and `<= b`, `outside [a,
    /// b]` gives `< a` and `> b`), each label after `prefix` (`fail: ` for a fail
    /// condition). Constants at full precision, as [`Display`](fmt::Display) writes them.
    pub fn limits(&self, prefix: &str) -> Vec<(String, f64)> {
        let line = |op: &str, x: f64| (format!("{prefix}{op} {x}"), x);
        let lines = match *self {
            Condition::Lt(x) => vec![line("<", x)],
            Condition::Le(x) => vec![line("<=", x)],
            Condition::Gt(x) => vec![line(">", x)],
            Condition::Ge(x) => vec![line(">=", x)],
            Condition::Eq(x) => vec![line("==", x)],
            Condition::Ne(x) => vec![line("!=", x)],
            Condition::Within {
                lo,
                lo_inclusive,
                hi,
                hi_inclusive,
                negated,
            } => {
                let (lo_op, hi_op) = match (negated, lo_inclusive, hi_inclusive) {
                    (false, lo_in, hi_in) => (
                        if lo_in { ">=" } else { ">" },
                        if hi_in { "<=" } else { "<" },
                    ),
                    (true, lo_in, hi_in) => (
                        if lo_in { "<" } else { "<=" },
                        if hi_in { ">" } else { ">=" },
                    ),
                };
                vec![line(lo_op, lo), line(hi_op, hi)]
            }
        };
        lines.into_iter().filter(|(_, x)| x.is_finite()).collect()
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Constants at full precision: a rounded bound next to a value reads as a contradiction.
        let n = |x: f64| {
            if x.is_infinite() {
                crate::fmt_num(x)
            } else {
                format!("{x}")
            }
        };
        match *self {
            Condition::Lt(x) => write!(f, "< {}", n(x)),
            Condition::Le(x) => write!(f, "<= {}", n(x)),
            Condition::Gt(x) => write!(f, "> {}", n(x)),
            Condition::Ge(x) => write!(f, ">= {}", n(x)),
            Condition::Eq(x) => write!(f, "== {}", n(x)),
            Condition::Ne(x) => write!(f, "!= {}", n(x)),
            Condition::Within {
                lo,
                lo_inclusive,
                hi,
                hi_inclusive,
                negated,
            } => write!(
                f,
                "{}{}{}, {}{}",
                if negated { "outside " } else { "" },
                if lo_inclusive { '[' } else { '(' },
                n(lo),
                n(hi),
                if hi_inclusive { ']' } else { ')' }
            ),
        }
    }
}
