//! Rule evaluation allocates nothing: the full default ruleset over the synthetic stream,
//! counted by a global allocator (its own test binary, so nothing else runs meanwhile).

use dcea_user::rules::{
    RuleSet,
    synthetic::{self, CountingAllocator},
};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn evaluating_the_default_ruleset_does_not_allocate() {
    let rules = RuleSet::builtin().expect("default rules");
    let events = synthetic::stream(50_000);
    let before = synthetic::allocations();
    assert!(before > 0, "the counting allocator is installed");
    let mut hits = 0u64;
    let mut first = 0u64;
    for ev in &events {
        hits += rules.matching(ev).count() as u64;
        first += u64::from(rules.first_match(ev).is_some());
    }
    let allocations = synthetic::allocations() - before;
    assert_eq!(allocations, 0, "allocations while evaluating {} events", events.len());
    // The stream carries about 2% hits, and every hit has a first match.
    assert!(hits > 500 && hits < 2_500, "{hits} hits");
    assert!(first > 500 && first <= hits, "{first} first matches");
}
