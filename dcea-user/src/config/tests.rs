use std::{collections::HashMap, ffi::OsString, io::Write};

use super::{
    CliError, ConfigError, check_text, default_config,
    keys::{self, SUBCOMMAND},
    layers::{command_line_values, merged_matches, parse_cli_from},
    render,
};
use crate::cli::{Cli, Command};

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn temp_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write config");
    f
}

/// What the monitor is given, as comparable text (every field of the options, and the log).
fn options(cli: &Cli) -> String {
    match &cli.command {
        Command::Monitor(m) => format!("{:?} log={}", m.options(), cli.log),
        other => panic!("not the monitor: {other:?}"),
    }
}

fn monitor(args: &[&str], env: &dyn Fn(&str) -> Option<OsString>) -> Result<Cli, CliError> {
    parse_cli_from(["dcea", "monitor"].iter().chain(args), env)
}

fn monitor_ok(args: &[&str], env: &dyn Fn(&str) -> Option<OsString>) -> Cli {
    monitor(args, env).unwrap_or_else(|e| panic!("dcea monitor {args:?}: {e:?}"))
}

fn config_errors(text: &str) -> Vec<ConfigError> {
    check_text("dcea.yaml", text).expect_err(&format!("should be invalid:\n{text}"))
}

fn one_error(text: &str) -> String {
    let errors = config_errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors[0].to_string()
}

#[test]
fn every_monitor_flag_has_a_key() {
    let cmd = keys::cli_command();
    let keys: Vec<String> = keys::settings(&cmd).into_iter().map(|s| s.key).collect();
    for want in [
        "log",
        "btf",
        "host_ns_pid",
        "enforce",
        "commit_creds",
        "max_tasks",
        "format",
        "rules_dir",
        "no_default_rules",
        "mode",
        "interval",
        "state_dir",
    ] {
        assert!(keys.iter().any(|k| k == want), "no config key {want} in {keys:?}");
    }
    assert!(!keys.iter().any(|k| k == "config" || k == "help"), "{keys:?}");
    // Every argument of the monitor but --config/--help is a setting: none is forgotten.
    let monitor = cmd.find_subcommand(SUBCOMMAND).expect("monitor");
    assert_eq!(keys.len(), monitor.get_arguments().count() - 2, "{keys:?}");
}

#[test]
fn default_config_round_trips() {
    let text = default_config();
    let with_default =
        keys::settings(&keys::cli_command()).iter().filter(|s| !s.arg.get_default_values().is_empty()).count();
    assert_eq!(check_text("default", &text), Ok(with_default), "{text}");
    let f = temp_config(&text);
    let from_file = monitor_ok(&["--config", f.path().to_str().unwrap()], &no_env);
    let plain = monitor_ok(&["--config", "/dev/null"], &no_env);
    assert_eq!(options(&from_file), options(&plain), "{text}");
    // Commented: the help, the flag and the variable of each setting.
    assert!(text.contains("# flag --max-tasks, environment DCEA_MAX_TASKS\nmax_tasks: 32768\n"), "{text}");
    assert!(text.contains("# host_ns_pid: PID\n"), "{text}");
    assert!(text.replace("\n# ", " ").contains("One of: auto, ebpf, poll."), "{text}");
}

/// A configuration rendered from flags reads back as the same options the flags give.
#[test]
fn non_default_settings_round_trip() {
    let args = [
        "--log=debug",
        "--enforce",
        "--max-tasks=4096",
        "--host-ns-pid=4242",
        "--interval=750ms",
        "--mode=poll",
        "--format=text",
        "--state-dir=/tmp/dcea state #1",
        "--rules-dir=/srv/rules: local",
        "--no-default-rules",
        "--commit-creds=kprobe",
        "--btf=/sys/kernel/btf/vmlinux",
    ];
    let argv: Vec<&str> = ["dcea", "monitor"].into_iter().chain(args).collect();
    let by_flags = parse_cli_from(&argv, &no_env).expect("flags");
    let matches = merged_matches(&argv, &no_env).expect("matches");
    let sub = matches.subcommand_matches(SUBCOMMAND).expect("monitor");
    let settings = keys::settings(&keys::cli_command());
    let text = render::render(&settings, |s| Some(command_line_values(sub, s)).filter(|v| !v.is_empty()));
    let f = temp_config(&text);
    let by_file = monitor_ok(&["--config", f.path().to_str().unwrap()], &no_env);
    assert_eq!(options(&by_file), options(&by_flags), "{text}");
    assert!(options(&by_file).contains("max_tasks: 4096"), "{}", options(&by_file));
    assert!(text.contains("state_dir: \"/tmp/dcea state #1\""), "{text}");
}

