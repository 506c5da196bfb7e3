//! `/proc/<pid>/smaps`: each mapping's header line, and the two counters that say whether its
//! pages are still the page cache's (`Private_Dirty`, `Anonymous`), which is what lets a
//! measurement skip the clean mappings without reading them.
//!
//! The parser takes any text (odd kernels, truncated reads, hostile file names) and never
//! panics: a header line it cannot read is skipped together with the key lines under it.

/// One mapping of a process, as smaps prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The path column as the kernel prints it, without a trailing " (deleted)"; empty for
    /// anonymous mappings; "[heap]", "[stack]", "[vdso]", "[anon:name]" etc. kept verbatim.
    pub path: String,
    /// The path column ended with " (deleted)": an unlinked file, a memfd, or shared
    /// anonymous memory ("/dev/zero (deleted)").
    pub deleted: bool,
    /// `Private_Dirty`: pages this process wrote (or had written for it) since it mapped them.
    pub private_dirty_kb: u64,
    /// `Anonymous`: pages no longer backed by the file (copy-on-write copies).
    pub anonymous_kb: u64,
    /// `Swap`: in a private file mapping only copied pages can be swapped out (file pages are
    /// dropped and read back), so a poked code page pushed to swap still counts.
    pub swap_kb: u64,
}

impl Mapping {
    /// Backed by a file that can be compared with: an inode, and a path rather than a
    /// kernel-named region ("[vdso]") or an anonymous inode ("anon_inode:[perf_event]").
    pub fn file_backed(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// The permission column, "r-xp" style.
    pub fn perms(&self) -> String {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        [flag(self.read, 'r'), flag(self.write, 'w'), flag(self.exec, 'x'), if self.shared { 's' } else { 'p' }]
            .iter()
            .collect()
    }
}

/// What d_path appends to the path of an unlinked file.
const DELETED_SUFFIX: &str = " (deleted)";

/// Every mapping whose header line parses, in the order smaps lists them.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut mappings = Vec::new();
    // None under a malformed header: its key lines belong to no mapping.
    let mut current: Option<Mapping> = None;
    // Not `lines()`: it would also strip a '\r' that ends a file name.
    for line in text.split('\n') {
        if line.is_empty() {
            continue;
        }
        if let Some((key, value)) = key_line(line) {
            if let Some(mapping) = current.as_mut() {
                apply_key(mapping, key, value);
            }
            continue;
        }
        mappings.extend(current.take());
        current = parse_header(line);
    }
    mappings.extend(current);
    mappings
}

/// A "Name: value" line. Header lines never qualify: a '-' and spaces come before their first ':'.
fn key_line(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let is_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    is_key.then_some((key, value))
}

fn apply_key(mapping: &mut Mapping, key: &str, value: &str) {
    match key {
        "Private_Dirty" => mapping.private_dirty_kb = parse_kb(value),
        "Anonymous" => mapping.anonymous_kb = parse_kb(value),
        "Swap" => mapping.swap_kb = parse_kb(value),
        _ => {}
    }
}

/// "   12 kB" as 12. A value that does not parse counts as `u64::MAX`: a mapping whose
/// counters cannot be read is measured rather than skipped as clean.
fn parse_kb(value: &str) -> u64 {
    value.split_ascii_whitespace().next().and_then(dec_u64).unwrap_or(u64::MAX)
}

/// "start-end perms offset major:minor inode [path]".
fn parse_header(line: &str) -> Option<Mapping> {
    let (range, rest) = next_column(line)?;
    let (perms, rest) = next_column(rest)?;
    let (offset, rest) = next_column(rest)?;
    let (device, rest) = next_column(rest)?;
    let (inode, rest) = next_column(rest)?;

    let (start, end) = range.split_once('-')?;
    let (dev_major, dev_minor) = device.split_once(':')?;
    let [read, write, exec, shared] = parse_perms(perms)?;
    // The kernel pads the path column with spaces; all of what follows is the path.
    let column = rest.trim_start_matches(is_column_space);
    let (path, deleted) = match column.strip_suffix(DELETED_SUFFIX) {
        Some(path) => (path, true),
        None => (column, false),
    };
    Some(Mapping {
        start: hex_u64(start)?,
        end: hex_u64(end)?,
        read,
        write,
        exec,
        shared,
        offset: hex_u64(offset)?,
        dev_major: u32::try_from(hex_u64(dev_major)?).ok()?,
        dev_minor: u32::try_from(hex_u64(dev_minor)?).ok()?,
        inode: dec_u64(inode)?,
        path: path.to_string(),
        deleted,
        private_dirty_kb: 0,
        anonymous_kb: 0,
        swap_kb: 0,
    })
}

