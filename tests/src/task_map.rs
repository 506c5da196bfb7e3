//! The agent's per-task map (`DCEA_TASKS`), reached from a test through the running agent's
//! file descriptors. Rewriting a task's record stands in for what a kernel exploit does to
//! the task itself: the agent's checks compare the live `task_struct` with the record, so a
//! record that says "uid 1000, cred X" for a task that is root with cred Y is exactly what the
//! kernel sees after `task->real_cred` was swapped — without a kernel module to swap it.

use std::fs;

use aya::maps::{HashMap, Map, MapData, MapInfo};
use dcea_common::{TaskState, names};

/// The `DCEA_TASKS` map of the agent running as `agent_pid`.
pub fn of_agent(agent_pid: u32) -> HashMap<MapData, u32, TaskState> {
    let dir = format!("/proc/{agent_pid}/fdinfo");
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let Ok(info) = fs::read_to_string(entry.expect("fdinfo entry").path()) else { continue };
        let Some(id) = info.lines().find_map(|l| l.strip_prefix("map_id:")).and_then(|v| v.trim().parse().ok()) else {
            continue;
        };
        let is_tasks = MapInfo::from_id(id).is_ok_and(|i| i.name_as_str() == Some(names::TASKS_MAP));
        if is_tasks {
            let data = MapData::from_id(id).unwrap_or_else(|e| panic!("map {id}: {e}"));
            return HashMap::try_from(Map::LruHashMap(data)).expect("DCEA_TASKS is an LRU hash of TaskState");
        }
    }
    panic!("agent {agent_pid} holds no {} map", names::TASKS_MAP)
}

/// The record of task `tid`, waiting up to 2 s for the kernel to create it.
pub fn record(map: &HashMap<MapData, u32, TaskState>, tid: u32) -> TaskState {
    for _ in 0..100 {
        if let Ok(state) = map.get(&tid, 0) {
            return state;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no {} record for task {tid}", names::TASKS_MAP)
}
