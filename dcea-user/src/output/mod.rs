//! Alerts in Falco's JSON shape, so Falcosidekick and SIEM pipelines take them unchanged:
//! `time, rule, priority, output, output_fields, source, tags, hostname`.

use std::{
    collections::BTreeMap,
    time::{Duration, UNIX_EPOCH},
};

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    /// The name in alerts (Falco's spelling) and in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// Wall-clock time of the kernel event, RFC 3339 with nanoseconds, UTC.
    pub time: String,
    pub rule: String,
    pub priority: Priority,
    pub output: String,
    pub output_fields: BTreeMap<String, Value>,
    pub source: &'static str,
    pub tags: Vec<String>,
    pub hostname: String,
}

pub const SOURCE: &str = "dcea";

/// RFC 3339 UTC with nanoseconds from nanoseconds since the epoch.
pub fn rfc3339_nanos(epoch_ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(epoch_ns)).to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (Falco's json_output shape).
    Json,
    /// One human-readable line per alert.
    Text,
}

/// Render an alert as one line without a newline. JSON escaping and the text escaping keep
/// hostile names (newlines, quotes, control bytes) inside their line.
pub fn render(alert: &Alert, format: Format) -> String {
    match format {
        Format::Json => {
            serde_json::to_string(alert).unwrap_or_else(|e| format!("{{\"error\":\"unserialisable alert: {e}\"}}"))
        }
        Format::Text => {
            format!("{} {:?} {}: {}", alert.time, alert.priority, escape_text(&alert.rule), escape_text(&alert.output))
        }
    }
}

/// Control characters as escapes, so one alert is always one line.
pub fn escape_text(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(output: &str) -> Alert {
        let mut fields = BTreeMap::new();
        fields.insert("container.name".into(), Value::String(output.into()));
        Alert {
            time: rfc3339_nanos(1_700_000_000_123_456_789),
            rule: "Test rule".into(),
            priority: Priority::Critical,
            output: output.into(),
            output_fields: fields,
            source: SOURCE,
            tags: vec!["container".into()],
            hostname: "node-1".into(),
        }
    }

    #[test]
    fn json_has_falco_shape_and_survives_hostile_strings() {
        let hostile = "evil\n\"name\"\u{0}\u{1b}[31m\u{FFFD}";
        let line = render(&alert(hostile), Format::Json);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        for key in ["time", "rule", "priority", "output", "output_fields", "source", "tags", "hostname"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["priority"], "Critical");
        assert_eq!(v["source"], "dcea");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["output_fields"]["container.name"], hostile);
    }

    #[test]
    fn text_is_one_line() {
        let line = render(&alert("a\nb\rc\u{7}"), Format::Text);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert!(line.contains("a\\nb\\rc"), "{line}");
        assert!(line.starts_with("2023-11-14T22:13:20.123456789Z Critical Test rule: "), "{line}");
    }
}
