//! Installed packages from the package manager databases in the final filesystem.

pub mod apk;
pub mod dpkg;
pub mod rpm;

use serde::Serialize;

use super::{error::Result, fs::FsView};

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// Source package (Debian `Source:`, apk origin, rpm source rpm name).
    pub source: String,
    /// Source version when it differs from the binary's (binNMUs: `5.2.15-2` for `+b8`).
    pub source_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// "dpkg", "apk" or "rpm".
    pub manager: &'static str,
    /// The database file the package was read from.
    pub db: String,
    /// OSV ecosystem, filled in once the distribution is known.
    pub ecosystem: Option<String>,
    /// Index of the layer that last wrote the database entry for this package.
    pub layer: usize,
}

/// Paths whose contents the package readers need (directories end with `/`).
pub const DB_PATHS: [&str; 6] =
    [dpkg::STATUS, dpkg::STATUS_D, apk::INSTALLED, apk::INSTALLED_USR, rpm::SQLITE, rpm::SQLITE_OLD];

pub fn wanted(path: &str) -> bool {
    DB_PATHS.iter().any(|p| match p.strip_suffix('/') {
        Some(dir) => path.strip_prefix(dir).is_some_and(|r| r.starts_with('/')),
        None => path == *p,
    })
}

#[derive(Debug, Default, Serialize)]
pub struct Inventory {
    pub packages: Vec<Package>,
    /// Databases found but not read (rpm Berkeley DB / NDB).
    pub unsupported: Vec<String>,
}

pub fn collect(view: &FsView) -> Result<Inventory> {
    let mut inv = Inventory::default();
    inv.packages.extend(dpkg::read(view)?);
    inv.packages.extend(apk::read(view)?);
    inv.packages.extend(rpm::read(view)?);
    inv.unsupported.extend(rpm::unsupported(view)?);
    inv.packages.sort_by(|a, b| a.name.cmp(&b.name).then(a.arch.cmp(&b.arch)));
    Ok(inv)
}
