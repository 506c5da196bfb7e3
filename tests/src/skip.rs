//! The one way an end-to-end test says it could not run. `cargo xtask test` counts these: each
//! skip is printed on stderr *and* appended to the ledger named by `$DCEA_TEST_SKIP_LOG`, so a
//! skipped test never reads as passed, and the run fails unless the user asked for that kind of
//! skip (`--skip KIND` / `DCEA_TEST_SKIP=KIND,…`).

use std::{fs::OpenOptions, io::Write, path::Path};

/// What a test needed and did not have. The names are what `--skip` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Root: the tests load eBPF programs and read other processes' `/proc`.
    Root,
    /// A Docker engine with the test image (`cargo xtask env up` starts one).
    Docker,
    /// A kernel feature this host lacks (a hook type, a cgroup hierarchy).
    Kernel,
    /// A program from a Debian package that `cargo xtask env up` installs (rsyslog, prometheus,
    /// containerd, bpftrace…).
    Package,
}

impl Need {
    pub fn name(self) -> &'static str {
        match self {
            Need::Root => "root",
            Need::Docker => "docker",
            Need::Kernel => "kernel",
            Need::Package => "package",
        }
    }
}

/// The ledger `cargo xtask test` reads.
pub const LOG_ENV: &str = "DCEA_TEST_SKIP_LOG";
/// Kinds of skip the user asked for (comma-separated), e.g. `docker,vm`.
pub const REQUEST_ENV: &str = "DCEA_TEST_SKIP";
/// Set in the kernel-matrix guests: tests that need Docker are left out there by design.
pub const GUEST_ENV: &str = "DCEA_TEST_GUEST";

/// Did the user ask to skip this kind of test?
pub fn requested(need: Need) -> bool {
    std::env::var(REQUEST_ENV).is_ok_and(|v| v.split(',').any(|k| k.trim() == need.name()))
}

/// Are we in a kernel-matrix guest?
pub fn in_guest() -> bool {
    std::env::var_os(GUEST_ENV).is_some()
}

/// Record that `test` did not run because it lacked `need`, and why. Always returns false, so
/// a test can write `if !ready { return skip(...) }` style guards as `return`.
pub fn skip(test: &str, need: Need, reason: &str) -> bool {
    skip_to(std::env::var_os(LOG_ENV).as_deref().map(Path::new), test, need, reason)
}

/// [`skip`] with an explicit ledger (the harness's own unit test).
pub fn skip_to(ledger: Option<&Path>, test: &str, need: Need, reason: &str) -> bool {
    let reason = reason.replace(['\n', '\t'], " ");
    eprintln!("SKIP {test}: [{}] {reason}", need.name());
    if let Some(path) = ledger {
        // libtest names each test's thread after the test: that is the name its `test … ok`
        // line carries, which the count must match (a test may label itself otherwise).
        let thread = std::thread::current();
        let name = thread.name().filter(|n| *n != "main").unwrap_or(test);
        let line = format!("{}\t{}\t{}\n", name, need.name(), reason);
        // O_APPEND: one write per line, so concurrent test binaries never interleave a record.
        let written =
            OpenOptions::new().create(true).append(true).open(path).and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            // Not recording a skip would make it read as a pass: fail loudly instead.
            panic!("cannot record the skip of {test} in {}: {e}", path.display());
        }
    }
    false
}

/// A test that is not part of this environment's set by design (the Docker tests in a guest):
/// not a skip, and not a pass. The guest's runner reads the marker.
pub fn left_out(test: &str, reason: &str) -> bool {
    eprintln!("LEFT-OUT {test}: {reason}");
    false
}

/// Is `program` on PATH (or an absolute path that exists)? Records a skip naming the Debian
/// `package` that provides it otherwise.
pub fn require_program(test: &str, program: &str, package: &str) -> bool {
    find_program(program).is_some()
        || skip(test, Need::Package, &format!("{program} not found: `cargo xtask env up` installs {package}"))
}

/// `program` resolved through PATH (plus the sbin directories root's PATH may lack).
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(program);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(Into::into))
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_engine_records_a_docker_skip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("skips.tsv");
        let sock = format!("unix://{}/no-engine.sock", dir.path().display());
        assert!(!crate::docker::available_at("engine_test", Some(&sock), Some(&ledger)));
        let text = std::fs::read_to_string(&ledger).expect("the skip was recorded");
        let fields: Vec<&str> = text.trim_end().split('\t').collect();
        // The ledger names the running test (libtest's thread name), whatever label it gave.
        assert_eq!(fields[..2], ["skip::tests::an_unreachable_engine_records_a_docker_skip", "docker"], "{text}");
        assert!(fields[2].contains("--skip docker"), "the reason says how to accept it: {text}");
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn a_missing_program_records_a_package_skip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("skips.tsv");
        assert!(find_program("sh").is_some());
        assert!(find_program("dcea-no-such-program").is_none());
        std::thread::spawn(move || skip_to(Some(&ledger), "t", Need::Package, "x not found")).join().unwrap();
        let ledger = dir.path().join("skips.tsv");
        assert_eq!(
            std::fs::read_to_string(&ledger).unwrap(),
            "t\tpackage\tx not found\n",
            "an unnamed thread keeps the label"
        );
    }
}
