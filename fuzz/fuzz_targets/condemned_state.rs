//! Arbitrary bytes as the condemned-set file (`--state-dir`/condemned.json, which a crash, a
//! newer dcea or an attacker with the state dir may have written): the parser returns entries
//! or an error for any input, never panics, and accepts no cgroup path that climbs out of the
//! cgroup tree; loading the set over such a file never panics and sets a bad file aside.
#![no_main]

use dcea_user::enforce::condemned::{self, Condemned, STATE_FILE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = condemned::parse(data) {
        for e in &entries {
            assert!(!e.cgroup.is_empty() && !e.cgroup.split('/').any(|c| c == ".."), "{e:?}");
            // A release request names an entry only by what it holds.
            assert!(!condemned::matches(e, ""));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(STATE_FILE), data).expect("write");
    let set = Condemned::load(dir.path());
    let loaded = set.entries().count();
    match condemned::parse(data) {
        Ok(entries) => assert!(loaded <= entries.len()),
        Err(_) => {
            assert_eq!(loaded, 0);
            assert!(dir.path().join("condemned.json.corrupt").exists(), "a bad file is set aside");
        }
    }
});
