//! A gap in the kernel's stream triggers a check: the lost records could have been escapes,
//! so the trust table is checked at once (it finds escapes still in progress) and the
//! operator is told the stream had a gap.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::json;

use super::kernel::Lost;
use crate::output::{Alert, Priority, SOURCE, rfc3339_nanos};

pub const RULE_EVENTS_LOST: &str = "Kernel events lost";

/// One alert at the first loss, then at most one per `every` while losses go on, each with
/// the counts since the previous one; a trust pass at most every `pass_every`.
pub struct LossWatch {
    every: Duration,
    pass_every: Duration,
    pending: Lost,
    total: Lost,
    last_alert: Option<Instant>,
    last_pass: Option<Instant>,
}

/// What to do about the losses seen now.
#[derive(Debug, Default)]
pub struct LossAction {
    pub trust_pass: bool,
    pub alert: Option<Alert>,
}

impl LossWatch {
    pub fn new(every: Duration) -> LossWatch {
        LossWatch {
            every,
            pass_every: Duration::from_secs(2),
            pending: Lost::default(),
            total: Lost::default(),
            last_alert: None,
            last_pass: None,
        }
    }

    pub fn observe(&mut self, lost: Lost, now: Instant, hostname: &str) -> LossAction {
        self.pending.main += lost.main;
        self.pending.priority += lost.priority;
        self.total.main += lost.main;
        self.total.priority += lost.priority;
        let mut action = LossAction::default();
        if lost.any() && self.last_pass.is_none_or(|t| now.duration_since(t) >= self.pass_every) {
            self.last_pass = Some(now);
            action.trust_pass = true;
        }
        if self.pending.any() && self.last_alert.is_none_or(|t| now.duration_since(t) >= self.every) {
            self.last_alert = Some(now);
            action.alert = Some(self.alert(hostname));
            self.pending = Lost::default();
        }
        action
    }

    fn alert(&self, hostname: &str) -> Alert {
        let (p, t) = (self.pending, self.total);
        let mut f = BTreeMap::new();
        f.insert("dcea.lost.main".into(), json!(p.main));
        f.insert("dcea.lost.priority".into(), json!(p.priority));
        f.insert("dcea.lost.main_total".into(), json!(t.main));
        f.insert("dcea.lost.priority_total".into(), json!(t.priority));
        f.insert("dcea.action".into(), json!("trust pass"));
        f.insert("container.id".into(), json!("host"));
        Alert {
            time: rfc3339_nanos(crate::sys::realtime_ns()),
            rule: RULE_EVENTS_LOST.into(),
            // Lost priority records may have been escapes.
            priority: if p.priority > 0 { Priority::Critical } else { Priority::Error },
            output: format!(
                "Kernel events lost: {} behaviour/transition records and {} priority records (possible escapes) dropped by the kernel, ring buffer full; a trust pass over every container process was run (totals {} and {})",
                p.main, p.priority, t.main, t.priority
            ),
            output_fields: f,
            source: SOURCE,
            tags: vec!["dcea".into(), "dcea_delivery".into(), "events_lost".into()],
            hostname: hostname.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_loss_alerts_at_once_then_at_most_once_per_period_with_the_counts() {
        let mut w = LossWatch::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(w.observe(Lost::default(), t0, "n").alert.is_none());
        let a = w.observe(Lost { main: 100, priority: 0 }, t0, "n");
        assert!(a.trust_pass);
        let alert = a.alert.expect("first loss alerts");
        assert_eq!(alert.rule, RULE_EVENTS_LOST);
        assert_eq!(alert.priority, Priority::Error);
        assert_eq!(alert.output_fields["dcea.lost.main"], 100);
        let b = w.observe(Lost { main: 50, priority: 2 }, t0 + Duration::from_secs(1), "n");
        assert!(b.alert.is_none() && !b.trust_pass, "within the periods");
        let c = w.observe(Lost { main: 1, priority: 0 }, t0 + Duration::from_secs(10), "n");
        let alert = c.alert.expect("next period");
        assert!(c.trust_pass);
        assert_eq!(alert.priority, Priority::Critical);
        assert_eq!(
            (alert.output_fields["dcea.lost.main"].clone(), alert.output_fields["dcea.lost.priority"].clone()),
            (json!(51), json!(2))
        );
        assert_eq!(alert.output_fields["dcea.lost.main_total"], 151);
    }
}
