//! Host settings that change whether a kernel bug is reachable from a container: unprivileged
//! user namespaces, unprivileged BPF, cgroup v1, kernel build options.

use std::{collections::BTreeMap, fs, io::Read, path::Path};

use serde::Serialize;

use super::rules::Prerequisite;

#[derive(Clone, Debug, Default, Serialize)]
pub struct HostFacts {
    /// CONFIG_* options that are `y` or `m`; `None` when no config could be read.
    #[serde(skip)]
    pub config: Option<BTreeMap<String, String>>,
    pub config_source: Option<String>,
    /// Debian/Ubuntu `kernel.unprivileged_userns_clone`.
    pub unprivileged_userns_clone: Option<u64>,
    pub max_user_namespaces: Option<u64>,
    /// Ubuntu 23.10+ `kernel.apparmor_restrict_unprivileged_userns`.
    pub apparmor_restrict_userns: Option<u64>,
    pub unprivileged_bpf_disabled: Option<u64>,
    /// A cgroup v1 hierarchy is mounted.
    pub cgroup_v1: Option<bool>,
}

/// What a prerequisite means for exposure on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// The bug cannot be reached here (e.g. the code is not built in).
    Blocked(String),
    /// Harder to reach (needs more than an unprivileged container process).
    Reduced(String),
    /// The condition holds.
    Open(String),
    Unknown(String),
}

