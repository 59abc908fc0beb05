//! Parsing the operator's configuration and publishing its schema.

use crate::bindings::provider::rollgate::plugin::types as wit;
use std::fmt;

/// One problem in a configuration: where (a JSON pointer) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON pointer to the offending value: "" for the whole document, "/condition" for a
    /// field, "/phases/canary/error" for a nested one.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path` (a JSON pointer, "" for the root).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config {}: {}", self.path, self.message)
        }
    }
}

impl From<ConfigError> for wit::ConfigError {
    fn from(e: ConfigError) -> Self {
        wit::ConfigError {
            path: e.path,
            message: e.message,
        }
    }
}

/// Parse a configuration from JSON text, reporting the JSON pointer of the field that failed.
pub fn parse_config<C: serde::de::DeserializeOwned>(text: &str) -> Result<C, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: C = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = pointer(e.path());
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("not valid JSON: {inner}")
        } else {
            // serde_json appends " at line L column C": keep it, it helps with long configs.
            inner.to_string()
        };
        ConfigError::new(pointer, message)
    })?;
    de.end()
        .map_err(|e| ConfigError::new("", format!("not valid JSON: {e}")))?;
    Ok(parsed)
}

fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Enum { variant } => {
                out.push('/');
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// The JSON Schema (draft 2020-12) of a configuration type, as text.
pub fn config_schema<C: schemars::JsonSchema>() -> String {
    let schema = schemars::schema_for!(C);
    serde_json::to_string(&schema).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, schemars::JsonSchema, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        name: String,
        inner: Inner,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        limits: Vec<f64>,
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"name": 1, "inner": {"limits": []}}"#,
                "/name",
                "invalid type",
            ),
            (
                r#"{"name": "a", "inner": {"limits": [1, "x"]}}"#,
                "/inner/limits/1",
                "invalid type",
            ),
            (
                r#"{"name": "a", "inner": {"limits": [], "x": 1}}"#,
                "/inner/x",
                "unknown field `x`",
            ),
            (r#"{"name": "a"}"#, "", "missing field `inner`"),
            (r#"{"name": "a", "#, "", "not valid JSON"),
            (
                r#"{"name": "a", "inner": {"limits": []}} trailing"#,
                "",
                "not valid JSON",
            ),
        ];
        for (text, path, message) in cases {
            let err = parse_config::<Cfg>(text).expect_err(text);
            assert_eq!(err.path, path, "{text}");
            assert!(err.message.contains(message), "{text}: {}", err.message);
        }
        assert!(parse_config::<Cfg>(r#"{"name": "a", "inner": {"limits": [0.5]}}"#).is_ok());
    }

    #[test]
    fn schema_describes_the_fields() {
        let schema: serde_json::Value = serde_json::from_str(&config_schema::<Cfg>()).unwrap();
        assert_eq!(schema["type"], "object");
        assert!(schema["properties"]["name"].is_object());
        assert_eq!(schema["additionalProperties"], false);
    }
}
