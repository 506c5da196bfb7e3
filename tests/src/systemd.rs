//! deploy/systemd/dcea.service read as systemd reads it, and its [Service] sandbox rebuilt with
//! util-linux (unshare, mount, setpriv) where systemd is not PID 1 and cannot start it. Every
//! directive must be emulated or named as not a sandbox setting: one added to the unit
//! without either is a panic.

use std::process::Command;

/// `(section, key, value)` in file order; continuation lines joined.
pub fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        } else {
            panic!("unit line is neither a section nor key=value: {raw}");
        }
    }
    out
}

pub fn service_value<'u>(unit: &'u [(String, String, String)], key: &str) -> Option<&'u str> {
    unit.iter().find(|(s, k, _)| s == "Service" && k == key).map(|(_, _, v)| v.as_str())
}

/// Directives of the service manager, not of the sandbox: tested by what the test does with
/// the agent (start, SIGHUP, SIGTERM), not emulated.
const MANAGER: &[&str] = &[
    "Type",
    "ExecStart",
    "ExecReload",
    "Restart",
    "RestartSec",
    "KillSignal",
    "TimeoutStopSec",
    "SyslogIdentifier",
    "StateDirectory",
    "StateDirectoryMode",
];

/// Resource limits: applied with prlimit when this process may raise them (the development
/// machine's bounding set lacks CAP_SYS_RESOURCE, so a higher hard limit cannot be set here).
const LIMITS: &[(&str, &str)] = &[("LimitMEMLOCK", "--memlock"), ("LimitNOFILE", "--nofile")];

/// The sandbox as a shell script run by `unshare --mount --propagation slave`, ending in
/// `exec` of `command` (already quoted). `state_dir` plays StateDirectory= (the one writable
/// path). Returns the script and what could not be applied here.
pub fn sandbox_script(unit: &[(String, String, String)], state_dir: &str, command: &str) -> (String, Vec<String>) {
    let mut setup = String::from("set -e\n");
    let mut wrap: Vec<String> = Vec::new();
    let mut not_applied = Vec::new();
    let mut rw_paths = vec![state_dir.to_string()];
    let inaccessible = |paths: &[&str]| -> String {
        paths
            .iter()
            .map(|p| format!("if [ -d {p} ]; then mount -t tmpfs -o ro,mode=000,size=4k tmpfs {p}; fi\n"))
            .collect()
    };
    for (section, key, value) in unit.iter().filter(|(s, _, _)| s == "Service") {
        let _ = section;
        let yes = value == "yes" || value == "true";
        match key.as_str() {
            k if MANAGER.contains(&k) => {}
            "ProtectSystem" => {
                assert_eq!(value, "strict", "only ProtectSystem=strict is emulated");
                // Everything read-only but the API filesystems (systemd.exec(5)).
                setup.push_str(
                    "for mp in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do\n\
                     case \"$mp\" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac\n\
                     mount -o remount,bind,ro \"$mp\" 2>/dev/null || true\n\
                     done\n",
                );
            }
            "ReadWritePaths" => rw_paths.extend(value.split_whitespace().map(|p| p.trim_start_matches('-').to_string())),
            // systemd.exec(5): /proc/sys, /proc/sysrq-trigger and friends, and all of /sys,
            // read-only (every mount below /sys too).
            "ProtectKernelTunables" if yes => setup.push_str(
                "for p in /proc/sys /proc/sysrq-trigger /proc/latency_stats /proc/fs /proc/irq /proc/bus /proc/acpi /proc/scsi; do\n\
                 if [ -e $p ]; then mount --bind $p $p; mount -o remount,bind,ro $p; fi\n\
                 done\n\
                 for mp in $(awk '$5 ~ \"^/sys\" {print $5}' /proc/self/mountinfo | sort -u); do mount -o remount,bind,ro \"$mp\"; done\n",
            ),
            "ProtectControlGroups" if yes => setup.push_str(
                "for mp in $(awk '$5 ~ \"^/sys/fs/cgroup\" {print $5}' /proc/self/mountinfo | sort -u); do mount -o remount,bind,ro \"$mp\"; done\n",
            ),
            "ProtectHome" if yes => setup.push_str(&inaccessible(&["/home", "/root", "/run/user"])),
            "PrivateTmp" if yes => setup.push_str("mount -t tmpfs tmpfs /tmp\nmount -t tmpfs tmpfs /var/tmp\n"),
            "ProtectKernelModules" if yes => setup.push_str(&inaccessible(&["/lib/modules", "/usr/lib/modules"])),
            "ProtectKernelLogs" if yes => setup.push_str(
                "for f in /proc/kmsg /dev/kmsg; do if [ -e $f ]; then mount --bind /dev/null $f; fi; done\n",
            ),
            // Its capability part is the bounding set below; its syscall filter (clock_settime,
            // adjtimex) cannot be installed without systemd, and dcea never sets the clock.
            "ProtectClock" if yes => not_applied.push("ProtectClock= system call filter".into()),
            "NoNewPrivileges" if yes => wrap.push("setpriv --no-new-privs".into()),
            // A UTS namespace of its own; its system-call filter (sethostname) is not
            // installed here, and dcea never sets the host name.
            "ProtectHostname" if yes => wrap.insert(0, "unshare --uts --".into()),
            "UMask" => setup.push_str(&format!("umask {value}\n")),
            "CapabilityBoundingSet" => {
                let caps: Vec<String> =
                    value.split_whitespace().map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())).collect();
                wrap.push(format!("setpriv --bounding-set=-all,{}", caps.join(",")));
            }
            k if LIMITS.iter().any(|(l, _)| *l == k) => {
                let opt = LIMITS.iter().find(|(l, _)| *l == k).unwrap().1;
                let v = if value == "infinity" { "unlimited".to_string() } else { value.clone() };
                let probe = Command::new("prlimit")
                    .arg(format!("{opt}={v}:{v}"))
                    .arg("true")
                    .stderr(std::process::Stdio::null())
                    .status();
                if probe.is_ok_and(|s| s.success()) {
                    wrap.insert(0, format!("prlimit {opt}={v}:{v}"));
                } else {
                    not_applied.push(format!("{key}={value} (this process may not raise the hard limit)"));
                }
            }
            other => panic!("{other}={value}: no emulation in tests/src/systemd.rs; add one or say why not"),
        }
    }
    for p in &rw_paths {
        setup.push_str(&format!("if [ -e {p} ]; then mount --bind {p} {p}; mount -o remount,bind,rw {p}; fi\n"));
    }
    let script = format!("{setup}exec {} {command}\n", wrap.join(" "));
    (script, not_applied)
}

/// `unshare` running `script`: a mount namespace of its own that still receives the host's
/// mounts, as systemd sets one up for a sandboxed service.
pub fn sandboxed(script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "slave", "--", "sh", "-c", script]);
    cmd
}

/// Single-quote `s` for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
