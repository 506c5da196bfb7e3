//! `cargo xtask <command>`: prerequisites, build, run, test and benchmarks for dcea.
//!
//! Every command that builds first runs `setup`, which installs what a fresh Debian/Ubuntu
//! host lacks (nightly with rust-src, bpf-linker linked against rustc's own LLVM) and is a
//! few cheap checks when everything is present.

mod bench_peers;
mod image;
mod install;
mod setup;
mod testenv;
mod testrun;
mod vm;

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "dcea build and test tooling")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing prerequisites (nightly + rust-src, bpf-linker).
    Setup,
    /// Build the agent (eBPF object embedded) and the test binaries.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build and start `dcea monitor` with embedded defaults; extra arguments go to dcea
    /// (e.g. `cargo xtask run -- --format text`, or `cargo xtask run -- probe`).
    Run {
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Every test: brings the test environment up (`env up`), then unit tests, the privileged
    /// and Docker end-to-end tests and the 6.1 guest (as root). Ends with `N passed, N failed,
    /// N skipped`; any skip fails the run unless its kind is accepted with --skip.
    Test {
        /// Accept skips of these kinds: docker, vm, root, kernel, package
        /// (comma-separated or repeated; also $DCEA_TEST_SKIP).
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
    },
    /// The test environment: `up` installs (apt) and starts what the tests need — a Docker
    /// engine with the test image, qemu, rsyslog, prometheus, bpftrace; `status` reports it.
    Env {
        #[arg(value_parser = ["up", "status"])]
        action: String,
        /// Leave these parts out: docker, vm (comma-separated).
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
    },
    /// The privileged tests on Debian's 5.10, 6.1 and 6.12 kernels in qemu (root; KVM when it
    /// works, else TCG). Exits non-zero when any test fails on any kernel.
    VmTest {
        /// Kernels to boot: 5.10, 6.1, 6.12 or all (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', default_value = "all")]
        kernel: Vec<String>,
        /// Keep the work directory (initramfs) and print where it is.
        #[arg(long)]
        keep: bool,
        /// qemu accelerator: auto (KVM when a probe boot works, else TCG), kvm or tcg.
        #[arg(long, default_value = "auto")]
        accel: String,
        /// Rewrite README.md's kernel support table from this run's observations.
        #[arg(long)]
        update_readme: bool,
    },
    /// Benchmarks: rule evaluation throughput (no privileges needed), then detection latency,
    /// hooked-syscall overhead and ring-buffer throughput (as root).
    Bench {
        /// Only the rule evaluation benchmark.
        #[arg(long)]
        rules_only: bool,
        #[command(flatten)]
        peers: bench_peers::PeersArgs,
    },
    /// clippy on the host crates and on the eBPF crate for the bpf target.
    Clippy,
    /// The static binary (musl) and the OCI image dcea:<version>, FROM scratch.
    Image(image::ImageArgs),
    /// Install the binary, the systemd unit, the default config and the rules dir.
    Install(install::InstallArgs),
    /// Fuzz for a bounded time (cargo-fuzz, nightly, libFuzzer): every target in fuzz/ for
    /// --seconds each, or only --target NAME.
    Fuzz {
        /// One target (e.g. layer_walker, rules_parser); default: all of them.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> ExitCode {
    // Installed as the runc wrapper, this binary is that and nothing else.
    let mut args = env::args();
    if args.next().is_some_and(|a| a.rsplit('/').next() == Some(testenv::runc_wrapper::NAME)) {
        testenv::runc_wrapper::main(args.collect());
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = workspace_root();
    match cli.command {
        Cmd::Setup => setup::ensure(),
        Cmd::Build { release } => {
            setup::ensure()?;
            build(&root, release)
        }
        Cmd::Run { release, args } => {
            setup::ensure()?;
            build(&root, release)?;
            let bin = dcea_bin(&root, release);
            let args = if args.is_empty() || args[0].to_string_lossy().starts_with('-') {
                std::iter::once(OsString::from("monitor")).chain(args).collect()
            } else {
                args
            };
            let mut cmd = as_root(&bin)?;
            cmd.args(&args);
            eprintln!(
                "xtask: running {} {}",
                bin.display(),
                args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
            );
            status(&mut cmd)
        }
        Cmd::Test { skip } => {
            setup::ensure()?;
            testrun::run(&root, testrun::Options::new(&skip)?)
        }
        Cmd::Env { action, skip } => match action.as_str() {
            "up" => testenv::up(testenv::Parts {
                docker: !skip.iter().any(|s| s == "docker"),
                vm: !skip.iter().any(|s| s == "vm"),
            }),
            _ => {
                testenv::status();
                Ok(())
            }
        },
        Cmd::VmTest { kernel, keep, accel, update_readme } => {
            setup::ensure()?;
            if !is_root() {
                bail!("vm-test fetches kernels with apt and runs the privileged tests: run it as root");
            }
            vm::run(&root, vm::VmOptions { kernels: vm::select(&kernel)?, keep, accel, update_readme })
        }
        Cmd::Bench { rules_only, peers } => {
            setup::ensure()?;
            if peers.peers {
                if !is_root() {
                    bail!("bench --peers loads eBPF programs and installs bpftrace: run it as root");
                }
                build(&root, true)?;
                return bench_peers::run(&root, &peers);
            }
            bench(&root, rules_only)
        }
        Cmd::Image(args) => image::run(&root, args),
        Cmd::Install(args) => install::run(&root, args),
        Cmd::Fuzz { target, seconds } => {
            setup::ensure()?;
            fuzz(&root, target.as_deref(), seconds)
        }
        Cmd::Clippy => {
            setup::ensure()?;
            status(cargo(&root).args([
                "clippy",
                "--workspace",
                "--exclude",
                "dcea-ebpf",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            status(
                Command::new("rustup")
                    .current_dir(&root)
                    .args(["run", "nightly", "cargo", "clippy", "-p", "dcea-ebpf", "--target", "bpfel-unknown-none"])
                    .args(["-Z", "build-std=core", "--", "-D", "warnings"]),
            )
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).env("PATH", setup::path_with_cargo_bin());
    cmd
}

fn status(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn profile_dir(release: bool) -> &'static str {
    if release { "release" } else { "debug" }
}

fn dcea_bin(root: &Path, release: bool) -> PathBuf {
    root.join("target").join(profile_dir(release)).join("dcea")
}

fn build(root: &Path, release: bool) -> Result<()> {
    let mut cmd = cargo(root);
    cmd.args(["build", "-p", "dcea-user", "-p", "dcea-tests", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    status(&mut cmd)
}

fn is_root() -> bool {
    // The effective uid from /proc avoids a libc dependency for one call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The command, through sudo when we are not root (loading eBPF needs root).
fn as_root(bin: &Path) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(bin));
    }
    if which("sudo").is_none() {
        bail!("dcea needs root to load eBPF programs; run this as root");
    }
    let mut cmd = Command::new("sudo");
    cmd.arg("--preserve-env=DCEA_LOG").arg(bin);
    Ok(cmd)
}

pub fn which(bin: &str) -> Option<PathBuf> {
    env::split_paths(&setup::path_with_cargo_bin()).map(|d| d.join(bin)).find(|p| p.is_file())
}

fn bench(root: &Path, rules_only: bool) -> Result<()> {
    build(root, true)?;
    let target = root.join("target").join("release");
    eprintln!("xtask: rule evaluation benchmark (one core, default ruleset, synthetic stream)");
    status(&mut Command::new(target.join("bench_rules")))?;
    if rules_only {
        return Ok(());
    }
    if !is_root() {
        bail!("the other benchmarks load eBPF programs: run `cargo xtask bench` as root (or --rules-only)");
    }
    status(Command::new(target.join("dcea-bench")).env("DCEA_BIN", target.join("dcea")))
}

/// The fuzz targets cargo-fuzz knows (fuzz/Cargo.toml's [[bin]]s).
fn fuzz_targets(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("rustup")
        .current_dir(root)
        .env("PATH", setup::path_with_cargo_bin())
        .args(["run", "nightly", "cargo", "fuzz", "list"])
        .output()
        .context("cargo fuzz list")?;
    if !out.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect())
}

fn fuzz(root: &Path, only: Option<&str>, seconds: u64) -> Result<()> {
    let has_cargo_fuzz = cargo(root).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        eprintln!("xtask: installing cargo-fuzz");
        status(cargo(root).args(["install", "cargo-fuzz"]))?;
    }
    let all = fuzz_targets(root)?;
    let targets: Vec<String> = match only {
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_string()],
        Some(t) => bail!("no fuzz target `{t}` (targets: {})", all.join(", ")),
        None => all,
    };
    let fuzz_dir = root.join("fuzz");
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        // The working corpus (ignored by git) first, where libFuzzer saves new inputs; the
        // committed seeds after it.
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let mut cmd = Command::new("rustup");
        cmd.current_dir(root)
            .env("PATH", setup::path_with_cargo_bin())
            // The fuzz build needs no eBPF object; AYA_BUILD_SKIP keeps sanitizer flags away from it.
            .env("AYA_BUILD_SKIP", "1")
            .args(["run", "nightly", "cargo", "fuzz", "run", target])
            .arg(&corpus);
        let seeds = fuzz_dir.join("seeds").join(target);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--").arg(format!("-max_total_time={seconds}")).arg("-rss_limit_mb=2048");
        let dict = fuzz_dir.join("dicts").join(format!("{target}.dict"));
        if dict.is_file() {
            cmd.arg(format!("-dict={}", dict.display()));
        }
        status(&mut cmd)?;
    }
    Ok(())
}
