//! Arbitrary bytes as the self-protection markers (`--state-dir`/agent-run.json and
//! sentinel.json, which a crash mid-write, a newer dcea or an attacker with the state dir
//! may have written): parsing returns a value or an error, never panics; a start over such
//! files never panics, sets a bad file aside, claims a fresh run marker, and any gap alert it
//! raises says how long detection was down as a number.
#![no_main]

use dcea_user::sentinel::marker::{self, AgentRun, RunMarker, SentinelNote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let run: Result<AgentRun, String> = marker::parse(data);
    let _: Result<SentinelNote, String> = marker::parse(data);

    let dir = tempfile::tempdir().expect("tempdir");
    let run_path = dir.path().join("agent-run.json");
    // The same bytes as both files: each is parsed on its own and a bad one is set aside alone.
    std::fs::write(&run_path, data).expect("write");
    std::fs::write(dir.path().join("sentinel.json"), data).expect("write");
    let (_marker, gap) = RunMarker::begin(dir.path(), "fuzz");

    let claimed: AgentRun = marker::parse(&std::fs::read(&run_path).expect("a fresh marker")).expect("ours parses");
    assert_eq!(claimed.pid, std::process::id());
    assert_eq!(claimed.stopped_ns, None);
    let set_aside = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("agent-run.corrupt-"));
    assert_eq!(set_aside, run.is_err(), "a bad run marker is set aside, a good one is not");
    if let Some(a) = gap {
        assert_eq!(a.rule, marker::RULE_AGENT_STOPPED);
        assert!(a.output_fields["dcea.down_seconds"].is_number(), "{:?}", a.output_fields);
    }
});
