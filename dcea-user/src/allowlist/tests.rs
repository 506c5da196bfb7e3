//! The judge, fed exec records through the pipeline as the kernel sends them.

use std::time::SystemTime;

use dcea_common::{Hook, flags};

use super::*;
use crate::{
    container::metadata::{ContainerMeta, MetadataCache},
    monitor::{
        AlertContext, Pipeline,
        behaviour::tests::{bytes_of, put, record},
    },
    trust::HostNamespaces,
};

const ID: &str = "3f4e5d6c7b8a99001122334455667788aabbccddeeff00112233445566778899";

fn pipeline(state: &Path, opts: AllowlistOptions) -> Pipeline {
    let mut p = Pipeline::new(AlertContext {
        host: HostNamespaces { ns: HostNamespaces::fixed(), mnt_net_source: "test".into() },
        hostname: "node-1".into(),
        realtime_offset_ns: 1_700_000_000_000_000_000,
        metadata: MetadataCache::disabled(),
    });
    p.rules = Some(std::sync::Arc::new(crate::rules::RuleSet::builtin().expect("rules")));
    p.ctx.metadata.insert(ContainerMeta {
        id: ID.into(),
        name: Some("web".into()),
        image_repository: Some("shop/web".into()),
        image_digest: Some("sha256:1".into()),
        ..Default::default()
    });
    p.allowlist = Some(Allowlist::new(state, opts));
    p
}

/// An exec of `exe` as `comm` in the container (the record's cgroup names it).
fn exec(exe: &[&str], comm: &str, extra_flags: u32) -> Vec<u8> {
    let mut ev = record(Hook::Exec);
    ev.flags |= extra_flags;
    ev.comm = [0; 16];
    put(&mut ev.comm, comm.as_bytes());
    put(&mut ev.parent_comm, b"sh");
    for (i, c) in exe.iter().rev().enumerate() {
        put(&mut ev.exe[i], c.as_bytes());
    }
    put(&mut ev.cgroup, ID.as_bytes());
    put(&mut ev.cgroup_parent, b"docker");
    put(&mut ev.arg, format!("{comm}\0").as_bytes());
    ev.args[dcea_common::arg::FLAGS] = comm.len() as u64 + 1;
    bytes_of(&ev)
}

fn alerts(p: &mut Pipeline, record: &[u8]) -> Vec<Alert> {
    let mut out = Vec::new();
    p.process_into(record, &mut out);
    out.into_iter().filter(|a| a.rule == RULE_NOT_ALLOWED).collect()
}

/// Change a profile's mode as `dcea profile promote` would.
fn set_mode(p: &mut Pipeline, name: &str, mode: Mode) {
    let a = p.allowlist.as_mut().expect("allowlist");
    a.store.get_mut(name).expect("profile").set_mode(mode, SystemTime::now());
}

fn learn_until_told() -> AllowlistOptions {
    AllowlistOptions { learn: None, ..Default::default() }
}

fn only_profile(p: &Pipeline) -> Profile {
    let a = p.allowlist.as_ref().expect("allowlist");
    assert_eq!(a.store.len(), 1);
    a.store.profiles().next().expect("profile").clone()
}

