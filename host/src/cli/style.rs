//! Output for people: aligned tables, state glyphs, and colour only where it can be seen
//! (a terminal, and `NO_COLOR` unset — <https://no-color.org>).

use std::io::IsTerminal;

/// Whether stdout gets colour.
pub fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stderr (where `rollgate run` draws progress) is a terminal that gets colour
/// and a tree redrawn in place.
pub fn stderr_live() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// ANSI colours used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// No colour.
    Plain,
    /// Good.
    Green,
    /// Bad.
    Red,
    /// Undecided, waiting.
    Yellow,
    /// In progress.
    Blue,
    /// Secondary text.
    Dim,
}

/// `text` in `colour` when `enabled`.
pub fn paint(enabled: bool, colour: Colour, text: &str) -> String {
    let code = match colour {
        Colour::Plain => return text.to_string(),
        Colour::Green => "32",
        Colour::Red => "31",
        Colour::Yellow => "33",
        Colour::Blue => "34",
        Colour::Dim => "2",
    };
    if enabled {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// The colour of a metric status or a rollout state, by name.
pub fn status_colour(name: &str) -> Colour {
    match name {
        "successful" | "succeeded" | "done" | "pass" => Colour::Green,
        "failed" | "error" | "rolled-back" | "rolling-back" | "aborted" | "fail" => Colour::Red,
        "inconclusive" | "no-data" | "terminated" | "pending" => Colour::Yellow,
        n if n.starts_with("paused") => Colour::Yellow,
        _ => Colour::Blue,
    }
}

/// The glyph of a metric status or a rollout state, by name.
pub fn glyph(name: &str) -> &'static str {
    match name {
        "successful" | "succeeded" | "done" => "✔",
        "failed" | "aborted" => "✖",
        "error" | "invalid-spec" | "unreadable" => "⚠",
        "inconclusive" | "no-data" => "?",
        "rolled-back" | "rolling-back" => "↩",
        "terminated" => "◼",
        "pending" => "○",
        n if n.starts_with("paused") => "॥",
        _ => "◌",
    }
}

/// Rows as lines with columns aligned (by characters; the glyphs used are one wide).
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters() {
        let rows = vec![
            vec!["A".to_string(), "✔".into(), "x".into()],
            vec!["long".to_string(), "12".into(), "y".into()],
        ];
        assert_eq!(table(&rows), vec!["A     ✔   x", "long  12  y"]);
    }

    #[test]
    fn colour_only_when_enabled() {
        assert_eq!(paint(false, Colour::Red, "x"), "x");
        assert_eq!(paint(true, Colour::Red, "x"), "\x1b[31mx\x1b[0m");
        assert_eq!(paint(true, Colour::Plain, "x"), "x");
    }
}
