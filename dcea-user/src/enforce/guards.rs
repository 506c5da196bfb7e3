//! The kernel's half of each rule's action: one action per guard, written into the guards map
//! before the programs attach (so no event slips through between load and configuration) and
//! again on SIGHUP.

use dcea_common::{GUARDS, Guard, names};

use super::Action;
use crate::rules::RuleSet;

/// The action per guard, in [`Guard`] order.
pub type GuardActions = [Action; GUARDS];

/// Each guard takes the strongest action of the enabled rules that name it; the namespace
/// escape takes `escape`. Without `--enforce` everything is `alert`.
pub fn plan(rules: &RuleSet, enforce: bool, escape: Action) -> GuardActions {
    let mut out = [Action::Alert; GUARDS];
    if !enforce {
        return out;
    }
    out[Guard::HostNamespace as usize] = escape;
    for rule in rules.rules().iter().filter(|r| r.enabled) {
        if let Some(g) = rule.guard {
            out[g as usize] = out[g as usize].max(rule.action);
        }
    }
    out
}

/// Write `actions` into the kernel's guards map.
pub fn write(ebpf: &mut aya::Ebpf, actions: &GuardActions) -> Result<(), String> {
    let map = ebpf.map_mut(names::GUARDS_MAP).ok_or_else(|| format!("map {} missing", names::GUARDS_MAP))?;
    let mut array: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    for (i, a) in actions.iter().enumerate() {
        array.set(i as u32, a.kernel(), 0).map_err(|e| format!("{}: {e}", names::GUARDS_MAP))?;
    }
    Ok(())
}

/// `release-agent=kill-container, core-pattern=alert, …` for the start-up report.
pub fn describe(actions: &GuardActions) -> String {
    Guard::ALL.iter().map(|g| format!("{}={}", g.name(), actions[*g as usize])).collect::<Vec<_>>().join(", ")
}

/// `RULE=ACTION` from `--action` (the rule's name may itself hold `=`: the last one splits).
pub fn parse_override(s: &str) -> Result<(String, Action), String> {
    let (rule, action) = s.rsplit_once('=').ok_or_else(|| format!("{s:?}: expected RULE=ACTION"))?;
    let action = Action::parse(action)
        .ok_or_else(|| format!("{s:?}: unknown action {action:?} (alert, kill-process, kill-container)"))?;
    let rule = rule.trim();
    if rule.is_empty() {
        return Err(format!("{s:?}: the rule name is empty"));
    }
    Ok((rule.to_string(), action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{LoadOptions, RuleSet};

    fn defaults() -> RuleSet {
        RuleSet::load(&LoadOptions::default()).expect("default rules")
    }

    #[test]
    fn the_default_rules_guard_every_kernel_decidable_technique_with_kill_container() {
        let rules = defaults();
        let plan = plan(&rules, true, Action::KillContainer);
        for g in Guard::ALL {
            assert_eq!(plan[g as usize], Action::KillContainer, "{}: {}", g.name(), describe(&plan));
        }
        assert!(super::plan(&rules, false, Action::KillContainer).iter().all(|a| *a == Action::Alert));
    }

    #[test]
    fn an_override_weakens_only_its_rules_guard() {
        let mut rules = defaults();
        rules.set_action("Kernel core_pattern written", Action::Alert).unwrap();
        let plan = plan(&rules, true, Action::KillProcess);
        assert_eq!(plan[Guard::CorePattern as usize], Action::Alert);
        assert_eq!(plan[Guard::ReleaseAgent as usize], Action::KillContainer);
        assert_eq!(plan[Guard::HostNamespace as usize], Action::KillProcess);
        assert!(rules.set_action("No such rule", Action::Alert).is_err());
    }

    #[test]
    fn overrides_parse_with_clear_errors() {
        assert_eq!(parse_override("A=b=alert").unwrap(), ("A=b".into(), Action::Alert));
        assert_eq!(parse_override(" X = kill-process").unwrap(), ("X".into(), Action::KillProcess));
        assert!(parse_override("X").unwrap_err().contains("RULE=ACTION"));
        assert!(parse_override("X=nuke").unwrap_err().contains("unknown action"));
        assert!(parse_override("=alert").unwrap_err().contains("empty"));
    }
}
