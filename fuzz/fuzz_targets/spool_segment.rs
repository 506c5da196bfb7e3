//! Arbitrary bytes as a spool segment (a file an earlier, newer, crashed or tampered dcea
//! left in the state dir): the parser must return records and at most one error for any
//! input — never panic — with every record inside the input and checksummed; the spool
//! opened over such a file must replay the readable part and set the file aside.
#![no_main]

use dcea_user::sinks::spool::{self, HEADER_LEN, Spool, parse_segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_segment(data);
    let mut last = HEADER_LEN;
    for r in &parsed.records {
        assert!(r.start >= last && r.end <= data.len() && r.start < r.end, "{r:?} outside the input");
        last = r.end;
    }
    assert!(parsed.end <= data.len().max(HEADER_LEN));
    if parsed.error.is_none() && !data.is_empty() {
        assert_eq!(parsed.end, data.len(), "no error means everything was read");
    }
    // Round trip of what was read.
    let mut again = spool::header().to_vec();
    for r in &parsed.records {
        again.extend(spool::encode_record(&data[r.clone()]));
    }
    let re = parse_segment(&again);
    assert!(re.error.is_none());
    assert_eq!(re.records.len(), parsed.records.len());

    // The spool itself over this file: open, replay, never a panic.
    if let Ok(dir) = tempfile::tempdir() {
        let _ = std::fs::write(dir.path().join("0000000000000001.spool"), data);
        if let Ok((mut s, _warnings)) = Spool::open(dir.path(), 1 << 20) {
            let mut n = 0;
            while let Ok(Some(_)) = s.peek() {
                let _ = s.ack();
                n += 1;
                assert!(n <= parsed.records.len(), "replayed more than the parser found");
            }
        }
    }
});
