//! Arbitrary bytes as /proc/<pid>/smaps (odd kernels, truncated reads, hostile file names):
//! parsing never panics, and each mapping it returns is what its header line says: printed
//! back the way the kernel prints it, the line parses to the same mapping.
#![no_main]

use dcea_user::integrity::smaps::{Mapping, parse_smaps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mappings = parse_smaps(&text);
    assert!(mappings.len() <= text.split('\n').count());
    for m in &mappings {
        // " (deleted)" is taken off once, and only at the end; a path that still ends with it
        // was a deleted file named so.
        assert!(m.deleted || !m.path.ends_with(" (deleted)"), "{m:?}");
        assert!(!m.deleted || !m.path.is_empty(), "{m:?}");
        assert!(!m.path.starts_with([' ', '\t']) && !m.path.contains('\n'), "{m:?}");
        assert_eq!(m.perms().len(), 4);
        assert_eq!(m.file_backed(), m.inode != 0 && m.path.starts_with('/'));
        let reparsed = parse_smaps(&header_of(m));
        let header_only = Mapping { private_dirty_kb: 0, anonymous_kb: 0, ..m.clone() };
        assert_eq!(reparsed, [header_only], "{:?}", header_of(m));
    }
});

/// The header line as show_map_vma prints it.
fn header_of(m: &Mapping) -> String {
    let deleted = if m.deleted { " (deleted)" } else { "" };
    format!(
        "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {:<26} {}{deleted}\n",
        m.start,
        m.end,
        m.perms(),
        m.offset,
        m.dev_major,
        m.dev_minor,
        m.inode,
        m.path
    )
}
