//! `cargo xtask bench --peers`: dcea beside a bpftrace peer and an empty-program floor on the
//! same hooks (tests/src/bin/bench_peers/); installs bpftrace with apt when it is missing.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::testenv::apt;

#[derive(clap::Args)]
pub struct PeersArgs {
    /// Hot-path cost against a bpftrace peer doing the same work on the same hooks, and an
    /// empty program there (the floor), interleaved in one run (root).
    #[arg(long)]
    pub peers: bool,
    /// Rounds of the four configurations (--peers).
    #[arg(long, requires = "peers")]
    pub rounds: Option<u32>,
    /// Multiply every loop's iteration count (--peers; e.g. 0.2).
    #[arg(long, requires = "peers")]
    pub scale: Option<f64>,
    /// A short run (--peers): 1 round at a quarter of the iterations, about two minutes.
    #[arg(long, requires = "peers")]
    pub quick: bool,
    /// Only these loops (--peers): open, setns, unshare-setns, fork-exec, connect,
    /// container-exec (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "peers")]
    pub loops: Vec<String>,
}

pub fn run(root: &Path, args: &PeersArgs) -> Result<()> {
    let mut wanted = apt::Wanted::default();
    wanted.need_programs(&[("bpftrace", "bpftrace")]);
    wanted.install()?;
    let Some(bpftrace) = apt::find("bpftrace") else {
        bail!("bpftrace is still missing after apt-get install bpftrace");
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let scale = args.scale.unwrap_or(if args.quick { 0.25 } else { 1.0 });
    if rounds == 0 || scale.is_nan() || scale <= 0.0 {
        bail!("--rounds must be at least 1 and --scale above 0");
    }
    let target = root.join("target").join("release");
    let mut cmd = Command::new(target.join("bench_peers"));
    cmd.env("DCEA_BIN", target.join("dcea"))
        .env("DCEA_BPFTRACE", bpftrace)
        .env("DCEA_PEERS_DIR", root.join("tests/bench/peers"))
        .env("DCEA_PEERS_ROUNDS", rounds.to_string())
        .env("DCEA_PEERS_SCALE", scale.to_string());
    if !args.loops.is_empty() {
        cmd.env("DCEA_PEERS_LOOPS", args.loops.join(","));
    }
    eprintln!("xtask: peer benchmark, {rounds} round(s) at scale {scale}");
    crate::status(&mut cmd)
}
