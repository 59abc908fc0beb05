//! `{{args.NAME}}` placeholders: finding them in a string, and substituting a template's
//! args into strings and JSON configs.

use serde_json::Value;
use std::collections::BTreeMap;

/// One `{{args.NAME}}` found in a string: byte range and name.
fn find_placeholders(s: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = s[from..].find("{{") {
        let start = from + found;
        let rest = &s[start + 2..];
        let trimmed = rest.trim_start();
        let mut matched = None;
        if let Some(after) = trimmed.strip_prefix("args.") {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            let tail = after[len..].trim_start();
            if !name.is_empty() && tail.starts_with("}}") {
                let end = s.len() - tail.len() + 2;
                matched = Some((start, end, name.to_string()));
            }
        }
        match matched {
            Some(m) => {
                from = m.1;
                out.push(m);
            }
            None => from = start + 2,
        }
    }
    out
}

/// The arg names a string refers to.
pub(super) fn placeholders(s: &str) -> Vec<String> {
    find_placeholders(s)
        .into_iter()
        .map(|(_, _, n)| n)
        .collect()
}

/// Substitute the args into a string (unknown args stay as written).
pub(super) fn substitute(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (start, end, name) in find_placeholders(s) {
        out.push_str(&s[last..start]);
        match args.get(&name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&s[start..end]),
        }
        last = end;
    }
    out.push_str(&s[last..]);
    out
}

/// Substitute the args into every string of a JSON value. A string that is exactly one
/// placeholder whose value reads as a JSON number or boolean becomes that number/boolean.
pub(in crate::spec) fn substitute_value(v: &Value, args: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => {
            let found = find_placeholders(s);
            if let [(0, end, name)] = found.as_slice()
                && *end == s.len()
                && let Some(text) = args.get(name)
                && let Ok(typed) = serde_json::from_str::<Value>(text.trim())
                && (typed.is_number() || typed.is_boolean())
            {
                return typed;
            }
            Value::String(substitute(s, args))
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| substitute_value(i, args)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_value(v, args)))
                .collect(),
        ),
        other => other.clone(),
    }
}
