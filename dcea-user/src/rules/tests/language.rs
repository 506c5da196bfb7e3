//! The language, with the examples of Falco's rules documentation (conditions, macros, lists,
//! exceptions, append, override) evaluated on events.

use super::{hits, load, load_ok};
use crate::rules::{EvtType, LoadOptions, RuleSet, SimpleEvent, TypeSet};

fn rule(name: &str, cond: &str) -> String {
    format!("- rule: {name}\n  desc: d\n  condition: {cond}\n  output: o\n  priority: INFO\n")
}

fn ev(t: EvtType, name: &'static str) -> SimpleEvent<'static> {
    let mut e = SimpleEvent::new(t);
    e.name = Some(name);
    e.container_id = Some("c1");
    e
}

fn opened(name: &'static str, path: &'static str, flags: u64) -> SimpleEvent<'static> {
    let mut e = ev(EvtType::Openat, name);
    e.fd_name = Some(path);
    e.flags = Some(flags);
    e.res = 3;
    e
}

#[test]
fn documented_condition_and_precedence() {
    let set = load_ok(&[&rule("r", "evt.type = execve and (proc.name = cat or proc.name = grep)")]);
    assert_eq!(hits(&set, &ev(EvtType::Execve, "cat")), ["r"]);
    assert_eq!(hits(&set, &ev(EvtType::Execve, "grep")), ["r"]);
    assert!(hits(&set, &ev(EvtType::Execve, "ls")).is_empty());
    assert!(hits(&set, &ev(EvtType::Openat, "cat")).is_empty());
    // `a or b and c` is `a or (b and c)`; `not` binds tightest.
    let set = load_ok(&[&rule("r", "evt.type = execve and (proc.name = a or proc.name = b and not proc.pid = 1)")]);
    let mut b1 = ev(EvtType::Execve, "b");
    b1.pid = Some(1);
    assert!(hits(&set, &b1).is_empty());
    let mut a1 = ev(EvtType::Execve, "a");
    a1.pid = Some(1);
    assert_eq!(hits(&set, &a1), ["r"]);
}

#[test]
fn macros_lists_and_definition_order() {
    // From the docs: a list used through a macro; the macro is defined after the rule.
    let text = "\
- rule: my_programs_opened_file
  desc: Track whenever a set of programs opens a file
  condition: proc.name in (my_programs) and (access_file)
  output: A tracked program opened a file | user=%user.uid command=%proc.cmdline file=%fd.name
  priority: INFO
- macro: access_file
  condition: evt.type=open
- list: my_programs
  items: [ls, cat, pwd]
";
    let set = load_ok(&[text]);
    assert_eq!(hits(&set, &opened("cat", "/x", 0)), ["my_programs_opened_file"], "`open` covers openat");
    assert!(hits(&set, &opened("cp", "/x", 0)).is_empty());
    assert!(hits(&set, &ev(EvtType::Execve, "cat")).is_empty());
    // Appending to the list and the macro in a later file (legacy `append: true`).
    let local = "\
- list: my_programs
  append: true
  items: [cp]
- macro: access_file
  append: true
  condition: or evt.type=execve
";
    let set = load_ok(&[text, local]);
    assert_eq!(hits(&set, &opened("cp", "/x", 0)), ["my_programs_opened_file"]);
    assert_eq!(hits(&set, &ev(EvtType::Execve, "ls")), ["my_programs_opened_file"]);
}

