//! The kernel's map of the agent's and the sentinel's threads (tid → role), kept in step with
//! /proc: a thread started since the last sync is protected by its process's tgid until then.

use std::collections::HashMap;

use aya::maps::HashMap as BpfHashMap;
use dcea_common::{agent_role, names};

/// Thread ids of `pid`, the process itself first (empty once it is gone).
pub fn thread_ids(pid: u32) -> Vec<u32> {
    let mut tids = vec![pid];
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        tids.extend(dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).filter(|t| *t != pid));
    }
    tids
}

/// What the map should hold for the agent and its sentinel.
pub fn wanted(agent: u32, sentinel: Option<u32>) -> HashMap<u32, u32> {
    let mut want: HashMap<u32, u32> = thread_ids(agent).into_iter().map(|t| (t, agent_role::AGENT)).collect();
    if let Some(s) = sentinel {
        for t in thread_ids(s) {
            want.entry(t).or_insert(agent_role::SENTINEL);
        }
    }
    want.into_iter().take(agent_role::MAX_THREADS as usize).collect()
}

/// Make the kernel's map equal `want`.
pub fn sync(ebpf: &mut aya::Ebpf, want: &HashMap<u32, u32>) -> Result<(), String> {
    let map = ebpf.map_mut(names::SELF_MAP).ok_or_else(|| format!("map {} missing", names::SELF_MAP))?;
    let mut map: BpfHashMap<_, u32, u32> = BpfHashMap::try_from(map).map_err(|e| e.to_string())?;
    let stale: Vec<u32> = map.keys().flatten().filter(|k| !want.contains_key(k)).collect();
    for k in stale {
        let _ = map.remove(&k);
    }
    for (tid, role) in want {
        if map.get(tid, 0).ok() != Some(*role) {
            map.insert(tid, role, 0).map_err(|e| format!("protecting thread {tid}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_threads_are_the_agent() {
        let t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)));
        let me = std::process::id();
        let want = wanted(me, None);
        assert_eq!(want.get(&me), Some(&agent_role::AGENT));
        assert!(want.len() >= 2, "the spawned thread is listed: {want:?}");
        assert!(want.values().all(|r| *r == agent_role::AGENT));
        t.join().unwrap();
        assert!(thread_ids(u32::MAX - 1).len() == 1, "a missing pid lists only itself");
    }
}
