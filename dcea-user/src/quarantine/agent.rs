//! The running monitor's side of the quarantine: every tick it reads the events log and raises
//! an alert for each quarantine and release (whoever made them: the CLI or this agent), counts
//! them, and with `--quarantine-on critical` quarantines a container that raised a Critical
//! alert (escape, tampering, integrity, an allowlist kill).

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use serde_json::json;

use super::state::{Action, Event, EventReader, Requester, Store};
use crate::{
    container::{ContainerRef, Runtime, metadata::MetadataCache},
    metrics::Metrics,
    output::{Alert, Priority, SOURCE},
};

pub const RULE_QUARANTINED: &str = "Container network quarantined";
pub const RULE_RELEASED: &str = "Container network quarantine released";

/// `--quarantine-on`: what quarantines a container automatically.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QuarantineOn {
    /// Only `dcea quarantine` does.
    #[default]
    Never,
    /// A Critical alert from a container (escape, tampering, integrity, allowlist kill).
    Critical,
}

pub struct QuarantineAgent {
    state_dir: PathBuf,
    reader: EventReader,
    on: QuarantineOn,
    hostname: String,
    /// Containers an automatic quarantine failed for (gone, no cgroup v2): tried once.
    failed: HashSet<String>,
}

/// What `--quarantine-on critical` acts on: a container and the rule that condemned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub container_id: String,
    pub rule: String,
}

/// The container a Critical alert is about, when it should be quarantined for it.
pub fn trigger(alert: &Alert) -> Option<&str> {
    if alert.priority > Priority::Critical || alert.rule == RULE_QUARANTINED || alert.rule == RULE_RELEASED {
        return None;
    }
    let id = alert.output_fields.get("container.id")?.as_str()?;
    (id != "host" && crate::container::metadata::is_container_id(id)).then_some(id)
}

impl QuarantineAgent {
    pub fn new(state_dir: &Path, on: QuarantineOn, hostname: &str) -> QuarantineAgent {
        QuarantineAgent {
            state_dir: state_dir.to_path_buf(),
            reader: EventReader::open(Store::new(state_dir)),
            on,
            hostname: hostname.to_string(),
            failed: HashSet::new(),
        }
    }

    /// Alerts for the events logged since the last call; the metrics follow.
    pub fn poll(&mut self, metadata: &MetadataCache, metrics: &Metrics) -> Vec<Alert> {
        let (events, problems) = self.reader.read_new();
        for p in problems {
            tracing::warn!("quarantine events: {p}");
        }
        let alerts = events
            .iter()
            .map(|e| {
                metrics.quarantines.get_or_create(&crate::metrics::ActionLabels { action: e.action.as_str() }).inc();
                build_alert(e, metadata, &self.hostname)
            })
            .collect();
        metrics.quarantined.set(super::pin::pinned().len() as i64);
        alerts
    }

    /// `--quarantine-on critical`: the container (and the rule, the reason) a Critical alert
    /// asks to quarantine, when it is not quarantined yet.
    pub fn wants(&self, alert: &Alert) -> Option<Trigger> {
        if self.on != QuarantineOn::Critical {
            return None;
        }
        let id = trigger(alert)?;
        if self.failed.contains(id) || super::pin::is_pinned(id) {
            return None;
        }
        Some(Trigger { container_id: id.to_string(), rule: alert.rule.clone() })
    }

    /// Quarantine for a [`Trigger`]. True when it did (the caller then polls for the alert).
    pub fn apply(&mut self, t: Trigger, metadata: &MetadataCache) -> bool {
        let (id, rule) = (t.container_id.as_str(), t.rule.as_str());
        let meta = metadata.lookup(id);
        let target = super::Target {
            id: id.to_string(),
            name: meta.as_ref().and_then(|m| m.name.clone()),
            pid: meta.as_ref().and_then(|m| m.pid),
        };
        match super::quarantine(&self.state_dir, &target, false, Requester::agent(), rule) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("--quarantine-on critical: could not quarantine {id}: {e}");
                self.failed.insert(id.to_string());
                false
            }
        }
    }
}