#[test]
fn environment_beats_flags_beats_file_beats_default() {
    let f = temp_config("max_tasks: 4096\nmode: poll\n");
    let path = f.path().to_str().unwrap();
    let env: HashMap<&str, &str> = [("DCEA_MAX_TASKS", "16384")].into();
    let env = |k: &str| env.get(k).map(OsString::from);
    let all = monitor_ok(&["--config", path, "--max-tasks", "8192"], &env);
    assert!(options(&all).contains("max_tasks: 16384"), "{}", options(&all));
    assert!(options(&all).contains("mode: Poll"), "the file still sets what nothing else does");
    let flags = monitor_ok(&["--config", path, "--max-tasks", "8192"], &no_env);
    assert!(options(&flags).contains("max_tasks: 8192"), "{}", options(&flags));
    let file = monitor_ok(&["--config", path], &no_env);
    assert!(options(&file).contains("max_tasks: 4096"), "{}", options(&file));
    let default = monitor_ok(&["--config", "/dev/null"], &no_env);
    assert!(options(&default).contains("max_tasks: 32768"), "{}", options(&default));

    // A flag the file turns on, the environment turns off.
    let f = temp_config("enforce: true\n");
    let path = f.path().to_str().unwrap();
    assert!(options(&monitor_ok(&["--config", path], &no_env)).contains("enforce: true"));
    let off = |k: &str| (k == "DCEA_ENFORCE").then(|| OsString::from("false"));
    assert!(options(&monitor_ok(&["--config", path, "--enforce"], &off)).contains("enforce: false"));
}

#[test]
fn bad_environment_values_name_the_variable() {
    let env = |k: &str| (k == "DCEA_MAX_TASKS").then(|| OsString::from("lots"));
    let Err(CliError::Config(errors)) = monitor(&["--config", "/dev/null"], &env) else { panic!("should fail") };
    assert_eq!(errors.len(), 1, "{errors:?}");
    let text = errors[0].to_string();
    assert!(text.starts_with("environment variable DCEA_MAX_TASKS: max_tasks: invalid value 'lots'"), "{text}");
}

#[test]
fn a_missing_explicit_config_is_an_error() {
    let Err(CliError::Config(errors)) = monitor(&["--config", "/nonexistent/dcea.yaml"], &no_env) else {
        panic!("should fail")
    };
    assert!(errors[0].to_string().contains("/nonexistent/dcea.yaml: cannot read the config file"), "{errors:?}");
}

#[test]
fn other_subcommands_ignore_the_config() {
    let cli = parse_cli_from(["dcea", "rules", "fields"], &no_env).expect("rules fields");
    assert!(matches!(cli.command, Command::Rules { .. }));
}

#[test]
fn unknown_keys_are_positioned_with_a_hint() {
    let e = one_error("mode: auto\n\nmax_task: 5000\n");
    assert_eq!(
        e,
        "dcea.yaml:3:1: max_task: unknown key `max_task` (did you mean `max_tasks`?); `dcea config default` lists every key"
    );
}

#[test]
fn wrong_types_are_positioned() {
    assert_eq!(
        one_error("enforce: false\nmax_tasks: many\n"),
        "dcea.yaml:2:12: max_tasks: invalid value 'many': invalid digit found in string"
    );
    let e = one_error("max-tasks: 12\n");
    assert!(e.starts_with("dcea.yaml:1:12: max-tasks: invalid value '12': 12 is not in 1024..=4194304"), "{e}");
    assert_eq!(
        one_error("# comment\nmode: fast\n"),
        "dcea.yaml:2:7: mode: invalid value 'fast' (possible values: auto, ebpf, poll)"
    );
    assert_eq!(one_error("enforce: yes\n"), "dcea.yaml:1:10: enforce: expected true or false, found 'yes'");
    assert_eq!(
        one_error("interval: 1ms\n"),
        "dcea.yaml:1:11: interval: invalid value '1ms': the interval must be between 100ms and 1h"
    );
    assert_eq!(one_error("mode: [auto, poll]\n"), "dcea.yaml:1:8: mode: takes one value, found a list of 2");
    assert_eq!(
        one_error("state_dir:\n  path: /x\n"),
        "dcea.yaml:2:3: state_dir: expected a value or a list of values, found a mapping"
    );
    assert_eq!(
        one_error("mode: []\n"),
        "dcea.yaml:1:7: mode: an empty list cannot be expressed as flags: leave the key out for the default"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let errors = config_errors("mode: fast\nmax_tasks: x\nnope: 1\nenforce: maybe\nformat: json\n");
    let lines: Vec<u32> = errors.iter().map(|e| e.pos.expect("positioned").line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2, 3, 4], "{errors:#?}");
}

