//! A workload's process allowlist: the programs it runs, and what happens to one it does not.
//! Stored as YAML that a person can read, diff and keep in git.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// What a profile does with an exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every program the workload runs is added.
    Learn,
    /// A program not in the profile raises an alert.
    Monitor,
    /// A program not in the profile is killed in the kernel before it runs, and alerted on.
    Enforce,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Learn => "learn",
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

/// One program of the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The executable's path inside the container (a script's interpreter).
    pub path: String,
    /// The process name after the exec (comm: the executed name's basename), which tells a
    /// multi-call binary's applets and the scripts one interpreter runs apart.
    pub name: String,
    /// The file's SHA-256 as the integrity module measured it (the image's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The parent's name when it was learned (informative; not matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl Entry {
    /// Why the entry cannot be stored, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !self.path.starts_with('/') || self.path.len() > PATH_LEN_MAX || self.path.contains('\0') {
            return Err(format!("path {:?} is not an absolute path", self.path));
        }
        if self.name.is_empty() || self.name.len() > NAME_LEN_MAX || self.name.contains(['\0', '/']) {
            return Err(format!("name {:?} is not a process name (1 to 15 bytes, no '/')", self.name));
        }
        if let Some(h) = &self.sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("sha256 {h:?} is not 64 hex digits"));
        }
        if self.parent.as_ref().is_some_and(|p| p.len() > NAME_LEN_MAX || p.contains('\0')) {
            return Err(format!("parent {:?} is not a process name", self.parent));
        }
        Ok(())
    }
}

/// Entries a profile holds at most: a workload that runs more programs than this is not one
/// an allowlist describes, and learning stops adding (it is said in the log).
pub const MAX_ENTRIES: usize = 4096;
/// The kernel's comm: 15 bytes and a NUL.
pub const NAME_LEN_MAX: usize = 15;
const PATH_LEN_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// The workload key ([`super::key`]).
    pub workload: String,
    pub mode: Mode,
    /// When learning ends (RFC 3339); absent: learning goes on until the profile is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learn_until: Option<String>,
    /// What the profile becomes when learning ends.
    #[serde(default = "default_after")]
    pub after: Mode,
    /// Kill the runtime's execs into the container (`docker exec`) in enforce mode too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_runtime_exec: bool,
    pub created: String,
    pub updated: String,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

fn default_after() -> Mode {
    Mode::Monitor
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Profile {
    /// A new profile, learning for `learn` (None: until promoted), then becoming `after`.
    pub fn new(name: &str, workload: &str, learn: Option<Duration>, after: Mode, now: SystemTime) -> Profile {
        Profile {
            name: name.to_string(),
            workload: workload.to_string(),
            mode: Mode::Learn,
            learn_until: learn.map(|d| rfc3339(now + d)),
            after,
            block_runtime_exec: false,
            created: rfc3339(now),
            updated: rfc3339(now),
            entries: Vec::new(),
        }
    }

    pub fn parse(text: &str) -> Result<Profile, String> {
        let p: Profile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        p.validate()?;
        Ok(p)
    }

    pub fn to_yaml(&self) -> String {
        let body = serde_yaml::to_string(self).unwrap_or_default();
        format!(
            "# dcea process allowlist of workload {}\n# mode: learn | monitor | enforce; `dcea profile promote {} --to MODE` changes it in the running agent.\n{body}",
            self.workload, self.name
        )
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.starts_with('.') || self.name.contains('/') {
            return Err(format!("profile name {:?} is not a file name", self.name));
        }
        if self.workload.is_empty() {
            return Err("workload is empty".into());
        }
        if self.after == Mode::Learn {
            return Err("after: learn (what learning becomes must be monitor or enforce)".into());
        }
        if let Some(t) = &self.learn_until {
            humantime::parse_rfc3339_weak(t).map_err(|e| format!("learn_until {t:?}: {e}"))?;
        }
        if self.entries.len() > MAX_ENTRIES {
            return Err(format!("{} entries (at most {MAX_ENTRIES})", self.entries.len()));
        }
        for (i, e) in self.entries.iter().enumerate() {
            e.check().map_err(|why| format!("entry {}: {why}", i + 1))?;
        }
        Ok(())
    }

    /// The mode at `now`: a learning profile whose time is up is its `after` mode.
    pub fn mode_at(&self, now: SystemTime) -> Mode {
        match (&self.mode, &self.learn_until) {
            (Mode::Learn, Some(t)) if humantime::parse_rfc3339_weak(t).is_ok_and(|t| now >= t) => self.after,
            (m, _) => *m,
        }
    }

    pub fn find(&self, path: &str, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path && e.name == name)
    }

    /// Add a learned entry; false when it was known or the profile is full.
    pub fn learn(&mut self, entry: Entry, now: SystemTime) -> bool {
        if entry.check().is_err() || self.find(&entry.path, &entry.name).is_some() || self.entries.len() >= MAX_ENTRIES
        {
            return false;
        }
        self.entries.push(entry);
        self.updated = rfc3339(now);
        true
    }

    /// Set the mode by hand: learning then lasts until told again.
    pub fn set_mode(&mut self, mode: Mode, now: SystemTime) {
        self.mode = mode;
        if mode != Mode::Learn {
            self.learn_until = None;
        }
        self.updated = rfc3339(now);
    }
}

