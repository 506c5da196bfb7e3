//! `cargo xtask test`: bring the test environment up, run every test (unit, privileged and
//! Docker end-to-end, the kernel matrix's 6.1 guest), and end with one truthful line,
//! `N passed, N failed, N skipped`, every skipped test named above it. A skip fails the run
//! unless its kind was asked for (`--skip docker,vm` or `DCEA_TEST_SKIP`).

mod tally;

use std::{
    collections::BTreeSet,
    env, fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{testenv, vm};
use tally::Tally;

/// The kinds `--skip` accepts, with what each leaves out.
pub const KINDS: [(&str, &str); 5] = [
    ("docker", "the Docker end-to-end tests"),
    ("vm", "the kernel matrix in qemu"),
    ("root", "everything that loads eBPF programs (when not run as root)"),
    ("kernel", "tests of hooks or kernel features this host lacks and no guest ran"),
    ("package", "tests of a Debian package that is not installed"),
];

pub struct Options {
    /// Skip kinds the user accepts.
    pub skip: BTreeSet<String>,
}

impl Options {
    pub fn new(flags: &[String]) -> Result<Options> {
        let from_env = env::var("DCEA_TEST_SKIP").unwrap_or_default();
        let mut skip = BTreeSet::new();
        for kind in flags.iter().map(String::as_str).chain(from_env.split(',')).map(str::trim).filter(|k| !k.is_empty())
        {
            if !KINDS.iter().any(|(k, _)| *k == kind) {
                bail!("--skip {kind}: choose from {}", KINDS.map(|(k, _)| k).join(", "));
            }
            skip.insert(kind.to_string());
        }
        if env::var("DCEA_VM_KERNELS").is_ok_and(|k| k == "none") {
            skip.insert("vm".into());
        }
        Ok(Options { skip })
    }
}

pub fn run(root: &Path, opts: Options) -> Result<()> {
    let started = Instant::now();
    let root_user = crate::is_root();
    if root_user {
        let parts = testenv::Parts { docker: !opts.skip.contains("docker"), vm: !opts.skip.contains("vm") };
        testenv::up(parts).context("bringing the test environment up (`cargo xtask env up`)")?;
    } else {
        eprintln!("xtask: not root: the environment is not brought up and the privileged tests record skips");
    }
    let mut tally = Tally::default();

    eprintln!("xtask: unit tests");
    cargo_tests(
        crate::cargo(root).args([
            "test",
            "--workspace",
            "--exclude",
            "dcea-tests",
            "--exclude",
            "dcea-ebpf",
            "--no-fail-fast",
        ]),
        &mut tally,
    )?;

    crate::build(root, false)?;
    if root_user && !opts.skip.contains("docker") {
        // The DaemonSet test runs the real image, built from this static binary.
        eprintln!("xtask: static binary and image context for the deployment test");
        crate::image::run(root, crate::image::ImageArgs { tag: String::new(), context_only: true })?;
    }
    let ledger = root.join("target").join("test-skips.tsv");
    let _ = fs::remove_file(&ledger);
    eprintln!("xtask: privileged end-to-end tests (--test-threads=1)");
    let kinds: Vec<&str> = opts.skip.iter().map(String::as_str).collect();
    cargo_tests(
        crate::cargo(root)
            .args(["test", "-p", "dcea-tests", "--no-fail-fast", "--", "--test-threads=1"])
            .env("DCEA_BIN", crate::dcea_bin(root, false))
            .env("DCEA_TEST_SKIP_LOG", &ledger)
            .env("DCEA_TEST_SKIP", kinds.join(",")),
        &mut tally,
    )?;
    tally.ledger(&fs::read_to_string(&ledger).unwrap_or_default());

    let mut matrix_error = None;
    if opts.skip.contains("vm") {
        tally.skip_part("kernel matrix", "vm", "skipped on request (--skip vm)");
    } else if !root_user {
        tally.skip_part("kernel matrix", "root", "boots qemu guests and fetches kernels with apt: needs root");
    } else {
        // The commit_creds hook and the integrity checks cannot load on every host, so at least
        // one other kernel runs them: $DCEA_VM_KERNELS picks which (default 6.1).
        let kernels: Vec<String> =
            env::var("DCEA_VM_KERNELS").unwrap_or_else(|_| "6.1".into()).split(',').map(str::to_string).collect();
        eprintln!("xtask: kernel matrix in qemu: {}", kernels.join(", "));
        let opts =
            vm::VmOptions { kernels: vm::select(&kernels)?, keep: false, accel: "auto".into(), update_readme: false };
        match vm::run_matrix(root, opts) {
            Ok(runs) => {
                for (spec, run) in &runs {
                    for ((_, test), (outcome, _)) in &run.tests {
                        match outcome {
                            vm::Outcome::Pass => tally.guest(spec.name, test, Some(true), ""),
                            vm::Outcome::Fail => tally.guest(spec.name, test, Some(false), ""),
                            vm::Outcome::Skip(reason) => tally.guest(spec.name, test, None, reason),
                        }
                    }
                }
                let failed = vm::failures(&runs);
                if !failed.is_empty() {
                    matrix_error = Some(failed.join("\n  "));
                }
            }
            Err(e) => matrix_error = Some(format!("{e:#}")),
        }
    }

    let summary = tally.summary();
    println!();
    for (test, kernel) in &summary.covered {
        println!("covered in the {kernel} guest: {test} (this host's kernel cannot run it)");
    }
    for name in &summary.ignored {
        println!("ignored by design (#[ignore], run by hand): {name}");
    }
    for s in &summary.skipped {
        println!("SKIPPED {} [{}]: {}", s.test, s.kind, s.reason);
    }
    if let Some(e) = &matrix_error {
        println!("kernel matrix failed:\n  {e}");
    }
    println!("xtask: finished in {:.0} s", started.elapsed().as_secs_f64());
    println!("{}", summary.line());

    let unexpected = summary.unexpected_kinds(&opts.skip);
    if summary.failed > 0 || matrix_error.is_some() {
        bail!("{} test(s) failed", summary.failed.max(1));
    }
    if !unexpected.is_empty() {
        let kinds: Vec<&str> = unexpected.iter().map(String::as_str).collect();
        bail!(
            "{} test(s) did not run (kinds: {}). A skip is not a pass: fix the environment (`cargo xtask env up` \
             starts what the tests need), or accept these skips explicitly with `cargo xtask test --skip {}` \
             (or DCEA_TEST_SKIP={})",
            summary.skipped.len(),
            kinds.join(", "),
            kinds.join(","),
            kinds.join(",")
        );
    }
    Ok(())
}

/// Run one `cargo test`, streaming its output and counting its per-test lines. A failing
/// test binary does not stop the count (`--no-fail-fast`); only a build failure is an error.
fn cargo_tests(cmd: &mut Command, tally: &mut Tally) -> Result<()> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let mut saw_result = false;
    let failed_before = tally.summary().failed;
    for line in BufReader::new(child.stdout.take().context("cargo stdout")?).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        saw_result |= line.starts_with("test result: ");
        tally.cargo_line(&line);
    }
    let st = child.wait()?;
    if !st.success() && !saw_result {
        bail!("{cmd:?} failed before running tests: {st}");
    }
    if !st.success() && tally.summary().failed == failed_before {
        // A test binary that died without reporting (a crash, a signal) is a failure too.
        tally.fail(&format!("cargo test exited with {st} without a failing test line"));
    }
    Ok(())
}