fn read_u64(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Parse a kernel .config: `CONFIG_X=y|m|"str"|123`; `# CONFIG_X is not set` is simply absent.
pub fn parse_kconfig(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (k.starts_with("CONFIG_") && v != "n").then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn read_config(release: &str) -> Option<(BTreeMap<String, String>, String)> {
    if let Ok(f) = fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        // A truncated or corrupt archive falls through to /boot.
        if flate2::read::GzDecoder::new(f).read_to_string(&mut text).is_ok() && !text.is_empty() {
            return Some((parse_kconfig(&text), "/proc/config.gz".into()));
        }
    }
    let boot = format!("/boot/config-{release}");
    let text = fs::read_to_string(Path::new(&boot)).ok()?;
    Some((parse_kconfig(&text), boot))
}

impl HostFacts {
    pub fn gather(release: &str) -> HostFacts {
        let (config, config_source) = match read_config(release) {
            Some((c, s)) => (Some(c), Some(s)),
            None => (None, None),
        };
        let cgroup_v1 = fs::read_to_string("/proc/self/mountinfo").ok().map(|m| {
            m.lines()
                .any(|l| l.split_once(" - ").is_some_and(|(_, post)| post.split_whitespace().next() == Some("cgroup")))
        });
        HostFacts {
            config,
            config_source,
            unprivileged_userns_clone: read_u64("/proc/sys/kernel/unprivileged_userns_clone"),
            max_user_namespaces: read_u64("/proc/sys/user/max_user_namespaces"),
            apparmor_restrict_userns: read_u64("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            unprivileged_bpf_disabled: read_u64("/proc/sys/kernel/unprivileged_bpf_disabled"),
            cgroup_v1,
        }
    }

    fn config_has(&self, option: &str) -> Option<bool> {
        self.config.as_ref().map(|c| c.contains_key(option))
    }

    pub fn exposure(&self, p: &Prerequisite) -> Exposure {
        use Exposure::*;
        match p {
            Prerequisite::Config { option } => match self.config_has(option) {
                Some(true) => Open(format!("{option} is enabled ({})", self.config_source.as_deref().unwrap_or("?"))),
                Some(false) => Blocked(format!(
                    "{option} is not set in {}: the vulnerable code is not built",
                    self.config_source.as_deref().unwrap_or("the kernel config")
                )),
                None => Unknown(format!("{option}: no /proc/config.gz or /boot/config-* to check")),
            },
            Prerequisite::UnprivilegedUserns => {
                if self.config_has("CONFIG_USER_NS") == Some(false) {
                    return Blocked("CONFIG_USER_NS is not set: no user namespaces".into());
                }
                if self.unprivileged_userns_clone == Some(0) {
                    return Reduced("kernel.unprivileged_userns_clone=0: unprivileged users cannot create user namespaces (a container with CAP_SYS_ADMIN still can)".into());
                }
                if self.max_user_namespaces == Some(0) {
                    return Reduced("user.max_user_namespaces=0: no user namespaces can be created".into());
                }
                if self.apparmor_restrict_userns == Some(1) {
                    return Reduced("kernel.apparmor_restrict_unprivileged_userns=1: unconfined processes get no capabilities in new user namespaces".into());
                }
                Open(format!(
                    "unprivileged user namespaces are allowed (user.max_user_namespaces={}{}); Docker's default seccomp profile still blocks unshare(CLONE_NEWUSER) in containers",
                    self.max_user_namespaces.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
                    self.unprivileged_userns_clone.map(|v| format!(", kernel.unprivileged_userns_clone={v}")).unwrap_or_default()
                ))
            }
            Prerequisite::UnprivilegedBpf => match self.unprivileged_bpf_disabled {
                Some(0) => Open("kernel.unprivileged_bpf_disabled=0: any user can load BPF programs".into()),
                Some(v) => Reduced(format!("kernel.unprivileged_bpf_disabled={v}: only CAP_BPF/CAP_SYS_ADMIN can load BPF programs")),
                None => Unknown("kernel.unprivileged_bpf_disabled not readable".into()),
            },
            Prerequisite::CgroupV1 => match self.cgroup_v1 {
                Some(true) => Open("cgroup v1 hierarchies are mounted (release_agent exists)".into()),
                Some(false) => Reduced("no cgroup v1 hierarchy is mounted (an attacker needs CAP_SYS_ADMIN in a user namespace to mount one)".into()),
                None => Unknown("/proc/self/mountinfo not readable".into()),
            },
            Prerequisite::Capability { capability } => Open(format!(
                "needs {capability} in the container{}",
                if capability == "CAP_NET_RAW" { " (Docker grants it by default)" } else { "" }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kconfig_parsing() {
        let c = parse_kconfig(
            "CONFIG_USER_NS=y\n# CONFIG_WATCH_QUEUE is not set\nCONFIG_NF_TABLES=m\nCONFIG_X=n\ngarbage\n=y\n",
        );
        assert!(c.contains_key("CONFIG_USER_NS"));
        assert!(c.contains_key("CONFIG_NF_TABLES"));
        assert!(!c.contains_key("CONFIG_WATCH_QUEUE"));
        assert!(!c.contains_key("CONFIG_X"));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn exposures() {
        let mut h = HostFacts {
            config: Some(parse_kconfig("CONFIG_USER_NS=y\nCONFIG_NF_TABLES=y\n")),
            config_source: Some("test".into()),
            max_user_namespaces: Some(1000),
            unprivileged_bpf_disabled: Some(2),
            cgroup_v1: Some(true),
            ..Default::default()
        };
        let watch = Prerequisite::Config { option: "CONFIG_WATCH_QUEUE".into() };
        assert!(matches!(h.exposure(&watch), Exposure::Blocked(_)));
        assert!(matches!(h.exposure(&Prerequisite::Config { option: "CONFIG_NF_TABLES".into() }), Exposure::Open(_)));
        assert!(matches!(h.exposure(&Prerequisite::UnprivilegedUserns), Exposure::Open(_)));
        assert!(matches!(h.exposure(&Prerequisite::UnprivilegedBpf), Exposure::Reduced(_)));
        h.unprivileged_userns_clone = Some(0);
        assert!(matches!(h.exposure(&Prerequisite::UnprivilegedUserns), Exposure::Reduced(_)));
        h.config = None;
        assert!(matches!(h.exposure(&watch), Exposure::Unknown(_)));
    }

    #[test]
    fn gather_on_this_host_does_not_panic() {
        let h = HostFacts::gather("no-such-release");
        // /proc/sys/user/max_user_namespaces exists on every kernel with user namespaces.
        assert!(h.max_user_namespaces.is_some() || h.config_has("CONFIG_USER_NS") == Some(false));
    }
}
