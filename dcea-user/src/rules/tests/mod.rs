//! Rules engine tests: the language (Falco's documented examples), errors with positions,
//! and every default rule against a positive and a nearest-benign event.

mod defaults;
mod errors;
mod language;

use super::*;

/// Load in-memory files named `a.yaml`, `b.yaml`, … (no defaults).
pub(super) fn load(texts: &[&str]) -> Result<RuleSet, RulesError> {
    RuleSet::from_sources(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Source { name: format!("{}.yaml", (b'a' + i as u8) as char), text: t.to_string() })
            .collect(),
    )
}

pub(super) fn load_ok(texts: &[&str]) -> RuleSet {
    load(texts).unwrap_or_else(|e| panic!("{e}"))
}

/// The errors of loading `texts`, as `file:line:col: message` strings.
pub(super) fn errors(texts: &[&str]) -> Vec<String> {
    match load(texts) {
        Ok(_) => panic!("expected errors, rules loaded"),
        Err(e) => e.errors.iter().map(|d| d.to_string()).collect(),
    }
}

/// Names of the enabled rules matching `ev`.
pub(super) fn hits<E: EventView + ?Sized>(set: &RuleSet, ev: &E) -> Vec<String> {
    set.matching(ev).map(|r| r.name.clone()).collect()
}
