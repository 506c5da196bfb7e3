//! Arbitrary bytes as one CVE JSON 5 record (`dcea scan kernel --db`): the parser returns a
//! record or an error for any input, never panics, and what it accepts becomes a rule that
//! validates and can be judged.
#![no_main]

use dcea_user::scan::kernel::{
    cve5::{Import, record::parse_record},
    rules::judge,
    version::{KernelInput, identify},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_record(data);
    let mut import = Import::default();
    import.add("fuzz.json", data, true, &["CVE-2024-1086"]);
    assert!(import.errors.iter().all(|e| e.starts_with("fuzz.json: ")));
    for rule in &import.rules {
        rule.validate().expect("imported rules validate");
        for release in ["5.10.209", "6.6.15", "6.8.0-rc2", "2.6.12"] {
            let k = identify(&KernelInput { release: release.into(), ..Default::default() }).unwrap();
            let _ = judge(rule, &k);
        }
    }
});