#[test]
fn duplicate_keys_in_either_spelling() {
    assert_eq!(
        one_error("max_tasks: 4096\nmode: poll\nmax-tasks: 8192\n"),
        "dcea.yaml:3:1: max-tasks: `max_tasks` is already set on line 1"
    );
}

#[test]
fn malformed_files_are_positioned() {
    let e = one_error("mode: auto\nmax_tasks: [1, 2\n");
    assert!(e.starts_with("dcea.yaml:"), "{e}");
    let pos = config_errors("mode: auto\nmax_tasks: [1, 2\n")[0].pos.expect("pos");
    assert!(pos.line >= 2, "{pos:?}");
    assert_eq!(
        one_error("- mode\n- auto\n"),
        "dcea.yaml:1:1: expected a mapping of settings (`key: value` lines), found a list"
    );
    assert_eq!(one_error("mode: auto\n---\nmode: poll\n"), "dcea.yaml:3:1: one YAML document expected, found several");
    assert_eq!(one_error("? [a, b]\n: 1\n"), "dcea.yaml:1:3: a key must be a setting name, found a list");
    let tab = one_error("mode: auto\n\tenforce: true\n");
    assert!(tab.starts_with("dcea.yaml:1:") && tab.contains("tab"), "{tab}");
    let quote = one_error("mode: auto\nstate_dir: \"/var/lib\n");
    assert!(quote.starts_with("dcea.yaml:2:") || quote.starts_with("dcea.yaml:3:"), "{quote}");
}

#[test]
fn empty_and_null_mean_defaults() {
    assert_eq!(check_text("x", ""), Ok(0));
    assert_eq!(check_text("x", "# nothing\n"), Ok(0));
    assert_eq!(check_text("x", "---\n"), Ok(0));
    assert_eq!(check_text("x", "host_ns_pid: ~\nmode:\n"), Ok(0));
}

#[test]
fn kebab_case_and_lists_are_accepted() {
    assert_eq!(check_text("x", "max-tasks: 4096\nrules-dir: [/etc/dcea/rules.d]\nstate_dir: '/var/lib/dcea'\n"), Ok(3));
}

#[test]
fn scalars_read_back_as_written() {
    for v in [
        "plain",
        "/var/lib/dcea",
        "127.0.0.1:9376",
        "a b",
        "#x",
        "x #y",
        "- dash",
        "~",
        "null",
        "",
        "a: b",
        "tab\there",
        "ünï",
        "\"q\"",
        "x:",
    ] {
        let text = format!("state_dir: {}\n", render::scalar(v));
        let docs = crate::rules::yaml::parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let crate::rules::yaml::Kind::Map(pairs) = &docs[0].kind else { panic!("{text}") };
        assert_eq!(pairs[0].1.as_str(), Some(v), "{text}");
        assert!(!pairs[0].1.is_null(), "{text}");
    }
}

/// The fuzz target's property on deterministic mutations of the default file (the fuzzer
/// itself runs with `cargo xtask fuzz --target config_parser`): every input is accepted or
/// gives errors placed inside it, never a panic.
#[test]
fn mutated_files_never_panic() {
    let base = default_config().into_bytes();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b":-[]{}#&*!|>'\"~ \n\r\tx0";
    for _ in 0..300 {
        let mut bytes = base.clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() as usize) % bytes.len().max(1);
            match next() % 3 {
                0 => bytes[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => bytes.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines = text.split(['\n', '\r']).count() as u32;
        if let Err(errors) = check_text("m.yaml", &text) {
            for e in errors {
                assert!(e.pos.is_none_or(|p| p.line <= lines + 1), "{e} outside {lines} lines");
            }
        }
    }
}
