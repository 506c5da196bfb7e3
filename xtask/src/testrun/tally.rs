//! Counting a test run truthfully: cargo's per-test lines, the harness's skip ledger and the
//! kernel-matrix guests' outcomes become one `N passed, N failed, N skipped`.

use std::collections::{BTreeMap, BTreeSet};

/// One test that did not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub test: String,
    /// `docker`, `root`, `kernel`, `package`, `vm`, … (what `--skip` accepts).
    pub kind: String,
    pub reason: String,
}

#[derive(Default, Debug)]
pub struct Tally {
    /// Test name (last path segment) → passed? From cargo's `test NAME ... ok|FAILED` lines.
    results: BTreeMap<String, bool>,
    ignored: BTreeSet<String>,
    skipped: Vec<Skipped>,
    /// Tests that passed in a kernel-matrix guest, by name, with the guest's kernel.
    guest_passed: BTreeMap<String, String>,
    guest_counts: (usize, usize),
}

/// What the run comes to.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: Vec<Skipped>,
    /// `#[ignore]` tests: tools run by hand (fixture recorders), left out by design — listed,
    /// neither a pass nor a skip.
    pub ignored: Vec<String>,
    /// Host skips for a missing kernel feature whose test passed in a guest: (test, kernel).
    pub covered: Vec<(String, String)>,
}

fn short(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

impl Tally {
    /// One line of `cargo test`'s stdout.
    pub fn cargo_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test ") else { return };
        let Some((name, outcome)) = rest.rsplit_once(" ... ") else { return };
        let name = name.trim().to_string();
        match outcome.trim() {
            "ok" => {
                self.results.entry(name).or_insert(true);
            }
            "FAILED" => {
                self.results.insert(name, false);
            }
            o if o.starts_with("ignored") => {
                self.ignored.insert(name);
            }
            _ => {}
        }
    }

    /// A failure no test line names.
    pub fn fail(&mut self, what: &str) {
        self.results.insert(what.to_string(), false);
    }

    /// The harness's ledger: `test\tkind\treason` lines.
    pub fn ledger(&mut self, text: &str) {
        for line in text.lines() {
            let mut f = line.splitn(3, '\t');
            let (Some(test), Some(kind)) = (f.next(), f.next()) else { continue };
            if test.is_empty() || kind.is_empty() || self.skipped.iter().any(|s| s.test == test) {
                continue;
            }
            self.skipped.push(Skipped {
                test: test.to_string(),
                kind: kind.to_string(),
                reason: f.next().unwrap_or("").to_string(),
            });
        }
    }

    /// A whole part that did not run (the kernel matrix on request, say).
    pub fn skip_part(&mut self, test: &str, kind: &str, reason: &str) {
        self.skipped.push(Skipped { test: test.into(), kind: kind.into(), reason: reason.into() });
    }

    /// One test in one guest: `Some(true)` passed, `Some(false)` failed, `None` skipped there.
    pub fn guest(&mut self, kernel: &str, test: &str, outcome: Option<bool>, reason: &str) {
        match outcome {
            Some(true) => {
                self.guest_counts.0 += 1;
                self.guest_passed.entry(test.to_string()).or_insert_with(|| kernel.to_string());
            }
            Some(false) => self.guest_counts.1 += 1,
            None => self.skip_part(&format!("{test} ({kernel} guest)"), "kernel", reason),
        }
    }

    pub fn summary(&self) -> Summary {
        let mut skipped = Vec::new();
        let mut covered = Vec::new();
        for s in &self.skipped {
            match self.guest_passed.get(&s.test) {
                Some(kernel) if s.kind == "kernel" => covered.push((s.test.clone(), kernel.clone())),
                _ => skipped.push(s.clone()),
            }
        }

        // A skipped test returned early, which cargo reports as ok: it is not a pass.
        let not_run: BTreeSet<&str> = self.skipped.iter().map(|s| s.test.as_str()).collect();
        let passed = self
            .results
            .iter()
            .filter(|(n, ok)| **ok && !not_run.contains(n.as_str()) && !not_run.contains(short(n)))
            .count();
        let failed = self.results.values().filter(|ok| !**ok).count();
        Summary {
            passed: passed + self.guest_counts.0,
            failed: failed + self.guest_counts.1,
            skipped,
            covered,
            ignored: self.ignored.iter().cloned().collect(),
        }
    }
}

impl Summary {
    /// The closing line: `N passed, N failed, N skipped`.
    pub fn line(&self) -> String {
        format!("{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped.len())
    }

    /// Skip kinds the user did not ask for.
    pub fn unexpected_kinds(&self, allowed: &BTreeSet<String>) -> BTreeSet<String> {
        self.skipped.iter().map(|s| s.kind.clone()).filter(|k| !allowed.contains(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_harness_skip_is_counted_as_skipped_not_passed() {
        let mut t = Tally::default();
        for line in [
            "running 3 tests",
            "test docker_benign ... ok",
            "test fake_container_setns_into_host ... ok",
            "test monitor::tests::decode ... FAILED",
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.13s",
        ] {
            t.cargo_line(line);
        }
        // What dcea_tests::skip writes when the engine cannot be reached.
        t.ledger("docker_benign\tdocker\tno Docker engine answers (Cannot connect): `cargo xtask env up` …\n");
        t.cargo_line("test record_containerd_answers ... ignored");
        let s = t.summary();
        assert_eq!(s.line(), "1 passed, 1 failed, 1 skipped");
        assert_eq!(s.ignored, vec!["record_containerd_answers".to_string()], "listed, not a skip");
        assert_eq!(s.skipped[0].kind, "docker");
        let allowed: BTreeSet<String> = ["vm".to_string()].into();
        assert_eq!(s.unexpected_kinds(&allowed), ["docker".to_string()].into());
        let allowed: BTreeSet<String> = ["docker".to_string()].into();
        assert!(s.unexpected_kinds(&allowed).is_empty());
    }

    #[test]
    fn a_kernel_skip_that_passed_in_a_guest_is_covered() {
        let mut t = Tally::default();
        t.cargo_line("test commit_creds_fentry_reports_root_gain_in_container ... ok");
        t.cargo_line("test insmod_case ... ok");
        t.ledger("commit_creds_fentry_reports_root_gain_in_container\tkernel\tfentry EPERM\n");
        t.ledger("insmod_case\tkernel\tno module syscalls\n");
        t.guest("6.1", "commit_creds_fentry_reports_root_gain_in_container", Some(true), "");
        t.guest("6.1", "behaviour_rules_fire_in_a_fake_container", Some(true), "");
        let s = t.summary();
        assert_eq!(s.covered, vec![("commit_creds_fentry_reports_root_gain_in_container".into(), "6.1".into())]);
        // The host instance did not run; the guest instances count.
        assert_eq!(s.line(), "2 passed, 0 failed, 1 skipped");
    }

    #[test]
    fn ledger_lines_are_deduplicated_and_garbage_ignored() {
        let mut t = Tally::default();
        t.ledger("a\tdocker\twhy\na\tdocker\twhy\n\n\tdocker\tx\nnot a record\n");
        assert_eq!(t.summary().skipped.len(), 1);
    }
}