#[test]
fn lists_nest_and_quoted_items() {
    let text = "\
- list: shells
  items: [sh, \"my shell\", '\"quoted one\"']
- list: interpreters
  items: [shells, python3]
- rule: r
  desc: d
  condition: evt.type = execve and proc.name in (interpreters, perl, 'shells')
  output: o
  priority: INFO
";
    let set = load_ok(&[text]);
    for name in ["sh", "my shell", "quoted one", "python3", "perl", "shells"] {
        assert_eq!(hits(&set, &ev(EvtType::Execve, name)), ["r"], "{name}");
    }
    assert!(hits(&set, &ev(EvtType::Execve, "interpreters")).is_empty(), "an unquoted list name expands");
}

#[test]
fn override_append_and_replace() {
    let base = "\
- list: my_programs
  items: [ls, cat, pwd]
- macro: access_file
  condition: evt.type=open
- rule: program_accesses_file
  desc: track whenever a set of programs opens a file
  condition: (access_file) and proc.name in (my_programs)
  output: A tracked program opened a file | file=%fd.name
  priority: INFO
";
    let local = "\
- list: my_programs
  items: [vi, vim]
  override:
    items: replace
- macro: access_file
  condition: or evt.type=execve
  override:
    condition: append
- rule: program_accesses_file
  condition: and not user.uid=0
  output: A file (file=%fd.name) was opened by a monitored program
  override:
    condition: append
    output: replace
";
    let set = load_ok(&[base, local]);
    let mut vi = opened("vi", "/etc/x", 0);
    vi.uid = Some(1000);
    assert_eq!(hits(&set, &vi), ["program_accesses_file"]);
    let mut ls = vi.clone();
    ls.name = Some("ls");
    assert!(hits(&set, &ls).is_empty(), "list replaced");
    let mut root = vi.clone();
    root.uid = Some(0);
    assert!(hits(&set, &root).is_empty(), "condition appended");
    let r = set.rule("program_accesses_file").unwrap();
    assert_eq!(r.render(&vi, 0).0, "A file (file=/etc/x) was opened by a monitored program");
    let mut exec = ev(EvtType::Execve, "vim");
    exec.uid = Some(1);
    assert_eq!(hits(&set, &exec), ["program_accesses_file"], "macro appended");
}

#[test]
fn enabling_disabling_and_redefinition() {
    let base = "\
- rule: test_rule
  desc: test rule description
  condition: evt.type = execve
  output: user=%user.uid command=%proc.cmdline
  priority: INFO
  enabled: false
- rule: other
  desc: d
  condition: evt.type = execve and proc.name = x
  output: o
  priority: INFO
";
    let set = load_ok(&[base]);
    assert!(hits(&set, &ev(EvtType::Execve, "a")).is_empty(), "disabled rules are not evaluated");
    assert!(!set.rule("test_rule").unwrap().enabled, "but listed");
    let set = load_ok(&[base, "- rule: test_rule\n  enabled: true\n  override:\n    enabled: replace\n"]);
    assert_eq!(hits(&set, &ev(EvtType::Execve, "a")), ["test_rule"]);
    let set = load_ok(&[base, "- rule: test_rule\n  enabled: true\n"]);
    assert_eq!(hits(&set, &ev(EvtType::Execve, "a")), ["test_rule"], "older enabled-only form");
    // A later file redefines a rule wholesale (keeping its place in the order).
    let set = load_ok(&[base, &rule("other", "evt.type = execve and proc.name = y")]);
    assert_eq!(hits(&set, &ev(EvtType::Execve, "y")), ["other"]);
    assert_eq!(set.rules()[1].name, "other");
    let set = load_ok(&[base, "- rule: other\n  append: true\n  condition: or proc.name = z\n"]);
    assert_eq!(hits(&set, &ev(EvtType::Execve, "z")), ["other"]);
}

/// The exceptions example of Falco's documentation, then its appended values.
const BIN_DIR: &str = "\
- macro: bin_dir
  condition: fd.directory in (/bin, /sbin, /usr/bin, /usr/sbin)
- macro: open_write
  condition: (evt.type in (open,openat,openat2) and evt.is_open_write=true and fd.typechar='f' and fd.num>=0)
- rule: Write below binary dir
  desc: an attempt to write to any file below a set of binary directories
  condition: >
    bin_dir and evt.dir = < and open_write
  exceptions:
   - name: proc_writer
     fields: [proc.name, fd.directory]
     comps: [=, =]
     values:
       - [my-custom-yum, /usr/bin]
       - [my-custom-apt, /usr/local/bin]
   - name: cmdline_writer
     fields: [proc.cmdline, fd.directory]
     comps: [startswith, =]
   - name: container_writer
     fields: [container.image.repository, fd.directory]
   - name: proc_filenames
     fields: [proc.name, fd.name]
     comps: [=, in]
     values:
       - [my-custom-dpkg, [/usr/bin, /bin]]
   - name: filenames
     fields: fd.filename
     comps: in
  output: File below a known binary directory opened for writing (file=%fd.name)
  priority: ERROR
";

const BIN_DIR_APPEND: &str = "\
- list: apt_files
  items: [/bin/ls, /bin/rm]
- rule: Write below binary dir
  exceptions:
  - name: proc_writer
    values:
    - [apk, /usr/lib/alpine]
    - [npm, /usr/bin]
  - name: container_writer
    values:
    - [docker.io/alpine, /usr/sbin]
  - name: proc_filenames
    values:
    - [apt, [apt_files]]
    - [rpm, [/bin/cp, /bin/pwd]]
  - name: filenames
    values: [python, go]
  append: true
";

fn wr(name: &'static str, path: &'static str) -> SimpleEvent<'static> {
    let mut e = opened(name, path, 1);
    e.fd_typechar = Some("f");
    e
}

