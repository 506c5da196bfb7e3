//! Benchmark: rule evaluation throughput, one core, the full default ruleset over a synthetic
//! stream (mostly benign opens and execs, ~2% hits). Target ≥ 1,000,000 events/s with zero
//! allocations per event. Needs no privileges.
//!
//!     cargo run --release -p dcea-tests --bin bench_rules -- [SECONDS] [DISTINCT_EVENTS]

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use dcea_user::rules::{
    RuleSet,
    synthetic::{self, CountingAllocator},
};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Events/s, allocations and hits over `seconds` of passes over `events`.
fn measure(
    rules: &RuleSet,
    events: &[dcea_user::rules::SimpleEvent<'static>],
    seconds: f64,
    all: bool,
) -> (f64, u64, u64, u64) {
    let allocs_before = synthetic::allocations();
    let (mut n, mut hits) = (0u64, 0u64);
    let start = Instant::now();
    let budget = Duration::from_secs_f64(seconds);
    while start.elapsed() < budget {
        for ev in events {
            hits += if all {
                rules.matching(black_box(ev)).count() as u64
            } else {
                u64::from(rules.first_match(black_box(ev)).is_some())
            };
        }
        n += events.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, n, synthetic::allocations() - allocs_before, hits)
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    // The monitor evaluates each event right after decoding it, while it is in cache: a few
    // thousand distinct events (too many for the branch predictor to learn) model that.
    let distinct: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let t = Instant::now();
    let rules = RuleSet::builtin().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let events = synthetic::stream(distinct);
    // Warm up caches and branch predictors.
    let _ = measure(&rules, &events, 0.3, true);
    let (rate_all, n_all, allocs_all, hits_all) = measure(&rules, &events, seconds, true);
    let (rate_first, n_first, allocs_first, _) = measure(&rules, &events, seconds, false);
    println!(
        "rules: {} default rules, {} macros, {} lists compiled in {compile_ms:.1} ms; {distinct} distinct events of {} bytes",
        rules.rules().len(),
        rules.macro_count(),
        rules.list_count(),
        std::mem::size_of::<dcea_user::rules::SimpleEvent>()
    );
    println!(
        "| rule evaluation, full default ruleset, one core, every matching rule | {:.2} M events/s ({:.0} ns/event), {:.4} allocations/event, {:.2}% events hit | ≥ 1 M/s, 0 allocations |",
        rate_all / 1e6,
        1e9 / rate_all,
        allocs_all as f64 / n_all as f64,
        hits_all as f64 / n_all as f64 * 100.0
    );
    println!(
        "| rule evaluation, first matching rule only | {:.2} M events/s, {:.4} allocations/event | ≥ 1 M/s |",
        rate_first / 1e6,
        allocs_first as f64 / n_first as f64
    );
    if rate_all < 1e6 || allocs_all + allocs_first > 0 {
        eprintln!("bench_rules: below target");
        std::process::exit(1);
    }
}