fn is_column_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The next space-separated column and what follows its one separator (the path column
/// keeps its own spaces). A column may end the line: an anonymous mapping's inode can.
fn next_column(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(is_column_space);
    let (column, rest) = match s.find(is_column_space) {
        Some(at) => (&s[..at], &s[at + 1..]),
        None => (s, ""),
    };
    (!column.is_empty()).then_some((column, rest))
}

/// "r-xp" as [read, write, exec, shared]; anything else is not a permission column.
fn parse_perms(perms: &str) -> Option<[bool; 4]> {
    let &[r, w, x, s] = perms.as_bytes() else { return None };
    let flag = |b: u8, on: u8| match b {
        b'-' => Some(false),
        _ if b == on => Some(true),
        _ => None,
    };
    let shared = match s {
        b's' => true,
        b'p' => false,
        _ => return None,
    };
    Some([flag(r, b'r')?, flag(w, b'w')?, flag(x, b'x')?, shared])
}

/// Hex digits only (`from_str_radix` alone would take a leading '+').
fn hex_u64(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    digits.then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

fn dec_u64(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a dynamically linked process's smaps on 6.x (keys trimmed to a few).
    const SAMPLE: &str = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 08:01 1835041                    /usr/bin/sleep
Size:                  8 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
7f3a1c028000-7f3a1c1a0000 r-xp 00028000 08:01 1837213                    /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1504 kB
Rss:                 900 kB
Private_Clean:         0 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
7f3a1c1f8000-7f3a1c1fc000 r--p 001f7000 08:01 1837213                    /usr/lib/x86_64-linux-gnu/libc.so.6
Size:                 16 kB
Private_Dirty:        16 kB
Anonymous:            16 kB
VmFlags: rd mr mw me ac sd
7f3a1c200000-7f3a1c201000 r-xp 00001000 00:2a 77                         /opt/my app/lib (v2) (deleted)/x.so (deleted)
Private_Dirty:         4 kB
Anonymous:             4 kB
7f3a1c300000-7f3a1c321000 rw-p 00000000 00:00 0                          [heap]
Private_Dirty:       132 kB
Anonymous:           132 kB
7f3a1c400000-7f3a1c410000 rwxp 00000000 00:00 0                          [anon:x]
Anonymous:            64 kB
7f3a1c500000-7f3a1c510000 rw-p 00000000 00:00 0\x20
Anonymous:             8 kB
7ffc5a1f0000-7ffc5a1f2000 r-xp 00000000 00:00 0                          [vdso]
Private_Dirty:         0 kB
";

    #[test]
    fn realistic_sample() {
        let maps = parse_smaps(SAMPLE);
        assert_eq!(maps.len(), 8, "{maps:#?}");

        let text = &maps[1];
        assert_eq!((text.start, text.end, text.offset), (0x7f3a1c028000, 0x7f3a1c1a0000, 0x28000));
        assert_eq!((text.dev_major, text.dev_minor, text.inode), (8, 1, 1837213));
        assert_eq!(text.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(text.perms(), "r-xp");
        assert!(text.file_backed() && !text.deleted);
        assert_eq!((text.private_dirty_kb, text.anonymous_kb), (0, 0));

        let relro = &maps[2];
        assert_eq!(relro.perms(), "r--p");
        assert_eq!((relro.private_dirty_kb, relro.anonymous_kb), (16, 16));

        let spaced = &maps[3];
        assert_eq!(spaced.path, "/opt/my app/lib (v2) (deleted)/x.so", "only the trailing suffix goes");
        assert!(spaced.deleted && spaced.file_backed());
        assert_eq!((spaced.dev_major, spaced.dev_minor), (0, 0x2a));

        assert_eq!(maps[4].path, "[heap]");
        assert!(!maps[4].file_backed());
        assert_eq!(maps[5].path, "[anon:x]");
        assert_eq!(maps[5].perms(), "rwxp");
        assert_eq!(maps[6].path, "", "an anonymous mapping's line ends after its inode");
        assert_eq!(maps[6].anonymous_kb, 8);
        assert_eq!(maps[7].path, "[vdso]");
        assert!(!maps[7].file_backed());
    }

    #[test]
    fn shared_and_wide_device_numbers() {
        let maps = parse_smaps("7f00-8f00 rw-s 00000000 103:fffff 42 /dev/shm/a\n");
        assert_eq!(maps.len(), 1);
        assert!(maps[0].shared && maps[0].write);
        assert_eq!((maps[0].dev_major, maps[0].dev_minor), (0x103, 0xfffff));
        assert_eq!(maps[0].perms(), "rw-s");
    }

    #[test]
    fn malformed_headers_are_skipped_with_their_keys() {
        let text = "\
zz-1000 r-xp 00000000 08:01 5 /bad/range
Private_Dirty:        99 kB
1000-2000 r-xq 00000000 08:01 5 /bad/perms
Anonymous:            99 kB
1000-2000 r-xp 00000000 08:01 +5 /bad/inode
1000-2000 r-xp +0 08:01 5 /bad/offset
1000-2000 r-xp 0 0801 5 /bad/device
1000-2000 r-xp 0 08:100000000 5 /bad/minor
1000-10000000000000000 r-xp 0 08:01 5 /huge/end
1000-2000 r-xp 0 08:01 99999999999999999999 /huge/inode
1000-2000 r-xp 0 08:01
3000-4000 r-xp 00000000 08:01 7 /good
Private_Dirty:         4 kB
";
        let maps = parse_smaps(text);
        assert_eq!(maps.len(), 1, "{maps:#?}");
        assert_eq!(maps[0].path, "/good");
        assert_eq!((maps[0].private_dirty_kb, maps[0].anonymous_kb), (4, 0));
    }

    #[test]
    fn unreadable_counters_count_as_dirty() {
        let text = "1000-2000 r-xp 0 08:01 5 /x\nPrivate_Dirty: lots kB\nAnonymous: 99999999999999999999999 kB\n";
        let maps = parse_smaps(text);
        assert_eq!((maps[0].private_dirty_kb, maps[0].anonymous_kb), (u64::MAX, u64::MAX));
    }

    #[test]
    fn garbage_never_panics() {
        let inputs = [
            "",
            "\n\n\n",
            ":",
            "-",
            " - : ",
            "1000-2000",
            "1000-2000 r-xp",
            "1000-2000 r-xp 0 08:01 5 /truncated\nPrivate_Dir",
            "Private_Dirty: 4 kB\nAnonymous: 4 kB\n",
            "\u{0}\u{1}\u{ff}ÿ-é rwxp 0 0:0 0 /ünïcode\n",
            "1000-2000 r-xp 0 08:01 5 /x (deleted) (deleted)\n",
            "1000-2000 r-xp 0 08:01 5  (deleted)\n",
            "1000-2000 r-xp 0 08:01 5\t\t/tab\r\n",
            "ffffffffffffffff-0 ---p ffffffffffffffff ffffffff:ffffffff 18446744073709551615 x",
        ];
        for input in inputs {
            for mapping in parse_smaps(input) {
                assert!(!mapping.path.starts_with(' '), "{input:?}");
                assert_eq!(mapping.perms().len(), 4);
            }
        }
        let maps = parse_smaps(inputs[7]);
        assert_eq!(maps.len(), 1, "a truncated file keeps its last header");
        let maps = parse_smaps(inputs[10]);
        assert_eq!((maps[0].path.as_str(), maps[0].deleted), ("/x (deleted)", true));
        let maps = parse_smaps(inputs[11]);
        assert_eq!((maps[0].path.as_str(), maps[0].deleted), ("(deleted)", false));
        let maps = parse_smaps(inputs[12]);
        assert_eq!(maps[0].path, "/tab\r", "the path is kept byte for byte");
        let maps = parse_smaps(inputs[13]);
        assert_eq!((maps[0].start, maps[0].end, maps[0].inode), (u64::MAX, 0, u64::MAX));
    }
}
