//! Rule evaluation allocates nothing: the full default ruleset over the synthetic stream,
//! counted by a global allocator (its own test binary, so nothing else runs meanwhile).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

use dcea_user::rules::{RuleSet, synthetic};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluating_the_default_ruleset_does_not_allocate() {
    let rules = RuleSet::builtin().expect("default rules");
    let events = synthetic::stream(50_000);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(before > 0, "the counting allocator is installed");
    let mut hits = 0u64;
    let mut first = 0u64;
    for ev in &events {
        hits += rules.matching(ev).count() as u64;
        first += u64::from(rules.first_match(ev).is_some());
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "allocations while evaluating {} events", events.len());
    // The stream carries about 2% hits, and every hit has a first match.
    assert!(hits > 500 && hits < 2_500, "{hits} hits");
    assert!(first > 500 && first <= hits, "{first} first matches");
}
