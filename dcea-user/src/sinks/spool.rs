//! The on-disk spool of a network sink: alerts that could not be delivered wait here, in
//! order, until the receiver is back.
//!
//! A spool is a directory of segment files `<16 hex digits>.spool`, oldest first. A segment
//! is a header (`DCEASPL\0`, version u32 LE, reserved u32) and records of `len u32 LE,
//! crc32 u32 LE, payload` (the alert's JSON). Writes are fsync'd in batches; the reader's
//! position is kept in `cursor` so a restart does not deliver the acknowledged part again.
//! A segment that is truncated, corrupt or from a newer version is renamed to
//! `*.spool.rejected` (what could be read before the damage is delivered) and never crashes
//! the agent.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub const MAGIC: &[u8; 8] = b"DCEASPL\0";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 16;
const RECORD_HEADER: usize = 8;
/// Larger than any alert; a length beyond it is corruption, not a record.
pub const MAX_RECORD: usize = 1 << 20;
const SEGMENT_BYTES: u64 = 4 << 20;
const SYNC_EVERY_RECORDS: u32 = 64;
const SYNC_EVERY: Duration = Duration::from_millis(200);
const CURSOR_EVERY_ACKS: u32 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("not a dcea spool segment (bad magic)")]
    BadMagic,
    #[error("written by a newer dcea (spool format {0}, this one reads {VERSION})")]
    NewerVersion(u32),
    #[error("truncated mid-record at byte {0}")]
    Truncated(usize),
    #[error("corrupt record at byte {at}: {why}")]
    Corrupt { at: usize, why: &'static str },
}

/// The records of a segment (byte ranges of their payloads) up to the first damage.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<std::ops::Range<usize>>,
    /// Where the valid part ends.
    pub end: usize,
    pub error: Option<SegmentError>,
}

pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Check a whole segment's header and records (also the fuzz target's entry point).
pub fn parse_segment(bytes: &[u8]) -> Parsed {
    if bytes.len() < HEADER_LEN {
        return Parsed { error: Some(SegmentError::Truncated(bytes.len())), ..Default::default() };
    }
    if &bytes[..8] != MAGIC {
        return Parsed { error: Some(SegmentError::BadMagic), ..Default::default() };
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version > VERSION {
        return Parsed { error: Some(SegmentError::NewerVersion(version)), ..Default::default() };
    }
    if version == 0 {
        return Parsed { error: Some(SegmentError::Corrupt { at: 8, why: "version 0" }), ..Default::default() };
    }
    let mut p = parse_records(bytes, HEADER_LEN);
    if p.end == HEADER_LEN && p.records.is_empty() && p.error.is_none() {
        p.end = HEADER_LEN;
    }
    p
}

/// Records from `start` to the end of `bytes`.
pub fn parse_records(bytes: &[u8], start: usize) -> Parsed {
    let mut p = Parsed { end: start, ..Default::default() };
    let mut at = start;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + RECORD_HEADER) else {
            p.error = Some(SegmentError::Truncated(at));
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_RECORD {
            p.error = Some(SegmentError::Corrupt { at, why: "impossible record length" });
            break;
        }
        let body = at + RECORD_HEADER;
        let Some(payload) = bytes.get(body..body + len) else {
            p.error = Some(SegmentError::Truncated(at));
            break;
        };
        if crc32fast::hash(payload) != crc {
            p.error = Some(SegmentError::Corrupt { at, why: "checksum mismatch" });
            break;
        }
        p.records.push(body..body + len);
        at = body + len;
        p.end = at;
    }
    p
}

pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + payload.len());
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

#[derive(Debug)]
struct Segment {
    /// Bytes and records not yet acknowledged.
    bytes: u64,
    records: u64,
    /// Where reading stops (the damage, for a rejected segment).
    valid_end: u64,
    damaged: Option<SegmentError>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segments: BTreeMap<u64, Segment>,
    writer: Option<(u64, BufWriter<File>, u64)>,
    /// The segment and offset of the next record to deliver.
    read: (u64, u64),
    /// Read ahead from the read segment: (offset after the record, payload).
    ahead: VecDeque<(u64, Vec<u8>)>,
    unsynced: u32,
    last_sync: Instant,
    acks: u32,
    pub overflow: u64,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.spool"))
}

