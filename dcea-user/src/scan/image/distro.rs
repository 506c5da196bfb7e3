//! Which distribution and release an image is, from its well-known files, and the OSV
//! ecosystem name its packages are published under.

use serde::Serialize;

use super::{error::Result, fs::FsView};
use crate::scan::version::Scheme;

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Distro {
    /// os-release ID (debian, ubuntu, alpine, rhel, almalinux, rocky, ...).
    pub id: String,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
    /// The file it was identified from.
    pub source: String,
}

/// Files probed in order; os-release first, then the distribution-specific ones.
pub const RELEASE_FILES: [&str; 9] = [
    "etc/os-release",
    "usr/lib/os-release",
    "etc/lsb-release",
    "etc/alpine-release",
    "etc/debian_version",
    "etc/redhat-release",
    "etc/centos-release",
    "etc/fedora-release",
    "etc/system-release",
];

fn parse_os_release(text: &str) -> (Option<String>, Option<String>, Option<String>) {
    let (mut id, mut version, mut pretty) = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            "ID" => id = Some(v.to_ascii_lowercase()),
            "VERSION_ID" => version = Some(v),
            "PRETTY_NAME" => pretty = Some(v),
            "DISTRIB_ID" if id.is_none() => id = Some(v.to_ascii_lowercase()),
            "DISTRIB_RELEASE" if version.is_none() => version = Some(v),
            _ => {}
        }
    }
    (id, version, pretty)
}

/// The first number-ish token of a release line ("Rocky Linux release 9.3 (Blue Onyx)").
fn release_number(text: &str) -> Option<String> {
    text.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit())).map(str::to_string)
}

pub fn detect(view: &FsView) -> Result<Option<Distro>> {
    for file in RELEASE_FILES {
        let Some((_, _, bytes)) = view.read(file)? else {
            continue;
        };
        let text = String::from_utf8_lossy(bytes);
        let first = text.lines().next().unwrap_or("").trim().to_string();
        let source = file.to_string();
        let distro = match file {
            "etc/os-release" | "usr/lib/os-release" | "etc/lsb-release" => {
                let (id, version_id, pretty_name) = parse_os_release(&text);
                let Some(id) = id else { continue };
                // Debian testing/sid have no VERSION_ID; debian_version may still say more.
                Distro { id, version_id, pretty_name, source }
            }
            "etc/alpine-release" => Distro {
                id: "alpine".into(),
                version_id: Some(first.clone()),
                pretty_name: Some(format!("Alpine Linux {first}")),
                source,
            },
            "etc/debian_version" => Distro {
                id: "debian".into(),
                version_id: first
                    .split('.')
                    .next()
                    .filter(|m| m.chars().all(|c| c.is_ascii_digit()) && !m.is_empty())
                    .map(str::to_string),
                pretty_name: Some(format!("Debian {first}")),
                source,
            },
            _ => {
                let lower = first.to_ascii_lowercase();
                let id = if lower.contains("rocky") {
                    "rocky"
                } else if lower.contains("alma") {
                    "almalinux"
                } else if lower.contains("centos") {
                    "centos"
                } else if lower.contains("fedora") {
                    "fedora"
                } else if lower.contains("red hat") {
                    "rhel"
                } else if lower.contains("amazon") {
                    "amzn"
                } else {
                    "unknown-rpm"
                };
                Distro { id: id.into(), version_id: release_number(&first), pretty_name: Some(first.clone()), source }
            }
        };
        return Ok(Some(distro));
    }
    Ok(None)
}

impl Distro {
    fn major(&self) -> Option<&str> {
        self.version_id.as_deref().and_then(|v| v.split('.').next())
    }

    fn major_minor(&self) -> Option<String> {
        let v = self.version_id.as_deref()?;
        let mut it = v.split('.');
        Some(format!("{}.{}", it.next()?, it.next().unwrap_or("0")))
    }

    /// The OSV ecosystem (`Debian:12`, `Alpine:v3.19`, `Ubuntu:22.04`, `AlmaLinux:9`).
    pub fn ecosystem(&self) -> Option<String> {
        Some(match self.id.as_str() {
            "debian" => match self.major() {
                Some(m) => format!("Debian:{m}"),
                None => "Debian".into(),
            },
            "ubuntu" => format!("Ubuntu:{}", self.version_id.as_deref()?),
            "alpine" => format!("Alpine:v{}", self.major_minor()?),
            "almalinux" => format!("AlmaLinux:{}", self.major()?),
            "rocky" => format!("Rocky Linux:{}", self.major()?),
            "rhel" => "Red Hat".into(),
            "opensuse-leap" => format!("openSUSE:Leap {}", self.version_id.as_deref()?),
            "sles" => "SUSE".into(),
            "mageia" => format!("Mageia:{}", self.version_id.as_deref()?),
            "wolfi" => "Wolfi".into(),
            "chainguard" => "Chainguard".into(),
            _ => return None,
        })
    }

    /// The version ordering of the distribution's package manager.
    pub fn scheme(&self) -> Option<Scheme> {
        match self.id.as_str() {
            "debian" | "ubuntu" => Some(Scheme::Dpkg),
            "alpine" | "wolfi" | "chainguard" => Some(Scheme::Apk),
            "rhel" | "centos" | "fedora" | "almalinux" | "rocky" | "amzn" | "opensuse-leap" | "sles" | "mageia"
            | "unknown-rpm" => Some(Scheme::Rpm),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, v: &str) -> Distro {
        Distro { id: id.into(), version_id: Some(v.into()), ..Default::default() }
    }

    #[test]
    fn ecosystems() {
        assert_eq!(d("debian", "12").ecosystem().unwrap(), "Debian:12");
        assert_eq!(d("alpine", "3.19.1").ecosystem().unwrap(), "Alpine:v3.19");
        assert_eq!(d("ubuntu", "22.04").ecosystem().unwrap(), "Ubuntu:22.04");
        assert_eq!(d("rocky", "9.3").ecosystem().unwrap(), "Rocky Linux:9");
    }

    #[test]
    fn os_release_parsing() {
        let (id, v, p) =
            parse_os_release("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(id.as_deref(), Some("debian"));
        assert_eq!(v.as_deref(), Some("12"));
        assert_eq!(p.as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
    }
}
