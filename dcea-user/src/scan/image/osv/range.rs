//! Evaluation of OSV `ECOSYSTEM` ranges (osv-schema "Evaluation"): events sorted in the
//! ecosystem's order, `introduced` opens, `fixed` closes (exclusive), `last_affected`
//! closes (inclusive); a `limit` caps the range from above.

use std::cmp::Ordering;

use serde_json::Value;

use crate::scan::version::Scheme;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

pub fn parse_events(v: &Value) -> Vec<Event> {
    let mut out = Vec::new();
    for e in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let get = |k: &str| e[k].as_str().map(str::to_string);
        if let Some(x) = get("introduced") {
            out.push(Event::Introduced(x));
        } else if let Some(x) = get("fixed") {
            out.push(Event::Fixed(x));
        } else if let Some(x) = get("last_affected") {
            out.push(Event::LastAffected(x));
        } else if let Some(x) = get("limit") {
            out.push(Event::Limit(x));
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub affected: bool,
    /// The lowest `fixed` above the version, if any.
    pub fixed: Option<String>,
}

fn cmp_event_versions(a: &str, b: &str, scheme: Scheme) -> Ordering {
    match (a == "0", b == "0") {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => scheme.compare(a, b),
    }
}

fn in_range(version: &str, events: &[Event], scheme: Scheme) -> bool {
    let limits: Vec<&str> =
        events.iter().filter(|e| matches!(e, Event::Limit(_))).map(Event::version).filter(|l| *l != "*").collect();
    if !limits.is_empty() && !limits.iter().any(|l| scheme.compare(version, l) == Ordering::Less) {
        return false;
    }
    let mut sorted: Vec<&Event> = events.iter().filter(|e| !matches!(e, Event::Limit(_))).collect();
    sorted.sort_by(|a, b| cmp_event_versions(a.version(), b.version(), scheme));
    let mut affected = false;
    for e in sorted {
        match e {
            Event::Introduced(x) => {
                if x == "0" || scheme.compare(version, x) != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(x) => {
                if scheme.compare(version, x) != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(x) => {
                if scheme.compare(version, x) == Ordering::Greater {
                    affected = false;
                }
            }
            Event::Limit(_) => {}
        }
    }
    affected
}

pub fn evaluate(version: &str, ranges: &[Vec<Event>], versions: &[String], scheme: Scheme) -> Verdict {
    let mut affected = versions.iter().any(|v| scheme.compare(v, version) == Ordering::Equal);
    let mut fixed: Option<String> = None;
    for events in ranges {
        if in_range(version, events, scheme) {
            affected = true;
            for e in events {
                if let Event::Fixed(x) = e
                    && scheme.compare(version, x) == Ordering::Less
                    && fixed.as_deref().is_none_or(|f| scheme.compare(x, f) == Ordering::Less)
                {
                    fixed = Some(x.clone());
                }
            }
        }
    }
    Verdict { affected, fixed: if affected { fixed } else { None } }
}
