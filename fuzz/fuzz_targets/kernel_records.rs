//! Arbitrary bytes as a behaviour record from the ring buffer (a kernel of another layout, a
//! torn or hostile record): decoding returns a record or an error, never panics, and every
//! default rule evaluates over a decoded record without panicking, whatever its paths, pids
//! and flags say (the mmap, process_vm_writev and /proc/<pid>/mem fields included).
#![no_main]

use std::sync::OnceLock;

use dcea_common::{BEHAVIOUR_SIZE, NS_KINDS};
use dcea_user::{
    monitor::{
        behaviour::{DecodedBehaviour, decode_behaviour},
        rules_event::KernelEvent,
    },
    rules::RuleSet,
};
use libfuzzer_sys::fuzz_target;

fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| RuleSet::builtin().expect("the default rules load"))
}

fuzz_target!(|data: &[u8]| {
    // Short inputs are padded so that the fuzzer reaches the decoded fields quickly.
    let mut bytes = data.to_vec();
    if bytes.len() < BEHAVIOUR_SIZE {
        bytes.resize(BEHAVIOUR_SIZE, 0);
    }
    let Ok(raw) = decode_behaviour(&bytes) else { return };
    let Some(decoded) = DecodedBehaviour::new(raw) else { return };
    let host_ns = [4026531836u32; NS_KINDS];
    let Some(event) = KernelEvent::behaviour(&decoded, 0, &host_ns, None, None) else { return };
    for rule in rules().matching(&event) {
        assert!(!rule.name.is_empty());
    }
    let _ = event.target_pid();
});
