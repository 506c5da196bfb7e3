//! Arbitrary bytes as the integrity state under `--state-dir/integrity/` (an image baseline
//! and the findings log, which a crash mid-write, a newer dcea or an attacker with the state
//! dir may have written): parsing returns a value or an error, never panics; opening a bad
//! baseline sets it aside and starts an empty one; the findings reader skips and counts the
//! lines it cannot read.
#![no_main]

use dcea_user::integrity::{baseline, findings};
use libfuzzer_sys::fuzz_target;

const IMAGE: &str = "sha256:fuzz";

fuzz_target!(|data: &[u8]| {
    let parsed = baseline::parse(data);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = baseline::path_of(dir.path(), IMAGE);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, data).expect("write");
    let opened = baseline::Baseline::open(dir.path(), IMAGE, &[]);
    let kept = parsed.as_ref().is_ok_and(|f| f.image == IMAGE);
    assert_eq!(path.with_extension("json.corrupt").exists(), !kept, "a bad baseline is set aside, a good one kept");
    if kept {
        assert_eq!(opened.file.files, parsed.expect("kept").files);
    } else {
        assert!(opened.file.files.is_empty());
    }

    std::fs::write(findings::path(dir.path()), data).expect("write");
    let (all, bad) = findings::load(dir.path());
    let lines = String::from_utf8(data.to_vec()).map(|t| t.lines().filter(|l| !l.trim().is_empty()).count());
    if let Ok(n) = lines {
        assert_eq!(all.len() + bad, n, "every line is a finding or counted as unreadable");
    }
});
