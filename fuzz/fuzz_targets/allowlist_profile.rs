//! Arbitrary bytes as an allowlist profile file under `--state-dir/profiles/` (a hand edit, a
//! ConfigMap, a crash mid-write or an attacker with the state dir): parsing returns a profile
//! or an error, never panics; a parsed profile writes back to the same profile; the agent's
//! store sets a bad file aside and keeps a good one.
#![no_main]

use dcea_user::allowlist::{Profile, store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = std::str::from_utf8(data).ok().map(Profile::parse);
    if let Some(Ok(p)) = &parsed {
        assert_eq!(Profile::parse(&p.to_yaml()).as_ref(), Ok(p), "a profile round-trips");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = store::Store::new(dir.path());
    std::fs::create_dir_all(&s.dir).expect("mkdir");
    let name = match &parsed {
        Some(Ok(p)) => p.name.clone(),
        _ => "fuzz".to_string(),
    };
    let path = store::path_of(&s.dir, &name);
    std::fs::write(&path, data).expect("write");
    let changes = s.poll();
    let kept = matches!(&parsed, Some(Ok(_))) && data.len() as u64 <= 4 << 20;
    assert_eq!(s.get(&name).is_some(), kept, "a good profile is kept");
    assert_eq!(changes.corrupt.is_empty(), kept, "a bad one is set aside: {changes:?}");
    assert_eq!(path.exists(), kept);
});
