//! Arbitrary bytes as a rules file: loading must return rules or errors with positions for
//! any input (broken YAML, hostile nesting, alias bombs, macro/list cycles, bad conditions,
//! templates) — never panic, never hang — and the rules it accepts must evaluate.
#![no_main]

use dcea_user::rules::{EvtType, RuleSet, SimpleEvent, Source, condition};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    // The condition grammar alone, on the raw input.
    let _ = condition::parse(&text);
    match RuleSet::from_sources(vec![Source { name: "fuzz.yaml".into(), text }]) {
        Ok(rules) => {
            for t in EvtType::ALL {
                let mut ev = SimpleEvent::new(t);
                ev.container_id = Some("c");
                ev.name = Some("sh");
                ev.fd_name = Some("/etc/shadow");
                ev.flags = Some(1);
                ev.ancestors = &["bash", "sshd"];
                for rule in rules.matching(&ev) {
                    let _ = rule.render(&ev, 0);
                }
            }
        }
        Err(e) => {
            // Every error names the file.
            assert!(e.errors.iter().all(|d| d.file == "fuzz.yaml"), "{e}");
        }
    }
});