/// The alert of one quarantine or release, Falco-shaped, with the container's fields and who
/// asked and why.
pub fn build_alert(event: &Event, metadata: &MetadataCache, hostname: &str) -> Alert {
    let r = &event.record;
    let meta = metadata.lookup(&r.container_id);
    let container = ContainerRef {
        id: r.container_id.clone(),
        runtime: meta.as_ref().and_then(|m| m.runtime).unwrap_or(Runtime::Unknown),
    };
    let mut fields = BTreeMap::new();
    crate::container::metadata::add_container_fields(&mut fields, Some(&container), meta.as_deref());
    if fields.get("container.name").is_none_or(|v| v.is_null())
        && let Some(n) = &r.name
    {
        fields.insert("container.name".into(), json!(n));
    }
    fields.insert("quarantine.action".into(), json!(event.action.as_str()));
    fields.insert("quarantine.by".into(), json!(r.by.origin));
    fields.insert("quarantine.user".into(), json!(r.by.user));
    fields.insert("quarantine.uid".into(), json!(r.by.uid));
    fields.insert("quarantine.reason".into(), json!(r.reason));
    fields.insert("quarantine.allow_dns".into(), json!(r.allow_dns));
    fields.insert("quarantine.cgroup".into(), json!(r.cgroup));
    let who = format!("{} ({})", r.by.user, r.by.origin);
    let why = if r.reason.is_empty() { "no reason given".to_string() } else { format!("reason: {}", r.reason) };
    let desc = crate::container::metadata::describe(&container, meta.as_deref());
    let (rule, priority, output) = match event.action {
        Action::Quarantine => (
            RULE_QUARANTINED,
            Priority::Warning,
            format!(
                "Network of container {desc} quarantined{} by {who}; {why}",
                if r.allow_dns { " (DNS allowed)" } else { "" }
            ),
        ),
        Action::Release => (
            RULE_RELEASED,
            Priority::Notice,
            format!("Network quarantine of container {desc} released by {who}; {why}"),
        ),
    };
    Alert {
        time: crate::output::rfc3339_nanos(crate::sys::realtime_ns()),
        rule: rule.to_string(),
        priority,
        output,
        output_fields: fields,
        source: SOURCE,
        tags: vec!["container".into(), "network".into(), "quarantine".into(), "response".into()],
        hostname: hostname.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::state::Record;

    fn alert(priority: Priority, id: &str) -> Alert {
        let mut fields = BTreeMap::new();
        fields.insert("container.id".into(), json!(id));
        Alert {
            time: String::new(),
            rule: "Namespace escape".into(),
            priority,
            output: String::new(),
            output_fields: fields,
            source: SOURCE,
            tags: vec![],
            hostname: String::new(),
        }
    }

    #[test]
    fn only_critical_container_alerts_trigger() {
        let id = "ab".repeat(32);
        assert_eq!(trigger(&alert(Priority::Critical, &id)), Some(id.as_str()));
        assert_eq!(trigger(&alert(Priority::Emergency, &id)), Some(id.as_str()));
        assert_eq!(trigger(&alert(Priority::Warning, &id)), None);
        assert_eq!(trigger(&alert(Priority::Critical, "host")), None);
        let mut own = alert(Priority::Critical, &id);
        own.rule = RULE_QUARANTINED.into();
        assert_eq!(trigger(&own), None);
    }

    #[test]
    fn the_alert_says_who_and_why() {
        let id = "ab".repeat(32);
        let mut r = Record::new(&id, Some("web".into()), Path::new("/sys/fs/cgroup/docker/x"), 1);
        r.reason = "Namespace escape".into();
        r.by = Requester { origin: "agent".into(), uid: 0, user: "root".into() };
        let a = build_alert(&Event { action: Action::Quarantine, record: r }, &MetadataCache::disabled(), "node");
        assert_eq!(a.rule, RULE_QUARANTINED);
        assert_eq!(a.output_fields["container.id"], json!(id));
        assert_eq!(a.output_fields["container.name"], json!("web"));
        assert_eq!(a.output_fields["quarantine.by"], json!("agent"));
        assert_eq!(a.output_fields["quarantine.reason"], json!("Namespace escape"));
        assert!(a.output.contains("root (agent)"), "{}", a.output);
    }
}