#[test]
fn documented_exceptions() {
    let set = load_ok(&[BIN_DIR]);
    let r = "Write below binary dir";
    assert_eq!(hits(&set, &wr("vim", "/usr/bin/x")), [r]);
    assert!(hits(&set, &wr("my-custom-yum", "/usr/bin/x")).is_empty(), "proc_writer tuple");
    assert_eq!(hits(&set, &wr("my-custom-yum", "/bin/x")), [r], "tuple fields hold together");
    assert!(hits(&set, &wr("my-custom-dpkg", "/bin")).is_empty(), "proc_filenames with `in`");
    assert_eq!(hits(&set, &wr("x", "/usr/bin/python")), [r], "`filenames` has no values yet");
    let mut read = wr("vim", "/usr/bin/x");
    read.flags = Some(0);
    assert!(hits(&set, &read).is_empty());

    let set = load_ok(&[BIN_DIR, BIN_DIR_APPEND]);
    assert!(hits(&set, &wr("npm", "/usr/bin/x")).is_empty(), "appended proc_writer value");
    assert!(hits(&set, &wr("apt", "/bin/ls")).is_empty(), "list name inside a tuple value");
    assert_eq!(hits(&set, &wr("apt", "/bin/cat")), [r]);
    assert!(hits(&set, &wr("rpm", "/bin/cp")).is_empty());
    assert!(hits(&set, &wr("x", "/usr/bin/python")).is_empty(), "single-field exception");
    let mut alpine = wr("x", "/usr/sbin/y");
    alpine.container_image_repository = Some("docker.io/alpine");
    assert!(hits(&set, &alpine).is_empty(), "comps default to =");
    assert_eq!(hits(&set, &wr("vim", "/usr/bin/x")), [r]);
}

