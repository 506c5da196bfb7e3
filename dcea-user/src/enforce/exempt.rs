//! Containers a rule's exception names as a whole (`container.image.repository in (…)`, a
//! name, a label) never match the rule, so the rule's kernel guard must not act on them either:
//! a nested runtime that mounts sysfs is excepted, and must not be killed at the hook. The
//! pipeline decides each container once, from its first record that carries metadata; the
//! guards it is spared from go into the kernel's exemption map under its cgroup v2 id.
//!
//! Until a container's metadata is known (its first records, milliseconds after start) the
//! kernel acts on it as on any other.

use std::{collections::HashMap, os::unix::fs::MetadataExt, path::Path};

use dcea_common::{Guard, names};

use super::Action;
use crate::rules::{RuleSet, event::EventView};

/// Containers remembered; past this the decisions start over (each is re-made cheaply).
const DECIDED_MAX: usize = 4096;

/// The guards (bit `1 << guard`) whose every acting rule excepts the container of `ev`.
pub fn spared_guards<E: EventView + ?Sized>(rules: &RuleSet, ev: &E) -> u32 {
    let mut mask = 0;
    for g in Guard::ALL {
        let acting: Vec<_> =
            rules.rules().iter().filter(|r| r.enabled && r.guard == Some(g) && r.action != Action::Alert).collect();
        if !acting.is_empty() && acting.iter().all(|r| r.exempts_container(ev)) {
            mask |= 1 << g as u32;
        }
    }
    mask
}

/// Which containers were decided, and the exemptions still to be written to the kernel.
#[derive(Default)]
pub struct Exemptions {
    decided: HashMap<String, u32>,
    /// (cgroup path relative to the cgroup v2 root, guards) for the kernel side.
    pub pending: Vec<(String, u32)>,
}

impl Exemptions {
    /// Decide container `id` (cgroup `cgroup`) from `ev` once.
    pub fn decide<E: EventView + ?Sized>(&mut self, rules: &RuleSet, ev: &E, id: &str, cgroup: &str) {
        if self.decided.contains_key(id) {
            return;
        }
        if self.decided.len() >= DECIDED_MAX {
            self.decided.clear();
        }
        let mask = spared_guards(rules, ev);
        self.decided.insert(id.to_string(), mask);
        if mask != 0 {
            self.pending.push((cgroup.to_string(), mask));
        }
    }

    /// Forget every decision (the rules changed).
    pub fn reset(&mut self) {
        self.decided.clear();
        self.pending.clear();
    }
}

/// Names of the guards in `mask`, for the log.
pub fn describe(mask: u32) -> String {
    Guard::ALL.iter().filter(|g| mask >> **g as u32 & 1 != 0).map(|g| g.name()).collect::<Vec<_>>().join(", ")
}

/// Write one exemption under the cgroup's current id; the cgroup id, or why not.
pub fn write(ebpf: &mut aya::Ebpf, cgroup2: &Path, cgroup: &str, mask: u32) -> Result<u64, String> {
    let rel = super::condemned::record_cgroup(cgroup).ok_or_else(|| format!("cgroup path {cgroup:?}"))?;
    let id = std::fs::metadata(cgroup2.join(rel)).map_err(|e| format!("{cgroup}: {e}"))?.ino();
    let mut map: aya::maps::HashMap<_, u64, u32> = ebpf
        .map_mut(names::EXEMPT_MAP)
        .ok_or_else(|| format!("map {} missing", names::EXEMPT_MAP))
        .and_then(|m| aya::maps::HashMap::try_from(m).map_err(|e| e.to_string()))?;
    map.insert(id, mask, 0).map_err(|e| format!("{}: {e}", names::EXEMPT_MAP))?;
    Ok(id)
}

/// Empty the kernel's exemption map (the rules changed: every container is decided again).
pub fn clear(ebpf: &mut aya::Ebpf) {
    let Some(map) = ebpf.map_mut(names::EXEMPT_MAP) else { return };
    let Ok(mut map) = aya::maps::HashMap::<_, u64, u32>::try_from(map) else { return };
    let keys: Vec<u64> = map.keys().flatten().collect();
    for k in keys {
        let _ = map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{EvtType, SimpleEvent, Source};

    fn rules_with(local: &str) -> RuleSet {
        let mut sources: Vec<_> = crate::rules::BUILTIN_FILES
            .iter()
            .map(|(n, t)| Source { name: n.to_string(), text: t.to_string() })
            .collect();
        sources.push(Source { name: "local.yaml".into(), text: local.into() });
        RuleSet::from_sources(sources).unwrap()
    }

    fn exec_in(repository: &'static str) -> SimpleEvent<'static> {
        let mut e = SimpleEvent::new(EvtType::Execve);
        e.container_id = Some("c0ffee");
        e.container_image_repository = Some(repository);
        e
    }

    const NESTED: &str = "- rule: Kernel pseudo-filesystem mounted in a container\n  exceptions:\n    - name: nested_runtimes\n      values: [docker.io/library/docker]\n  override:\n    exceptions: append\n";

    #[test]
    fn an_image_exception_spares_only_that_image_from_its_guard() {
        let set = rules_with(NESTED);
        assert_eq!(spared_guards(&set, &exec_in("docker.io/library/docker")), 1 << Guard::PseudoFsMount as u32);
        assert_eq!(spared_guards(&set, &exec_in("docker.io/library/alpine")), 0);
        assert_eq!(
            describe(1 << Guard::PseudoFsMount as u32 | 1 << Guard::DeviceNode as u32),
            "pseudo-fs-mount, device-node"
        );
    }

    #[test]
    fn without_exception_values_or_with_event_fields_nothing_is_spared() {
        let set = rules_with("");
        assert_eq!(spared_guards(&set, &exec_in("docker.io/library/docker")), 0);
        // An exception on an event field (proc.name) names events, not containers.
        let by_process = "- rule: Kernel pseudo-filesystem mounted in a container\n  exceptions:\n    - name: by_proc\n      fields: proc.name\n      values: [mount]\n  override:\n    exceptions: append\n";
        let mut e = exec_in("docker.io/library/docker");
        e.name = Some("mount");
        assert_eq!(spared_guards(&rules_with(by_process), &e), 0);
    }

    #[test]
    fn each_container_is_decided_once_and_only_spared_ones_reach_the_kernel() {
        let set = rules_with(NESTED);
        let mut x = Exemptions::default();
        x.decide(&set, &exec_in("docker.io/library/docker"), "a", "system.slice/docker-a.scope");
        x.decide(&set, &exec_in("docker.io/library/docker"), "a", "system.slice/docker-a.scope");
        x.decide(&set, &exec_in("docker.io/library/alpine"), "b", "system.slice/docker-b.scope");
        assert_eq!(x.pending, vec![("system.slice/docker-a.scope".to_string(), 1 << Guard::PseudoFsMount as u32)]);
        x.reset();
        assert!(x.pending.is_empty());
    }
}
