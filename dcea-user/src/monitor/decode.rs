//! Ring-buffer records to [`Event`]s.

use dcea_common::{EVENT_SIZE, EXE_COMPONENT_LEN, Event, EventKind, Hook, flags};

use crate::sys::c_bytes_to_string;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event ({EVENT_SIZE})")]
    Short(usize),
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown hook {0}")]
    Hook(u32),
}

/// Copy a record out of the ring buffer and check its discriminants.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < EVENT_SIZE {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; Event is plain data valid for any bit pattern; unaligned read.
    let ev: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) };
    // Behaviour records have their own layout (monitor::behaviour).
    EventKind::from_u32(ev.kind).filter(|k| *k != EventKind::Behaviour).ok_or(DecodeError::Kind(ev.kind))?;
    Hook::from_u32(ev.hook).ok_or(DecodeError::Hook(ev.hook))?;
    Ok(ev)
}

/// The executable path from the kernel's leaf-first components; `None` when the kernel had
/// none (no mm, or offsets missing on this kernel).
pub fn exe_path(ev: &Event) -> Option<String> {
    components_path(&ev.exe, ev.flags & flags::EXE_TRUNCATED != 0)
}

/// "/a/b/c" from leaf-first path components ("…/" in front when the kernel's walk was cut).
/// Empty slots are skipped: the kernel's walk leaves one where it crossed a mount point, and
/// fills the rest of the array with them.
pub fn components_path<const N: usize>(components: &[[u8; EXE_COMPONENT_LEN]; N], truncated: bool) -> Option<String> {
    let parts: Vec<String> = components.iter().map(|c| c_bytes_to_string(c)).filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return None;
    }
    let mut path = String::new();
    if truncated {
        path.push('…');
    }
    for p in parts.iter().rev() {
        path.push('/');
        path.push_str(p);
    }
    Some(path)
}

/// "/<parent>/<leaf>" of the task's cgroup as the kernel saw it.
pub fn cgroup_path(ev: &Event) -> String {
    cgroup_path_of(&ev.cgroup, &ev.cgroup_parent)
}

pub fn cgroup_path_of(leaf: &[u8], parent: &[u8]) -> String {
    let leaf = c_bytes_to_string(leaf);
    let parent = c_bytes_to_string(parent);
    match (parent.is_empty(), leaf.is_empty()) {
        (_, true) => String::new(),
        (true, false) => format!("/{leaf}"),
        (false, false) => format!("/{parent}/{leaf}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use dcea_common::EXE_COMPONENTS;

    use super::*;

    pub(crate) fn zeroed() -> Event {
        // SAFETY: plain data.
        unsafe { std::mem::zeroed() }
    }

    pub(crate) fn bytes_of(ev: &Event) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data struct.
        unsafe { std::slice::from_raw_parts((ev as *const Event).cast::<u8>(), EVENT_SIZE) }.to_vec()
    }

    fn put(dst: &mut [u8], s: &str) {
        dst[..s.len()].copy_from_slice(s.as_bytes());
    }

    #[test]
    fn round_trip_and_validation() {
        let mut ev = zeroed();
        ev.kind = EventKind::Transition as u32;
        ev.hook = Hook::Setns as u32;
        ev.pid = 42;
        ev.new.ns[0] = 7;
        let bytes = bytes_of(&ev);
        let back = decode(&bytes).expect("decode");
        assert_eq!(back.pid, 42);
        assert_eq!(back.new.ns[0], 7);
        // ring buffer records may be padded: longer is fine, shorter is not
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(decode(&longer).is_ok());
        assert_eq!(decode(&bytes[..100]).err(), Some(DecodeError::Short(100)));
        let mut bad = ev;
        bad.kind = 99;
        assert_eq!(decode(&bytes_of(&bad)).err(), Some(DecodeError::Kind(99)));
        let mut bad = ev;
        bad.hook = 0;
        assert_eq!(decode(&bytes_of(&bad)).err(), Some(DecodeError::Hook(0)));
    }

    #[test]
    fn exe_and_cgroup_paths() {
        let mut ev = zeroed();
        assert_eq!(exe_path(&ev), None);
        put(&mut ev.exe[0], "nsenter");
        put(&mut ev.exe[1], "bin");
        put(&mut ev.exe[2], "usr");
        assert_eq!(exe_path(&ev).as_deref(), Some("/usr/bin/nsenter"));
        for i in 0..EXE_COMPONENTS {
            ev.exe[i] = [0; EXE_COMPONENT_LEN];
            put(&mut ev.exe[i], "d");
        }
        ev.flags = flags::EXE_TRUNCATED;
        assert_eq!(exe_path(&ev).as_deref(), Some("…/d/d/d/d/d/d/d/d"));
        // non-UTF-8 bytes are replaced, not fatal
        ev.exe[0] = [0xff; EXE_COMPONENT_LEN];
        assert!(exe_path(&ev).unwrap().ends_with('\u{FFFD}'));

        assert_eq!(cgroup_path(&ev), "");
        put(&mut ev.cgroup, "abc");
        assert_eq!(cgroup_path(&ev), "/abc");
        put(&mut ev.cgroup_parent, "docker");
        assert_eq!(cgroup_path(&ev), "/docker/abc");
    }
}
