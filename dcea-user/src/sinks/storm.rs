//! Storm control: repeats of one rule for one container and one executable within a window
//! become the first alert(s), then one summary carrying `dcea.suppressed` when the window
//! ends, then the next alert after it. Critical escape and tampering alerts are never folded.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::output::{Alert, Priority};

#[derive(Clone, Copy, Debug)]
pub struct StormOptions {
    /// Zero turns storm control off.
    pub window: Duration,
    /// Alerts per key delivered in full within one window before the rest are counted.
    pub burst: u32,
    /// Keys tracked at once; past it, new keys are delivered without control (counted).
    pub max_keys: usize,
}

impl Default for StormOptions {
    fn default() -> Self {
        StormOptions { window: Duration::from_secs(10), burst: 1, max_keys: 65536 }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    rule: String,
    container: String,
    exe: String,
}

struct Window {
    start: Instant,
    delivered: u32,
    suppressed: u64,
    /// The window's first alert: the summary repeats its fields.
    sample: Arc<Alert>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Deliver,
    Suppress,
}

pub struct StormControl {
    opts: StormOptions,
    windows: HashMap<Key, Window>,
    pub untracked: u64,
}

/// Tags that make a Critical alert an escape or tampering report (never folded).
const NEVER_FOLDED_TAGS: [&str; 4] = ["escape", "kernel_exploit", "T1611", "dcea_delivery"];

pub fn never_folded(alert: &Alert) -> bool {
    alert.priority <= Priority::Critical && alert.tags.iter().any(|t| NEVER_FOLDED_TAGS.contains(&t.as_str()))
        || alert.output_fields.get("dcea.action").and_then(Value::as_str).is_some_and(|a| a != "alert")
}

fn field(alert: &Alert, names: &[&str]) -> String {
    names
        .iter()
        .find_map(|n| alert.output_fields.get(*n).filter(|v| !v.is_null()))
        .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
        .unwrap_or_default()
}

impl StormControl {
    pub fn new(opts: StormOptions) -> StormControl {
        StormControl { opts, windows: HashMap::new(), untracked: 0 }
    }

    pub fn window(&self) -> Duration {
        self.opts.window
    }

    /// Whether `alert` goes out; a window of its key that has ended is summarised first
    /// (pushed to `summaries`).
    pub fn admit(&mut self, alert: &Arc<Alert>, now: Instant, summaries: &mut Vec<Alert>) -> Decision {
        if self.opts.window.is_zero() || never_folded(alert) {
            return Decision::Deliver;
        }
        let key = Key {
            rule: alert.rule.clone(),
            container: field(alert, &["container.id"]),
            exe: field(alert, &["proc.exepath", "proc.exe", "proc.name"]),
        };
        match self.windows.get_mut(&key) {
            Some(w) if now.duration_since(w.start) < self.opts.window => {
                if w.delivered < self.opts.burst {
                    w.delivered += 1;
                    Decision::Deliver
                } else {
                    w.suppressed += 1;
                    Decision::Suppress
                }
            }
            Some(w) => {
                if let Some(s) = summary(w, self.opts.window, now) {
                    summaries.push(s);
                }
                *w = Window { start: now, delivered: 1, suppressed: 0, sample: alert.clone() };
                Decision::Deliver
            }
            None => {
                if self.windows.len() >= self.opts.max_keys {
                    self.untracked += 1;
                    return Decision::Deliver;
                }
                self.windows.insert(key, Window { start: now, delivered: 1, suppressed: 0, sample: alert.clone() });
                Decision::Deliver
            }
        }
    }

    /// Summaries of every window that has ended; quiet keys are forgotten.
    pub fn expire(&mut self, now: Instant) -> Vec<Alert> {
        let window = self.opts.window;
        let mut out = Vec::new();
        self.windows.retain(|_, w| {
            if now.duration_since(w.start) < window {
                return true;
            }
            if let Some(s) = summary(w, window, now) {
                out.push(s);
            }
            false
        });
        out
    }