#[test]
fn operators_on_strings_numbers_and_missing_fields() {
    let cases: &[(&str, bool)] = &[
        ("fd.name = /etc/shadow", true),
        ("fd.name == /etc/shadow", true),
        ("fd.name != /etc/shadow", false),
        ("fd.name startswith /etc/", true),
        ("fd.name endswith shadow", true),
        ("fd.name contains c/sh", true),
        ("fd.name icontains C/SHA", true),
        ("fd.name glob '/etc/sh*'", true),
        ("fd.name glob '/etc/?'", false),
        ("fd.name pmatch (/etc)", true),
        ("fd.name pmatch (/et)", false),
        ("fd.name in (/a, /etc/shadow)", true),
        ("fd.directory = /etc and fd.filename = shadow", true),
        ("fd.name exists", true),
        ("k8s.pod.name exists", false),
        ("proc.pid = 42 and proc.pid != 41", true),
        ("proc.pid > 41 and proc.pid >= 42 and proc.pid < 43 and proc.pid <= 42", true),
        ("proc.pid in (1, 2, 0x2a)", true),
        ("evt.res >= 0 and evt.res = 3", true),
        ("evt.res < 0", false),
        // A missing field makes every comparison false, `!=` included (Falco's <NA>).
        ("k8s.pod.name != x", false),
        ("not k8s.pod.name = x", true),
        ("user.uid != 0", false),
        ("evt.is_open_write = true and evt.is_open_read = false", true),
        ("evt.arg.flags contains O_WRONLY", true),
        ("evt.arg.flags contains O_RDONLY", false),
        ("evt.arg.flags contains O_CREAT", true),
        ("evt.arg.flags = O_WRONLY|O_CREAT", true),
        ("evt.arg.flags = O_WRONLY", false),
        ("evt.arg.flags contains MS_BIND", false),
        ("evt.type = openat and evt.type in (open) and evt.type != execve", true),
        ("evt.dir = <", true),
        ("evt.dir = >", false),
        ("proc.name = val(proc.aname[1])", false),
        ("proc.aname[1] = bash and proc.aname[2] = sshd and proc.aname[3] exists", false),
        ("proc.aname = sshd and proc.aname = bash and not proc.aname = init", true),
        ("proc.apid[1] = 10", true),
        ("dcea.ns.mnt = 4026532177 and dcea.ns.mnt.is_host = false", true),
        ("dcea.ns.net.is_host = true", false),
    ];
    let mut e = opened("cat", "/etc/shadow", 1 | libc::O_CREAT as u64);
    e.pid = Some(42);
    e.ancestors = &["bash", "sshd"];
    e.ancestor_pids = &[10, 5];
    e.ns[dcea_common::NsKind::Mnt.index()] = Some(4026532177);
    e.ns_is_host[dcea_common::NsKind::Mnt.index()] = Some(false);
    for (cond, want) in cases {
        let set = load_ok(&[&rule("r", cond)]);
        let got = !hits(&set, &e).is_empty();
        assert_eq!(got, *want, "{cond}");
    }
}

#[test]
fn flags_of_every_kind() {
    let set = load_ok(&[
        &rule("bind", "evt.type = mount and evt.arg.flags contains MS_BIND|MS_REC"),
        &rule("userns", "evt.type in (unshare, clone) and evt.arg.flags contains CLONE_NEWUSER"),
        &rule("blk", "evt.type = mknod and evt.arg.mode contains S_IFBLK"),
        &rule("chr", "evt.type = mknod and evt.arg.mode contains S_IFCHR"),
        &rule("rdonly", "evt.type = openat and evt.arg.flags = O_RDONLY"),
    ]);
    let mut m = ev(EvtType::Mount, "mount");
    m.flags = Some(4096 | 16384);
    assert_eq!(hits(&set, &m), ["bind"]);
    m.flags = Some(4096);
    assert!(hits(&set, &m).is_empty());
    let mut u = ev(EvtType::Unshare, "unshare");
    u.flags = Some(0x10000000);
    assert_eq!(hits(&set, &u), ["userns"]);
    let mut k = ev(EvtType::Mknod, "mknod");
    k.mode = Some(0o060600);
    assert_eq!(hits(&set, &k), ["blk"], "S_IFBLK is not S_IFCHR although it has its bit");
    k.mode = Some(0o020600);
    assert_eq!(hits(&set, &k), ["chr"]);
    assert_eq!(hits(&set, &opened("cat", "/x", 0)), ["rdonly"]);
    assert!(hits(&set, &opened("cat", "/x", libc::O_CLOEXEC as u64)).is_empty());
}

