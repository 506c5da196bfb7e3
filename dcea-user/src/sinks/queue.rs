//! The bounded queue in front of each sink. Pushing never blocks: when the queue is full the
//! least important alert goes — lowest priority first, oldest first within a priority — so
//! a Critical alert is only ever shed when everything queued is Critical too.

use std::{
    collections::VecDeque,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::output::{Alert, Priority};

const LEVELS: usize = Priority::Debug as usize + 1;

#[derive(Default)]
struct Inner {
    /// One FIFO per priority; `seq` restores arrival order across them.
    levels: [VecDeque<(u64, Arc<Alert>)>; LEVELS],
    seq: u64,
    len: usize,
    closed: bool,
}

pub struct ShedQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    capacity: usize,
}

/// What a push did.
#[derive(Debug)]
pub enum Pushed {
    Queued,
    /// The queue was full: this alert (the pushed one or a queued one) was dropped.
    Shed(Arc<Alert>),
}

impl ShedQueue {
    pub fn new(capacity: usize) -> ShedQueue {
        ShedQueue { inner: Mutex::new(Inner::default()), ready: Condvar::new(), capacity: capacity.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A sink thread that panicked while holding the lock leaves consistent data behind
        // (every mutation is a single push or pop).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, alert: Arc<Alert>) -> Pushed {
        let mut q = self.lock();
        let level = alert.priority as usize;
        let mut result = Pushed::Queued;
        if q.len >= self.capacity {
            let lowest = (0..LEVELS).rev().find(|&l| !q.levels[l].is_empty()).unwrap_or(level);
            if level > lowest {
                // Less important than anything queued: the new one goes.
                return Pushed::Shed(alert);
            }
            if let Some((_, old)) = q.levels[lowest].pop_front() {
                q.len -= 1;
                result = Pushed::Shed(old);
            }
        }
        let seq = q.seq;
        q.seq += 1;
        q.levels[level].push_back((seq, alert));
        q.len += 1;
        drop(q);
        self.ready.notify_one();
        result
    }

    /// Up to `max` alerts in arrival order, waiting up to `wait` for the first. `None` once
    /// the queue is closed and empty.
    pub fn pop_batch(&self, max: usize, wait: Duration) -> Option<Vec<Arc<Alert>>> {
        let deadline = Instant::now() + wait;
        let mut q = self.lock();
        while q.len == 0 {
            if q.closed {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Some(Vec::new());
            }
            q = self.ready.wait_timeout(q, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        let mut out = Vec::with_capacity(max.min(q.len));
        while out.len() < max {
            let Some(level) =
                (0..LEVELS).filter_map(|l| q.levels[l].front().map(|(seq, _)| (*seq, l))).min().map(|(_, l)| l)
            else {
                break;
            };
            if let Some((_, a)) = q.levels[level].pop_front() {
                q.len -= 1;
                out.push(a);
            }
        }
        Some(out)
    }

    pub fn len(&self) -> usize {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No more pushes; the sink drains what is queued and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tests::alert;

    fn rules(batch: &[Arc<Alert>]) -> Vec<String> {
        batch.iter().map(|a| a.rule.clone()).collect()
    }

    #[test]
    fn keeps_arrival_order_across_priorities() {
        let q = ShedQueue::new(10);
        for (r, p) in
            [("a", Priority::Warning), ("b", Priority::Critical), ("c", Priority::Notice), ("d", Priority::Critical)]
        {
            assert!(matches!(q.push(Arc::new(alert(r, p))), Pushed::Queued));
        }
        let got = q.pop_batch(10, Duration::ZERO).unwrap();
        assert_eq!(rules(&got), ["a", "b", "c", "d"]);
    }

    #[test]
    fn full_queue_sheds_lowest_priority_oldest_first_and_critical_last() {
        let q = ShedQueue::new(3);
        q.push(Arc::new(alert("warn-1", Priority::Warning)));
        q.push(Arc::new(alert("crit-1", Priority::Critical)));
        q.push(Arc::new(alert("warn-2", Priority::Warning)));
        // A Critical pushes out the oldest Warning.
        let Pushed::Shed(s) = q.push(Arc::new(alert("crit-2", Priority::Critical))) else { panic!("no shed") };
        assert_eq!(s.rule, "warn-1");
        // A Debug alert is less important than everything queued: it is the one shed.
        let Pushed::Shed(s) = q.push(Arc::new(alert("debug", Priority::Debug))) else { panic!("no shed") };
        assert_eq!(s.rule, "debug");
        let Pushed::Shed(s) = q.push(Arc::new(alert("crit-3", Priority::Critical))) else { panic!("no shed") };
        assert_eq!(s.rule, "warn-2");
        // Only Criticals left: the oldest Critical goes.
        let Pushed::Shed(s) = q.push(Arc::new(alert("crit-4", Priority::Critical))) else { panic!("no shed") };
        assert_eq!(s.rule, "crit-1");
        assert_eq!(rules(&q.pop_batch(10, Duration::ZERO).unwrap()), ["crit-2", "crit-3", "crit-4"]);
    }

    #[test]
    fn closed_queue_drains_then_ends_and_waits_time_out() {
        let q = ShedQueue::new(4);
        assert_eq!(q.pop_batch(4, Duration::from_millis(10)).unwrap().len(), 0);
        q.push(Arc::new(alert("x", Priority::Notice)));
        q.close();
        assert_eq!(q.pop_batch(4, Duration::ZERO).unwrap().len(), 1);
        assert!(q.pop_batch(4, Duration::ZERO).is_none());
    }
}
