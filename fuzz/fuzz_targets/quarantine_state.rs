//! Arbitrary bytes as the quarantine state under `--state-dir/quarantine/` (a record, which a
//! crash mid-write or someone with the state dir may have written, and the append-only events
//! log the running agent reads): parsing returns a value or an error, never panics; loading a
//! bad record sets it aside; the events reader takes every complete line once, as an event or
//! a reported problem, and never re-reads what it consumed.
#![no_main]

use dcea_user::quarantine::state::{self, EventReader, Store};
use libfuzzer_sys::fuzz_target;

const ID: &str = "abababababababababababababababababababababababababababababababab";

fuzz_target!(|data: &[u8]| {
    let parsed = state::parse_record(data);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::new(dir.path());
    std::fs::create_dir_all(&store.dir).expect("mkdir");
    let path = store.dir.join(format!("{ID}.json"));
    std::fs::write(&path, data).expect("write");
    match store.load(ID) {
        Ok(Some(r)) => assert_eq!(Ok(r), parsed, "load and parse agree"),
        Ok(None) => panic!("a written record is found"),
        Err(e) => {
            assert!(parsed.is_err(), "{e}");
            assert!(path.with_extension("json.corrupt").exists(), "a bad record is set aside");
        }
    }

    let (events, errors, used) = state::parse_events(data);
    assert!(used <= data.len());
    assert!(used == 0 || data[used - 1] == b'\n', "only whole lines are consumed");
    let lines = data[..used].split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
    assert_eq!(events.len() + errors.len(), lines, "every line is an event or a problem");

    std::fs::remove_file(store.dir.join(state::OFFSET_FILE)).ok();
    std::fs::write(store.dir.join(state::EVENTS_FILE), b"").expect("write");
    let mut reader = EventReader::open(store.clone());
    std::fs::write(store.dir.join(state::EVENTS_FILE), data).expect("write");
    let (read, problems) = reader.read_new();
    assert_eq!((read.len(), problems.len()), (events.len(), errors.len()));
    assert!(reader.read_new().0.is_empty(), "nothing is read twice");
});
