//! One report per escape whichever path finds it first.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::output::Alert;

/// An escape alert whose host namespace kinds were all already reported for the same pid
/// (by the kernel, a pass or a re-check) within the last minutes is dropped. Other rules
/// are never dropped here (storm control folds their repeats).
#[derive(Default)]
pub struct Dedup {
    seen: HashMap<u32, (u32, Instant)>,
}

const DEDUP_WINDOW: Duration = Duration::from_secs(300);

impl Dedup {
    pub fn admit(&mut self, alert: &Alert) -> bool {
        let Some((pid, entered)) = crate::monitor::alert::escape_key(alert) else { return true };
        let now = Instant::now();
        let e = self.seen.entry(pid).or_insert((0, now));
        if now.duration_since(e.1) > DEDUP_WINDOW {
            *e = (0, now);
        }
        let new = entered & !e.0 != 0;
        e.0 |= entered;
        e.1 = now;
        new
    }

    pub fn expire(&mut self) {
        self.seen.retain(|_, (_, t)| t.elapsed() <= DEDUP_WINDOW);
    }
}