#[test]
fn event_type_index() {
    let set = load_ok(&[
        &rule("exec", "evt.type = execve and proc.name = a"),
        &rule("opens", "evt.type in (open, openat2) and proc.name = a"),
        &rule("not_exec", "not evt.type = execve and proc.name = a"),
        &rule("never", "evt.type = sendto and proc.name = a"),
    ]);
    let types = |n: &str| set.rule(n).unwrap().types;
    assert_eq!(types("exec"), TypeSet::of_name("execve"));
    assert_eq!(types("opens"), TypeSet::of_name("open"));
    assert_eq!(types("not_exec"), TypeSet::of_name("execve").complement());
    assert!(types("never").is_empty());
    assert!(set.warnings().iter().any(|w| w.message.contains("`never` can never match")), "{:?}", set.warnings());
    assert_eq!(set.rules_for(EvtType::Openat).map(|r| r.name.as_str()).collect::<Vec<_>>(), ["opens", "not_exec"]);
    // A rule without evt.type sits in every index, with Falco's warning.
    let set = load_ok(&[&rule("any", "proc.name = a")]);
    assert!(set.rules()[0].types.is_all());
    assert!(set.warnings()[0].message.contains("names no evt.type"), "{:?}", set.warnings());
    assert_eq!(hits(&set, &ev(EvtType::Ptrace, "a")), ["any"]);
}

#[test]
fn first_match_and_all_matches() {
    let set = load_ok(&[&rule("one", "evt.type = execve"), &rule("two", "evt.type = execve and proc.name = a")]);
    let e = ev(EvtType::Execve, "a");
    assert_eq!(set.first_match(&e).unwrap().name, "one");
    assert_eq!(hits(&set, &e), ["one", "two"]);
}

#[test]
fn tolerated_items_and_skipped_rules() {
    let text = "\
- required_engine_version: 17
- required_plugin_versions:
  - name: k8saudit
    version: 0.1.0
- exception: something new
- rule: audit
  desc: d
  condition: ka.verb = create
  output: o
  priority: INFO
  source: k8s_audit
- rule: maybe
  desc: d
  condition: evt.type = execve and fd.some_new_field = 1
  output: o
  priority: INFO
  skip-if-unknown-filter: true
";
    let set = load_ok(&[text, &rule("r", "evt.type = execve")]);
    assert_eq!(set.rules().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["r"]);
    let w: Vec<String> = set.warnings().iter().map(|d| d.to_string()).collect();
    assert!(w.iter().any(|w| w.starts_with("a.yaml:5:3: ignoring an item")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("source `k8s_audit`")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("skip-if-unknown-filter")), "{w:?}");
}

#[test]
fn unused_and_typo_warnings_for_local_files() {
    let text = "\
- list: unused_list
  items: [a]
- macro: unused_macro
  condition: proc.name = a
";
    let set = load_ok(&[text, &rule("r", "evt.type = execve")]);
    let w: Vec<String> = set.warnings().iter().map(|d| d.to_string()).collect();
    assert!(w.contains(&"a.yaml:3:10: macro `unused_macro` is never used".to_string()), "{w:?}");
    assert!(w.contains(&"a.yaml:1:9: list `unused_list` is never used".to_string()), "{w:?}");
    let set = load_ok(&[
        "- list: shell_binaries\n  items: [sh]\n",
        &rule("r", "evt.type = execve and proc.name in (shell_binaris, x)"),
    ]);
    let w: Vec<String> = set.warnings().iter().map(|d| d.to_string()).collect();
    assert!(
        w.iter().any(|w| w.starts_with("b.yaml:3:50: `shell_binaris` is not a list") && w.contains("`shell_binaries`")),
        "{w:?}"
    );
}

#[test]
fn outputs_render_like_falco() {
    let set = load_ok(&[
        "- rule: r\n  desc: d\n  condition: evt.type = openat\n  output: \"%proc.name wrote %fd.name (pod=%k8s.pod.name, flags %evt.arg.flags)\"\n  priority: WARNING\n  tags: [a, T1]\n",
    ]);
    let e = opened("cat", "/etc/x", 1);
    let r = set.first_match(&e).unwrap();
    let alert = r.alert(&e, &crate::rules::AlertMeta { time_ns: 0, hostname: "h" });
    assert_eq!(alert.output, "cat wrote /etc/x (pod=<NA>, flags O_WRONLY)");
    assert_eq!(alert.output_fields["k8s.pod.name"], serde_json::Value::Null);
    assert_eq!(alert.tags, ["a", "T1"]);
    assert_eq!(alert.hostname, "h");
}