#[test]
fn a_workload_learns_its_programs_then_reports_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = pipeline(dir.path(), learn_until_told());
    for (exe, comm) in [(&["bin", "busybox"][..], "sh"), (&["app", "run"][..], "run")] {
        assert!(alerts(&mut p, &exec(exe, comm, 0)).is_empty(), "learning raises nothing");
    }
    // A repeat is not a second entry.
    alerts(&mut p, &exec(&["app", "run"], "run", 0));
    let profile = only_profile(&p);
    assert_eq!(profile.workload, "docker/shop/web@sha256:1/web");
    let learned: Vec<_> = profile.entries.iter().map(|e| (e.path.as_str(), e.name.as_str())).collect();
    assert_eq!(learned, [("/bin/busybox", "sh"), ("/app/run", "run")]);
    assert_eq!(profile.entries[1].parent.as_deref(), Some("sh"));
    // Saved at the tick, where the CLI reads it.
    p.allowlist.as_mut().expect("allowlist").tick();
    let saved =
        store::read(&store::path_of(&dir.path().join(store::DIR), &profile.name)).expect("read").expect("saved");
    assert_eq!(saved.entries.len(), 2);

    set_mode(&mut p, &profile.name, Mode::Monitor);
    assert!(alerts(&mut p, &exec(&["app", "run"], "run", 0)).is_empty(), "a learned program");
    let got = alerts(&mut p, &exec(&["bin", "busybox"], "nc", 0));
    assert_eq!(got.len(), 1, "another applet of a learned binary is another program");
    let f = &got[0].output_fields;
    assert_eq!(f["dcea.allowlist.profile"], profile.name.as_str());
    assert_eq!(f["dcea.allowlist.mode"], "monitor");
    assert_eq!(f["dcea.action"], "alert");
    assert_eq!(f["proc.exepath"], "/bin/busybox");
    assert_eq!(f["proc.name"], "nc");
    assert_eq!(f["container.name"], "web");
    assert_eq!(got[0].priority, Priority::Error);
    assert!(got[0].output.contains("mode=monitor exec reported: not in the profile"), "{}", got[0].output);
}

#[test]
fn a_kernel_kill_is_reported_as_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = pipeline(dir.path(), learn_until_told());
    alerts(&mut p, &exec(&["app", "run"], "run", 0));
    let name = only_profile(&p).name;
    set_mode(&mut p, &name, Mode::Enforce);
    let got = alerts(&mut p, &exec(&["tmp", "x"], "x", flags::NOT_ALLOWED | flags::KILLED));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].priority, Priority::Critical);
    assert_eq!(got[0].output_fields["dcea.action"], "kill-process");
    assert_eq!(got[0].output_fields["dcea.enforced_at"], "kernel hook");
    assert!(got[0].output.contains("exec killed"), "{}", got[0].output);
    assert_eq!(p.allowlist.as_ref().expect("allowlist").stats.killed, 1);
}

#[test]
fn runtime_execs_are_not_learned_and_are_reported_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = pipeline(dir.path(), learn_until_told());
    // The engine names the init; this entry exec is another task's: a `docker exec`.
    let mut meta = (*p.ctx.metadata.lookup(ID).expect("meta")).clone();
    meta.pid = Some(4242);
    p.ctx.metadata.insert(meta);
    alerts(&mut p, &exec(&["app", "run"], "run", 0));
    alerts(&mut p, &exec(&["bin", "busybox"], "sh", flags::ENTRY_EXEC));
    let profile = only_profile(&p);
    assert_eq!(profile.entries.len(), 1, "the docker exec was not learned: {:?}", profile.entries);
    set_mode(&mut p, &profile.name, Mode::Monitor);
    let got = alerts(&mut p, &exec(&["bin", "busybox"], "sh", flags::ENTRY_EXEC));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].priority, Priority::Notice);
    assert_eq!(got[0].output_fields["dcea.allowlist.runtime_exec"], true);
}

#[test]
fn fileless_and_unwalked_programs_are_never_learned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = pipeline(dir.path(), learn_until_told());
    alerts(&mut p, &exec(&["app", "run"], "run", 0));
    alerts(&mut p, &exec(&["memfd:x (deleted)"], "x", flags::FILE_UNLINKED));
    alerts(&mut p, &exec(&["deep", "bin"], "bin", flags::EXE_TRUNCATED));
    let profile = only_profile(&p);
    assert_eq!(profile.entries.len(), 1, "{:?}", profile.entries);
    set_mode(&mut p, &profile.name, Mode::Monitor);
    let got = alerts(&mut p, &exec(&["memfd:x (deleted)"], "x", flags::FILE_UNLINKED));
    assert_eq!(got[0].output_fields["dcea.allowlist.reason"], "fileless or unnamed program");
}

#[test]
fn learning_ends_on_time_and_the_profile_becomes_the_after_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = AllowlistOptions { learn: Some(Duration::ZERO), after: Mode::Enforce, ..Default::default() };
    let mut p = pipeline(dir.path(), opts);
    // The first exec creates the profile, whose learning is already over: it is judged.
    let got = alerts(&mut p, &exec(&["app", "run"], "run", 0));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].output_fields["dcea.allowlist.mode"], "enforce");
    let profile = only_profile(&p);
    assert_eq!((profile.mode, profile.learn_until.as_deref()), (Mode::Enforce, None), "written down");
    let a = p.allowlist.as_ref().expect("allowlist");
    assert!(a.to_sync.contains(ID), "the kernel is asked to enforce the container");
}