/// Whether an exec of `path` as `name`, whose file the integrity module measured as `sha256`
/// (None: an unchanged image file, or not measured), is one the profile allows.
pub fn allows(profile: &Profile, path: &str, name: &str, sha256: Option<&str>) -> bool {
    match profile.find(path, name) {
        None => false,
        Some(e) => match (&e.sha256, sha256) {
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn entry(path: &str, name: &str) -> Entry {
        Entry { path: path.into(), name: name.into(), sha256: None, parent: Some("sh".into()) }
    }

    #[test]
    fn a_profile_round_trips_through_yaml() {
        let mut p = Profile::new(
            "web-01020304",
            "docker/web@sha256:1/web",
            Some(Duration::from_secs(3600)),
            Mode::Enforce,
            at(0),
        );
        assert!(p.learn(entry("/bin/busybox", "ls"), at(1)));
        assert!(!p.learn(entry("/bin/busybox", "ls"), at(2)), "known");
        assert!(p.learn(Entry { sha256: Some("a".repeat(64)), ..entry("/usr/bin/python3", "python3") }, at(3)));
        let text = p.to_yaml();
        assert!(text.starts_with("# dcea process allowlist"), "{text}");
        assert_eq!(Profile::parse(&text).expect("parse"), p);
    }

    #[test]
    fn learning_ends_at_its_time_and_becomes_the_after_mode() {
        let mut p = Profile::new("w-1", "k", Some(Duration::from_secs(60)), Mode::Enforce, at(0));
        assert_eq!(p.mode_at(at(59)), Mode::Learn);
        assert_eq!(p.mode_at(at(60)), Mode::Enforce);
        let forever = Profile::new("w-1", "k", None, Mode::Monitor, at(0));
        assert_eq!(forever.mode_at(at(10_000_000)), Mode::Learn);
        p.set_mode(Mode::Monitor, at(5));
        assert_eq!((p.mode_at(at(6)), p.learn_until.as_deref()), (Mode::Monitor, None));
    }

    #[test]
    fn entries_are_matched_by_path_name_and_hash() {
        let mut p = Profile::new("w-1", "k", None, Mode::Monitor, at(0));
        p.learn(Entry { sha256: Some("ab".repeat(32)), ..entry("/app/run", "run") }, at(1));
        p.learn(entry("/bin/busybox", "ls"), at(1));
        assert!(allows(&p, "/app/run", "run", None), "an unchanged image file");
        assert!(allows(&p, "/app/run", "run", Some(&"AB".repeat(32))));
        assert!(!allows(&p, "/app/run", "run", Some(&"cd".repeat(32))), "another file at the path");
        assert!(!allows(&p, "/bin/busybox", "sh", None), "another applet of the same binary");
        assert!(!allows(&p, "/tmp/x", "x", None));
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let good = Profile::new("w-1", "k", None, Mode::Monitor, at(0)).to_yaml();
        for (text, want) in [
            ("", "missing field"),
            ("name: [", "expected a string"),
            (&good.replace("mode: learn", "mode: sometimes"), "unknown variant"),
            (&good.replace("name: w-1", "name: ../x"), "not a file name"),
            (&good.replace("entries: []", "entries:\n- path: bin/sh\n  name: sh"), "absolute path"),
            (&good.replace("entries: []", "entries:\n- path: /bin/sh\n  name: a-name-longer-than-15"), "process name"),
            (&good.replace("entries: []", "entries:\n- path: /bin/sh\n  name: sh\n  sha256: xyz"), "64 hex"),
            (&good.replace("entries: []", "entries:\n- path: /bin/sh\n  name: sh\n  color: red"), "unknown field"),
            (&good.replace("after: monitor", "after: learn"), "after: learn"),
        ] {
            let err = Profile::parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
