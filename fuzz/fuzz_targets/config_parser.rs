//! Arbitrary bytes as a monitor config file: checking must accept it or return errors that
//! name the file and a place inside it — never panic, never hang (broken YAML, hostile
//! nesting, alias bombs, every key with every kind of value).
#![no_main]

use dcea_user::config::check_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // YAML breaks lines at \n, \r\n and a lone \r: an upper bound of its line count.
    let lines = text.split(['\n', '\r']).count() as u32;
    match check_text("fuzz.yaml", &text) {
        Ok(settings) => assert!(settings as u32 <= lines, "{settings} settings from {lines} lines"),
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert_eq!(e.origin, "fuzz.yaml", "{e}");
                if let Some(p) = e.pos {
                    assert!(p.line >= 1 && p.line <= lines + 1, "{e} is outside the {lines} lines");
                }
            }
        }
    }
});