#[test]
fn a_container_without_metadata_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = pipeline(dir.path(), learn_until_told());
    let other = "aa".repeat(32);
    let mut ev = exec(&["app", "run"], "run", 0);
    // Point the record at a container the engine has not named yet.
    let cgroup_at = ev.windows(ID.len()).position(|w| w == ID.as_bytes()).expect("cgroup in record");
    ev[cgroup_at..cgroup_at + ID.len()].copy_from_slice(other.as_bytes());
    assert!(alerts(&mut p, &ev).is_empty());
    assert_eq!(p.allowlist.as_ref().expect("allowlist").store.len(), 0, "not judged yet");
    p.ctx.metadata.insert(ContainerMeta {
        id: other.clone(),
        name: Some("late".into()),
        image_repository: Some("img".into()),
        ..Default::default()
    });
    let mut out = Vec::new();
    p.judge_deferred_execs(&mut out);
    let a = p.allowlist.as_ref().expect("allowlist");
    let profile = a.store.profiles().next().expect("judged once named");
    assert_eq!(profile.entries.len(), 1);
    assert!(profile.workload.ends_with("/late"), "{}", profile.workload);
}

#[test]
fn the_internal_rule_compiles() {
    assert_eq!(internal_rules().rules()[0].name, RULE_NOT_ALLOWED);
}

#[test]
fn profiles_supplied_in_a_directory_replace_the_stored_ones() {
    let state = tempfile::tempdir().expect("state");
    let supplied = tempfile::tempdir().expect("supplied");
    let mut kept = Profile::new("web-1", "docker/shop/web@sha256:1/web", None, Mode::Enforce, SystemTime::now());
    kept.set_mode(Mode::Enforce, SystemTime::now());
    kept.learn(Entry { path: "/app/run".into(), name: "run".into(), sha256: None, parent: None }, SystemTime::now());
    store::write(supplied.path(), &kept).expect("write");
    std::fs::write(supplied.path().join("broken.yaml"), "mode: [").expect("write");
    let opts = AllowlistOptions { supplied_dir: Some(supplied.path().to_path_buf()), ..Default::default() };
    let mut a = Allowlist::new(state.path(), opts);
    let p = a.store.by_workload("docker/shop/web@sha256:1/web").expect("imported");
    assert_eq!((p.mode, p.entries.len()), (Mode::Enforce, 1));
    assert!(supplied.path().join("broken.yaml").exists(), "a bad supplied file is left where it is");
    // A change to the supplied file is taken at the next tick.
    kept.set_mode(Mode::Monitor, SystemTime::now());
    std::thread::sleep(std::time::Duration::from_millis(20));
    store::write(supplied.path(), &kept).expect("write");
    a.tick();
    assert_eq!(a.store.get("web-1").map(|p| p.mode), Some(Mode::Monitor));
}

#[test]
fn profiles_supplied_as_a_mounted_configmap_are_read_through_its_links() {
    let state = tempfile::tempdir().expect("state");
    let mount = tempfile::tempdir().expect("configmap");
    // The kubelet's layout: the data in a timestamped directory, `..data` pointing at it, and
    // each key a link through `..data`.
    let data = mount.path().join("..2026_12_04_20_00_00.1");
    std::fs::create_dir(&data).expect("mkdir");
    let mut p = Profile::new("web-1", "docker/shop/web@sha256:1/web", None, Mode::Monitor, SystemTime::now());
    p.set_mode(Mode::Monitor, SystemTime::now());
    store::write(&data, &p).expect("write");
    std::os::unix::fs::symlink(data.file_name().expect("name"), mount.path().join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/web-1.yaml", mount.path().join("web-1.yaml")).expect("link");
    let opts = AllowlistOptions { supplied_dir: Some(mount.path().to_path_buf()), ..Default::default() };
    let a = Allowlist::new(state.path(), opts);
    assert_eq!(a.store.get("web-1").map(|p| p.mode), Some(Mode::Monitor));
}