#[test]
fn load_options_read_the_rules_dir_in_order_and_reload_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("20-b.yaml"), rule("r", "evt.type = execve and proc.name = b")).unwrap();
    std::fs::write(dir.path().join("10-a.yml"), rule("r", "evt.type = execve and proc.name = a")).unwrap();
    std::fs::write(dir.path().join("README.md"), "not rules").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "{{{{").unwrap();
    let opts = LoadOptions { default_rules: false, rules_dir: Some(dir.path().to_path_buf()), files: Vec::new() };
    let mut set = RuleSet::load(&opts).unwrap();
    assert_eq!(hits(&set, &ev(EvtType::Execve, "b")), ["r"], "20-b.yaml loads after 10-a.yml");
    assert_eq!(set.files().len(), 2);

    std::fs::write(dir.path().join("30-bad.yaml"), "- rule: broken\n  condition: (\n").unwrap();
    let err = set.reload(&opts).unwrap_err();
    assert!(err.to_string().contains("30-bad.yaml:1:3: rule `broken` is missing"), "{err}");
    assert_eq!(hits(&set, &ev(EvtType::Execve, "b")), ["r"], "the last good rules stay");

    std::fs::remove_file(dir.path().join("30-bad.yaml")).unwrap();
    std::fs::write(dir.path().join("30-c.yaml"), rule("r", "evt.type = execve and proc.name = c")).unwrap();
    set.reload(&opts).unwrap();
    assert_eq!(hits(&set, &ev(EvtType::Execve, "c")), ["r"]);

    // A missing directory is fine; defaults load with it.
    let missing = LoadOptions { rules_dir: Some(dir.path().join("nope")), ..LoadOptions::default() };
    assert_eq!(RuleSet::load(&missing).unwrap().rules().len(), crate::rules::names::ALL.len());
}

#[test]
fn unreadable_rules_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.yaml");
    std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
    let opts = LoadOptions { default_rules: false, rules_dir: Some(dir.path().to_path_buf()), files: Vec::new() };
    let err = RuleSet::load(&opts).unwrap_err().to_string();
    assert!(err.contains(&format!("{}: not UTF-8", path.display())), "{err}");
    let opts = LoadOptions { default_rules: false, rules_dir: None, files: vec![dir.path().join("absent.yaml")] };
    let err = RuleSet::load(&opts).unwrap_err().to_string();
    assert!(err.contains("absent.yaml: cannot read"), "{err}");
    // A file where the directory should be.
    let opts = LoadOptions { default_rules: false, rules_dir: Some(path), files: Vec::new() };
    assert!(RuleSet::load(&opts).is_err());
    assert!(load(&[""]).unwrap().rules().is_empty(), "an empty file is fine");
}

#[test]
fn action_and_guard_load_override_and_refuse_unknown_values() {
    use crate::enforce::Action;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("10-local.yaml"),
        "- rule: Kernel core_pattern written\n  action: alert\n  override:\n    action: replace\n",
    )
    .unwrap();
    let opts = LoadOptions { rules_dir: Some(dir.path().to_path_buf()), ..LoadOptions::default() };
    let set = RuleSet::load(&opts).unwrap();
    let rule = set.rule(crate::rules::names::CORE_PATTERN_WRITTEN).unwrap();
    assert_eq!(rule.action, Action::Alert);
    assert_eq!(rule.guard, Some(dcea_common::Guard::CorePattern), "the guard stays");
    for (bad, want) in [("nuke", "invalid action `nuke`"), ("", "invalid action")] {
        std::fs::write(
            dir.path().join("10-local.yaml"),
            format!("- rule: Kernel core_pattern written\n  action: {bad}\n  override:\n    action: replace\n"),
        )
        .unwrap();
        let err = match RuleSet::load(&opts) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("refused"),
        };
        assert!(err.contains(want), "{err}");
    }
    std::fs::write(
        dir.path().join("10-local.yaml"),
        "- rule: x\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: notice\n  guard: everything\n",
    )
    .unwrap();
    let err = match RuleSet::load(&opts) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("refused"),
    };
    assert!(err.contains("invalid guard `everything`: one of host-namespace"), "{err}");
}
