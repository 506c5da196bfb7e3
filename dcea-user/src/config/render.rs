//! `dcea config default`: every setting as YAML with its help, its flag and its variable.

use std::fmt::Write as _;

use super::keys::{self, Setting, Shape};

const WIDTH: usize = 96;

const HEADER: &str = "\
# dcea monitor configuration: /etc/dcea/dcea.yaml, or `dcea monitor --config PATH`.
#
# Every key is a `dcea monitor` flag (snake_case or kebab-case). For each setting the first of
# these wins: its DCEA_<KEY> environment variable, the flag on the command line, this file,
# the built-in default. Lists are YAML lists (in a variable: comma-separated). A key left out,
# or set to ~, keeps the default. `dcea config check FILE` validates a file.
";

/// The default configuration: every setting at its default, or commented out with the kind of
/// value it takes when it has none.
pub fn default_config() -> String {
    let cmd = keys::cli_command();
    render(&keys::settings(&cmd), |s| {
        let defaults: Vec<String> =
            s.arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        (!defaults.is_empty()).then_some(defaults)
    })
}

/// Render `settings` with the values `value_of` gives (`None`: commented out).
pub fn render(settings: &[Setting], value_of: impl Fn(&Setting) -> Option<Vec<String>>) -> String {
    let mut out = String::from(HEADER);
    for s in settings {
        out.push('\n');
        let mut help = s.arg.get_long_help().or(s.arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
        // clap drops a summary's final period.
        if !help.is_empty() && !help.ends_with(['.', ']', ')', '!', '?']) {
            help.push('.');
        }
        let possible: Vec<String> =
            s.arg.get_possible_values().iter().filter(|p| !p.is_hide_set()).map(|p| p.get_name().to_string()).collect();
        if !possible.is_empty() && !matches!(s.shape, Shape::Flag { .. }) {
            let _ = write!(help, " One of: {}.", possible.join(", "));
        }
        for line in wrap(help.trim(), WIDTH - 2) {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "# flag --{}, environment {}", s.long, s.env);
        match value_of(s) {
            Some(values) => write_value(&mut out, &s.key, s.shape, &values),
            None => {
                let name = s.arg.get_value_names().and_then(|n| n.first()).map(|n| n.to_string());
                let _ = writeln!(out, "# {}: {}", s.key, name.unwrap_or_else(|| s.key.to_ascii_uppercase()));
            }
        }
    }
    out
}

fn write_value(out: &mut String, key: &str, shape: Shape, values: &[String]) {
    match shape {
        Shape::Many => {
            let _ = writeln!(out, "{key}:");
            for v in values {
                let _ = writeln!(out, "  - {}", scalar(v));
            }
        }
        _ => {
            let _ = writeln!(out, "{key}: {}", values.first().map(|v| scalar(v)).unwrap_or_default());
        }
    }
}

/// A value as a YAML scalar that reads back as the same text: plain when nothing in it means
/// something to YAML, else double-quoted (a JSON string is a valid YAML double-quoted scalar).
pub fn scalar(v: &str) -> String {
    let plain_char = |c: char| c.is_ascii_alphanumeric() || "_./:+@=-".contains(c);
    let first_ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || "_./".contains(c));
    let null_like = matches!(v, "~" | "null" | "Null" | "NULL");
    if first_ok && !null_like && v.chars().all(plain_char) && !v.ends_with(':') {
        v.to_string()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

/// Greedy word wrap.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