impl Spool {
    /// Open (creating) the spool in `dir`; returns warnings about segments set aside.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, Vec<String>)> {
        fs::create_dir_all(dir)?;
        let mut warnings = Vec::new();
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(id) = name.strip_suffix(".spool").and_then(|h| u64::from_str_radix(h, 16).ok()) else { continue };
            let bytes = fs::read(&path)?;
            let parsed = parse_segment(&bytes);
            match &parsed.error {
                Some(e @ (SegmentError::BadMagic | SegmentError::NewerVersion(_))) => {
                    warnings.push(set_aside(&path, e, 0));
                    continue;
                }
                Some(e) => warnings.push(format!(
                    "spool segment {}: {e}: its {} readable records are delivered, then it is set aside as {name}.rejected",
                    path.display(),
                    parsed.records.len()
                )),
                None => {}
            }
            segments.insert(
                id,
                Segment {
                    bytes: (parsed.end.saturating_sub(HEADER_LEN)) as u64,
                    records: parsed.records.len() as u64,
                    valid_end: parsed.end as u64,
                    damaged: parsed.error,
                },
            );
        }
        let first = segments.keys().next().copied().unwrap_or(0);
        let mut read = (first, HEADER_LEN as u64);
        if let Some((seg, off)) = read_cursor(dir)
            && let Some(s) = segments.get_mut(&seg)
            && off >= HEADER_LEN as u64
            && off <= s.valid_end
        {
            // Acknowledged before the restart: not delivered again.
            let bytes = fs::read(segment_path(dir, seg))?;
            let skipped = parse_records(&bytes[..s.valid_end as usize], HEADER_LEN)
                .records
                .iter()
                .filter(|r| (r.end as u64) <= off)
                .count() as u64;
            s.records -= skipped.min(s.records);
            s.bytes = s.valid_end - off;
            read = (seg, off);
            segments.retain(|&id, _| id >= seg);
        }
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segments,
            writer: None,
            read,
            ahead: VecDeque::new(),
            unsynced: 0,
            last_sync: Instant::now(),
            acks: 0,
            overflow: 0,
        };
        Ok((spool, warnings))
    }

    pub fn depth(&self) -> u64 {
        self.segments.values().map(|s| s.records).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.depth() == 0
    }

    fn bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// Store one payload. Past 90 % of the bound only Critical (and higher) alerts are taken,
    /// so a storm of lesser alerts cannot crowd an escape out; past the bound, none.
    /// Returns whether it was stored (a refusal is counted in `overflow`).
    pub fn append(&mut self, payload: &[u8], critical: bool) -> io::Result<bool> {
        let record = encode_record(payload);
        let used = self.bytes() + record.len() as u64;
        let limit = if critical { self.max_bytes } else { self.max_bytes / 10 * 9 };
        if used > limit {
            self.overflow += 1;
            return Ok(false);
        }
        let rotate = self.writer.as_ref().is_none_or(|(_, _, size)| *size >= SEGMENT_BYTES);
        if rotate {
            self.sync()?;
            let id = self.segments.keys().next_back().map_or(0, |l| l + 1).max(self.read.0);
            let path = segment_path(&self.dir, id);
            let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
            f.write_all(&header())?;
            if self.segments.is_empty() {
                self.read = (id, HEADER_LEN as u64);
            }
            self.segments.insert(id, Segment { bytes: 0, records: 0, valid_end: HEADER_LEN as u64, damaged: None });
            self.writer = Some((id, BufWriter::new(f), HEADER_LEN as u64));
        }
        let Some((id, w, size)) = self.writer.as_mut() else { return Ok(false) };
        w.write_all(&record)?;
        *size += record.len() as u64;
        if let Some(s) = self.segments.get_mut(id) {
            s.bytes += record.len() as u64;
            s.records += 1;
            s.valid_end = *size;
        }
        self.unsynced += 1;
        Ok(true)
    }

    /// fsync what was appended (batched: at most every 64 records or 200 ms).
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        if self.unsynced >= SYNC_EVERY_RECORDS || (self.unsynced > 0 && self.last_sync.elapsed() >= SYNC_EVERY) {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if let Some((_, w, _)) = self.writer.as_mut() {
            w.flush()?;
            if self.unsynced > 0 {
                w.get_ref().sync_data()?;
            }
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// The oldest record not yet acknowledged.
    pub fn peek(&mut self) -> io::Result<Option<&[u8]>> {
        while self.ahead.is_empty() {
            let (seg, off) = self.read;
            let Some(s) = self.segments.get(&seg) else { return Ok(None) };
            if off >= s.valid_end {
                let writing = self.writer.as_ref().is_some_and(|(id, _, _)| *id == seg);
                if writing {
                    return Ok(None);
                }
                self.finish_segment(seg)?;
                continue;
            }
            if let Some((id, w, _)) = self.writer.as_mut()
                && *id == seg
            {
                w.flush()?;
            }
            let mut f = File::open(segment_path(&self.dir, seg))?;
            f.seek(SeekFrom::Start(off))?;
            let mut buf = Vec::new();
            f.take((s.valid_end - off).min(SEGMENT_BYTES + MAX_RECORD as u64)).read_to_end(&mut buf)?;
            let parsed = parse_records(&buf, 0);
            if parsed.records.is_empty() {
                // The damage the open found; or the file changed under us.
                let s = self.segments.get_mut(&seg).expect("checked above");
                s.valid_end = off;
                continue;
            }
            for r in parsed.records {
                self.ahead.push_back((off + r.end as u64, buf[r].to_vec()));
            }
        }
        Ok(self.ahead.front().map(|(_, p)| p.as_slice()))
    }

    /// The record [`Spool::peek`] returned was delivered.
    pub fn ack(&mut self) -> io::Result<()> {
        let Some((end, payload)) = self.ahead.pop_front() else { return Ok(()) };
        let seg = self.read.0;
        if let Some(s) = self.segments.get_mut(&seg) {
            s.records = s.records.saturating_sub(1);
            s.bytes = s.bytes.saturating_sub((payload.len() + RECORD_HEADER) as u64);
        }
        self.read.1 = end;
        self.acks += 1;
        if self.acks >= CURSOR_EVERY_ACKS {
            self.save_cursor()?;
        }
        Ok(())
    }

    fn finish_segment(&mut self, seg: u64) -> io::Result<()> {
        let path = segment_path(&self.dir, seg);
        if let Some(s) = self.segments.remove(&seg) {
            match &s.damaged {
                Some(e) => {
                    // Outside the macro: a disabled log level must not skip the rename.
                    let msg = set_aside(&path, e, s.valid_end);
                    tracing::warn!("{msg}");
                }
                None => fs::remove_file(&path)
                    .or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })?,
            }
        }
        let next = self.segments.keys().next().copied().unwrap_or(seg + 1);
        self.read = (next, HEADER_LEN as u64);
        self.save_cursor()
    }

    /// Persist the read position (write then rename: never a half-written cursor).
    pub fn save_cursor(&mut self) -> io::Result<()> {
        self.acks = 0;
        let tmp = self.dir.join("cursor.tmp");
        fs::write(&tmp, format!("{:016x} {}\n", self.read.0, self.read.1))?;
        fs::rename(tmp, self.dir.join("cursor"))
    }
}

fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(dir.join("cursor")).ok()?;
    let (seg, off) = text.trim().split_once(' ')?;
    Some((u64::from_str_radix(seg, 16).ok()?, off.parse().ok()?))
}

fn set_aside(path: &Path, e: &SegmentError, delivered_up_to: u64) -> String {
    let to = PathBuf::from(format!("{}.rejected", path.display()));
    let moved = fs::rename(path, &to).map(|()| format!("set aside as {}", to.display()));
    format!(
        "spool segment {}: {e}; {} (bytes up to {delivered_up_to} delivered; the rest is kept there for inspection)",
        path.display(),
        moved.unwrap_or_else(|err| format!("could not be set aside ({err}); it is ignored"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Spool) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(p) = s.peek().unwrap() {
            out.push(String::from_utf8(p.to_vec()).unwrap());
            s.ack().unwrap();
        }
        out
    }

    #[test]
    fn replays_in_order_across_segments_and_restarts_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, w) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(w.is_empty());
        for i in 0..10 {
            assert!(s.append(format!("alert-{i}").as_bytes(), false).unwrap());
        }
        s.sync().unwrap();
        assert_eq!(s.depth(), 10);
        for i in 0..4 {
            assert_eq!(s.peek().unwrap().unwrap(), format!("alert-{i}").as_bytes());
            s.ack().unwrap();
        }
        s.save_cursor().unwrap();
        drop(s);
        let (mut s, _) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.depth(), 6);
        s.append(b"alert-10", true).unwrap();
        let got = drain(&mut s);
        assert_eq!(got, (4..=10).map(|i| format!("alert-{i}")).collect::<Vec<_>>());
        assert!(s.is_empty());
    }

    #[test]
    fn bound_keeps_room_for_critical_and_counts_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1000).unwrap();
        let payload = [b'x'; 92]; // 100 bytes a record
        let stored = (0..20).filter(|_| s.append(&payload, false).unwrap()).count();
        assert_eq!(stored, 9);
        assert!(s.append(&payload, true).unwrap(), "the last tenth is kept for Critical");
        assert!(!s.append(&payload, true).unwrap());
        assert_eq!(s.overflow, 12);
    }

    #[test]
    fn damaged_segments_are_set_aside_and_their_good_part_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mut good = header().to_vec();
        good.extend(encode_record(b"first"));
        good.extend(encode_record(b"second"));
        let mut truncated = good.clone();
        truncated.truncate(truncated.len() - 3);
        fs::write(segment_path(dir.path(), 1), &truncated).unwrap();
        let mut corrupt = good.clone();
        let n = corrupt.len();
        corrupt[n - 1] ^= 0xff;
        fs::write(segment_path(dir.path(), 2), &corrupt).unwrap();
        let mut newer = good.clone();
        newer[8] = 9;
        fs::write(segment_path(dir.path(), 3), &newer).unwrap();
        fs::write(segment_path(dir.path(), 4), b"garbage").unwrap();
        let (mut s, warnings) = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("newer dcea (spool format 9")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("truncated mid-record")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("checksum mismatch")), "{warnings:?}");
        assert_eq!(drain(&mut s), ["first", "first"]);
        let rejected = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().to_string_lossy().ends_with(".rejected"))
            .count();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(rejected, 4, "{names:?}");
    }

    #[test]
    fn parser_rejects_impossible_lengths() {
        let mut seg = header().to_vec();
        seg.extend_from_slice(&u32::MAX.to_le_bytes());
        seg.extend_from_slice(&[0; 4]);
        let p = parse_segment(&seg);
        assert!(matches!(p.error, Some(SegmentError::Corrupt { at: 16, .. })), "{p:?}");
        assert!(p.records.is_empty());
    }
}
