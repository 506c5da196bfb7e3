//! RFC 5424 syslog messages: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`, the
//! alert's priority as the severity and its Falco JSON as the message.

use crate::output::{Alert, Priority};

/// Facility `daemon` (3): PRI = facility * 8 + severity.
pub const FACILITY_DAEMON: u8 = 3;
const APP_NAME: &str = "dcea";
/// The documentation enterprise number (RFC 5612) until dcea has its own.
const SD_ID: &str = "dcea@32473";

/// Falco priorities are the syslog severities, in the same order.
pub fn severity(p: Priority) -> u8 {
    p as u8
}

/// PRINTUSASCII without spaces, at most `max` bytes, `-` when empty (header fields).
fn header_field(s: &str, max: usize) -> String {
    let v: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if v.is_empty() { "-".into() } else { v }
}

/// SD-PARAM values escape `"`, `\` and `]`.
fn sd_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One message (no trailing newline or framing). `timestamp` is RFC 3339.
pub fn format(alert: &Alert, facility: u8, procid: u32, json: &str) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity(alert.priority));
    let container = alert.output_fields.get("container.id").and_then(|v| v.as_str()).unwrap_or("");
    format!(
        "<{pri}>1 {} {} {APP_NAME} {procid} {} [{SD_ID} rule=\"{}\" priority=\"{}\" container=\"{}\"] {json}",
        header_field(&alert.time, 64),
        header_field(&alert.hostname, 255),
        // MSGID: the rule in one token.
        header_field(&alert.rule.replace(' ', "_"), 32),
        sd_value(&alert.rule),
        alert.priority.name(),
        sd_value(container),
    )
}

/// RFC 6587 octet counting for stream transports.
pub fn frame_octet_counted(msg: &str) -> String {
    format!("{} {msg}", msg.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::alert;

    #[test]
    fn header_priority_and_structured_data() {
        let mut a = alert("Container escape into host namespace", Priority::Critical);
        a.output_fields.insert("container.id".into(), serde_json::json!("abc\"]\\"));
        let m = format(&a, FACILITY_DAEMON, 42, "{}");
        assert!(
            m.starts_with("<26>1 2023-11-14T22:13:20.123456789Z node-1 dcea 42 Container_escape_into_host_names "),
            "{m}"
        );
        assert!(
            m.contains(
                r#"[dcea@32473 rule="Container escape into host namespace" priority="Critical" container="abc\"\]\\"]"#
            ),
            "{m}"
        );
        assert!(m.ends_with("] {}"), "{m}");
        assert_eq!(severity(Priority::Emergency), 0);
        assert_eq!(severity(Priority::Warning), 4);
        assert_eq!(severity(Priority::Debug), 7);
    }

    #[test]
    fn hostile_header_fields_stay_one_token() {
        let mut a = alert("x", Priority::Notice);
        a.hostname = "evil host\nname".into();
        a.rule = String::new();
        let m = format(&a, FACILITY_DAEMON, 1, "m");
        assert!(m.starts_with("<29>1 2023-11-14T22:13:20.123456789Z evilhostname dcea 1 - "), "{m}");
        assert_eq!(frame_octet_counted("abc"), "3 abc");
    }
}
