//! The mapping behind an mprotect record: the kernel sends only the range made executable,
//! and the task's `/proc/<pid>/maps` names the file mapped there (on 6.8+ kernels as the
//! container sees it: the overlay's device, inode and path). The range is read at once, while
//! the caller still maps it; a task gone by then leaves the record without a file.

use std::{collections::HashMap, fs, os::unix::fs::MetadataExt as _, time::Instant};

use dcea_common::{arg, flags};

use super::smaps::{Mapping, parse_smaps};
use crate::monitor::behaviour::DecodedBehaviour;

/// The mapping holding `addr`, from a maps text (smaps' header lines are maps' lines).
pub fn containing(maps: &str, addr: u64) -> Option<Mapping> {
    parse_smaps(maps).into_iter().find(|m| m.start <= addr && addr < m.end)
}

/// What reading the maps found for an mprotect record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    File,
    Anonymous,
    /// The task or the range was gone, or the task's budget was spent.
    Unknown,
}

/// Maps reads each process may cost per second: a JIT runtime flips its code pages' protection
/// often, and each flip is a record; past the budget its records are counted, not read.
const READS_PER_SECOND: u32 = 64;
const PROCESSES_TRACKED: usize = 4096;

/// Fills an mprotect record's file fields from the caller's maps, as the mmap program fills
/// them in the kernel.
#[derive(Default)]
pub struct MappingResolver {
    budget: HashMap<u32, (Instant, u32)>,
    pub over_budget: u64,
}

impl MappingResolver {
    pub fn resolve(&mut self, b: &mut DecodedBehaviour) -> Resolved {
        let Some((start, _)) = b.range else { return Resolved::Unknown };
        let tgid = b.raw.tgid;
        if !self.spend(tgid) {
            self.over_budget += 1;
            return Resolved::Unknown;
        }
        let Ok(maps) = fs::read_to_string(format!("/proc/{tgid}/maps")) else {
            return Resolved::Unknown;
        };
        let Some(m) = containing(&maps, start) else { return Resolved::Unknown };
        if !m.file_backed() {
            return Resolved::Anonymous;
        }
        fill(b, &m);
        Resolved::File
    }

    fn spend(&mut self, tgid: u32) -> bool {
        let now = Instant::now();
        if self.budget.len() >= PROCESSES_TRACKED && !self.budget.contains_key(&tgid) {
            self.budget.retain(|_, (since, _)| now.duration_since(*since).as_secs() < 1);
            if self.budget.len() >= PROCESSES_TRACKED {
                return false;
            }
        }
        let (since, spent) = self.budget.entry(tgid).or_insert((now, 0));
        if now.duration_since(*since).as_secs() >= 1 {
            (*since, *spent) = (now, 0);
        }
        *spent += 1;
        *spent <= READS_PER_SECOND
    }
}

/// The mode comes from the mapped file itself (`map_files`), the identity from the maps line.
/// The filesystem is left unknown (0): the judge then takes the container's root layers,
/// since `map_files` opens an overlay's backing file, not the overlay.
fn fill(b: &mut DecodedBehaviour, m: &Mapping) {
    let link = format!("/proc/{}/map_files/{:x}-{:x}", b.raw.tgid, m.start, m.end);
    b.raw.args[arg::MODE] = fs::metadata(link).map(|md| u64::from(md.mode())).unwrap_or(0);
    b.raw.args[arg::DEV] = u64::from(m.dev_major) << 20 | u64::from(m.dev_minor);
    b.raw.args[arg::MAGIC] = 0;
    b.raw.ino = m.inode;
    if m.deleted || m.path.starts_with("/memfd:") {
        b.raw.flags |= flags::FILE_UNLINKED;
    }
    b.file = Some(m.path.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_range_holding_an_address() {
        let maps = "1000-2000 r--p 00000000 08:01 5 /a\n2000-4000 r-xp 00001000 08:01 5 /a\ngarbage\n\
                    4000-5000 rwxp 00000000 00:00 0 \n";
        assert_eq!(containing(maps, 0x2fff).unwrap().offset, 0x1000);
        assert!(!containing(maps, 0x4000).unwrap().file_backed());
        assert_eq!(containing(maps, 0x5000), None);
    }

    #[test]
    fn budget_limits_each_process_per_second() {
        let mut r = MappingResolver::default();
        assert!((0..READS_PER_SECOND).all(|_| r.spend(7)));
        assert!(!r.spend(7));
        assert!(r.spend(8));
    }
}