    /// Summaries of every open window (at stop).
    pub fn flush(&mut self, now: Instant) -> Vec<Alert> {
        let window = self.opts.window;
        self.windows.drain().filter_map(|(_, w)| summary(&w, window, now)).collect()
    }
}

fn summary(w: &Window, window: Duration, now: Instant) -> Option<Alert> {
    if w.suppressed == 0 {
        return None;
    }
    let mut a = (*w.sample).clone();
    let seconds = now.duration_since(w.start).min(window);
    a.time = crate::output::rfc3339_nanos(crate::sys::realtime_ns());
    a.output = format!(
        "{} more alert(s) like this in {} (storm control): {}",
        w.suppressed,
        humantime::format_duration(window),
        w.sample.output
    );
    a.output_fields.insert("dcea.suppressed".into(), json!(w.suppressed));
    a.output_fields.insert("dcea.storm_window".into(), json!(humantime::format_duration(window).to_string()));
    a.output_fields.insert("dcea.storm_window_ms".into(), json!(window.as_millis() as u64));
    a.output_fields.insert("dcea.storm_elapsed_ms".into(), json!(seconds.as_millis() as u64));
    a.tags.push("storm_summary".into());
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::alert;

    fn hit(rule: &str, p: Priority, container: &str) -> Arc<Alert> {
        let mut a = alert(rule, p);
        a.output_fields.insert("container.id".into(), json!(container));
        a.output_fields.insert("proc.exepath".into(), json!("/bin/cat"));
        Arc::new(a)
    }

    #[test]
    fn first_then_summary_then_next_after_the_window() {
        let mut s = StormControl::new(StormOptions::default());
        let t0 = Instant::now();
        let mut sums = Vec::new();
        let a = hit("Credential file opened", Priority::Warning, "c1");
        assert_eq!(s.admit(&a, t0, &mut sums), Decision::Deliver);
        for i in 1..=999 {
            assert_eq!(s.admit(&a, t0 + Duration::from_millis(i * 9), &mut sums), Decision::Suppress);
        }
        // Another container is its own key.
        assert_eq!(s.admit(&hit("Credential file opened", Priority::Warning, "c2"), t0, &mut sums), Decision::Deliver);
        assert!(s.expire(t0 + Duration::from_secs(9)).is_empty());
        let ended = s.expire(t0 + Duration::from_secs(10));
        assert_eq!(ended.len(), 1, "c2 suppressed nothing: no summary");
        assert_eq!(ended[0].output_fields["dcea.suppressed"], 999);
        assert_eq!(ended[0].output_fields["dcea.storm_window"], "10s");
        assert!(ended[0].tags.iter().any(|t| t == "storm_summary"));
        assert_eq!(s.admit(&a, t0 + Duration::from_secs(11), &mut sums), Decision::Deliver);
        assert!(sums.is_empty());
    }

    #[test]
    fn a_hit_after_the_window_summarises_before_it_is_delivered() {
        let mut s = StormControl::new(StormOptions { burst: 2, ..Default::default() });
        let t0 = Instant::now();
        let mut sums = Vec::new();
        let a = hit("r", Priority::Notice, "c1");
        let decisions: Vec<_> = (0..5).map(|i| s.admit(&a, t0 + Duration::from_millis(i), &mut sums)).collect();
        assert_eq!(decisions.iter().filter(|d| **d == Decision::Deliver).count(), 2);
        assert_eq!(s.admit(&a, t0 + Duration::from_secs(10), &mut sums), Decision::Deliver);
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[0].output_fields["dcea.suppressed"], 3);
        assert_eq!(s.flush(t0 + Duration::from_secs(11)).len(), 0);
    }

    #[test]
    fn critical_escapes_and_kills_are_never_folded_and_zero_window_is_off() {
        let mut s = StormControl::new(StormOptions::default());
        let t0 = Instant::now();
        let mut sums = Vec::new();
        let mut esc = alert("Container escape into host namespace", Priority::Critical);
        esc.tags = vec!["escape".into()];
        let esc = Arc::new(esc);
        for _ in 0..100 {
            assert_eq!(s.admit(&esc, t0, &mut sums), Decision::Deliver);
        }
        let mut off = StormControl::new(StormOptions { window: Duration::ZERO, ..Default::default() });
        let a = hit("r", Priority::Warning, "c");
        for _ in 0..10 {
            assert_eq!(off.admit(&a, t0, &mut sums), Decision::Deliver);
        }
    }
}
