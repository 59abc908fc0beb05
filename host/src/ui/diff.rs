//! A line diff for the detail page: the effective Rollout of a run against the previous
//! run's.
//!
//! The common head and tail are taken off first (specs of two runs mostly agree), then a
//! longest common subsequence of what is left gives the fewest lines added and removed.
//! The table that needs is bounded ([`MAX_CELLS`]): past it the middle is shown as
//! removed-then-added, and the diff says so ([`Diff::limited`]), so a huge spec never costs
//! the server more than a few megabytes and milliseconds.

use serde::Serialize;

/// The largest LCS table (lines left × lines right, after the common head and tail).
pub const MAX_CELLS: usize = 1_000_000;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// `" "` in both, `"-"` only in the old, `"+"` only in the new.
    pub op: &'static str,
    /// The line, without its line break.
    pub text: String,
}

/// A diff of two texts, line by line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    /// Every line of both, in order.
    pub lines: Vec<Line>,
    /// Why the diff is not minimal, when the texts were too different to compare in full.
    pub limited: Option<String>,
}

fn line(op: &'static str, text: &str) -> Line {
    Line {
        op,
        text: text.to_string(),
    }
}

/// The line diff of `old` → `new`.
pub fn diff(old: &str, new: &str) -> Diff {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out = Diff::default();
    out.lines.extend(a[..head].iter().map(|t| line(" ", t)));
    match ma.len().checked_mul(mb.len()) {
        Some(cells) if cells <= MAX_CELLS => out.lines.extend(lcs(ma, mb)),
        _ => {
            out.limited = Some(format!(
                "the runs' specs differ in {} and {} lines, too many to compare line by line \
                 (at most {MAX_CELLS} pairs): the differing part is shown removed, then added",
                ma.len(),
                mb.len()
            ));
            out.lines.extend(ma.iter().map(|t| line("-", t)));
            out.lines.extend(mb.iter().map(|t| line("+", t)));
        }
    }
    out.lines
        .extend(a[a.len() - tail..].iter().map(|t| line(" ", t)));
    out
}

/// The minimal diff of `a` → `b` by a longest common subsequence (`a.len() * b.len()` is
/// within [`MAX_CELLS`]); removals come before additions where both fit.
fn lcs(a: &[&str], b: &[&str]) -> Vec<Line> {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // len[i][j]: the LCS length of a[i..] and b[j..].
    let mut len = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[i * width + j] = if a[i] == b[j] {
                len[(i + 1) * width + j + 1] + 1
            } else {
                len[(i + 1) * width + j].max(len[i * width + j + 1])
            };
        }
    }
    let mut out = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(line(" ", a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || len[(i + 1) * width + j] >= len[i * width + j + 1]) {
            out.push(line("-", a[i]));
            i += 1;
        } else {
            out.push(line("+", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn render(d: &Diff) -> Vec<String> {
        d.lines
            .iter()
            .map(|l| format!("{}{}", l.op, l.text))
            .collect()
    }

    #[test]
    fn a_changed_line_is_removed_then_added_in_place() {
        let d = diff("a\nb: 1\nc\n", "a\nb: 2\nc\nd\n");
        assert_eq!(render(&d), [" a", "-b: 1", "+b: 2", " c", "+d"]);
        assert_eq!(d.limited, None);
    }

    #[test]
    fn equal_texts_and_empty_sides() {
        assert_eq!(render(&diff("x\ny", "x\ny")), [" x", " y"]);
        assert_eq!(render(&diff("", "x")), ["+x"]);
        assert_eq!(render(&diff("x", "")), ["-x"]);
        assert!(diff("", "").lines.is_empty());
    }

    #[test]
    fn the_diff_is_minimal() {
        // a b c a b b a → c b a b a c: the LCS has 4 lines, so 3 removed and 2 added.
        let d = diff("a\nb\nc\na\nb\nb\na", "c\nb\na\nb\na\nc");
        let count = |op| d.lines.iter().filter(|l| l.op == op).count();
        assert_eq!((count(" "), count("-"), count("+")), (4, 3, 2));
    }

    #[test]
    fn a_huge_difference_is_bounded_and_says_so() {
        let old: String = (0..2_000).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..2_000).map(|i| format!("new {i}\n")).collect();
        let d = diff(&format!("head\n{old}tail\n"), &format!("head\n{new}tail\n"));
        assert_eq!(d.lines.len(), 4_002);
        assert_eq!(d.lines.first().map(|l| l.op), Some(" "));
        assert_eq!(d.lines.last().map(|l| l.op), Some(" "));
        let why = d.limited.expect("limited");
        assert!(why.contains("2000 and 2000 lines"), "{why}");
    }

    proptest! {
        /// Taking the " " and "-" lines gives the old text, the " " and "+" lines the new.
        #[test]
        fn both_texts_come_back(a in prop::collection::vec("[abc]{0,2}", 0..30),
                                b in prop::collection::vec("[abc]{0,2}", 0..30)) {
            let (old, new) = (a.join("\n"), b.join("\n"));
            let d = diff(&old, &new);
            let side = |skip: &str| d.lines.iter().filter(|l| l.op != skip)
                .map(|l| l.text.as_str()).collect::<Vec<_>>();
            prop_assert_eq!(side("+"), old.lines().collect::<Vec<_>>());
            prop_assert_eq!(side("-"), new.lines().collect::<Vec<_>>());
        }
    }
}
