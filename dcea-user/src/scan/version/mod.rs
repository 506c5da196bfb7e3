//! Version ordering of each package manager, ported from its own implementation: a version
//! string means nothing outside the ordering of the ecosystem that produced it.

pub mod apk;
pub mod dpkg;
pub mod rpm;

use std::cmp::Ordering;

/// Which package manager's ordering applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Dpkg,
    Apk,
    Rpm,
}

impl Scheme {
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Dpkg => dpkg::compare(a, b),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Rpm => rpm::compare(a, b),
        }
    }
}
