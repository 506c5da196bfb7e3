//! `dcea trust show` and `dcea trust verify`.

use std::{
    fmt::Write as _,
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap::{Args, Subcommand, ValueEnum};
use dcea_common::NsKind;

use super::{
    HostNamespaces, TrustChecker, TrustStore,
    db::{ContainerRecord, DEFAULT_STATE_DIR, Loaded, PodRef, TrustFile},
};
use crate::{
    Error,
    container::{engine, metadata::MetadataCache},
    monitor::alert::AlertContext,
    output::{self, Format, escape_text},
    sys,
};

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Print the trust table: every container, its init, the namespaces it is trusted to
    /// share with the host, and each process with the namespaces it is trusted to be in.
    Show(ShowArgs),
    /// One trust pass now: baseline new containers, check every container process and thread,
    /// save the table. Escapes are printed as alerts. Exit status: 0 all trusted, 1
    /// violations, 2 error.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct StateDirArg {
    /// Where the trust database (trust.json) is kept.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// Only this container (full id, id prefix, or name) or pod (`name` or `namespace/name`).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    pub format: ShowFormat,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// Take the host mnt/net namespace reference from this pid (as `dcea monitor`).
    #[arg(long, value_name = "PID")]
    pub host_ns_pid: Option<u32>,
    /// Alert format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    #[command(flatten)]
    pub cri: crate::container::cri::socket::CriSocketArg,
}

pub fn run(cmd: TrustCommand) -> Result<u8, Error> {
    match cmd {
        TrustCommand::Show(args) => show(&args),
        TrustCommand::Verify(args) => verify(&args),
    }
}

fn load_for_reading(dir: &Path) -> Result<TrustFile, Error> {
    let store = TrustStore::read_only(dir);
    match store.load()? {
        Loaded::Database(f) => Ok(f),
        Loaded::Missing => Err(Error::Usage(format!(
            "no trust database at {}: `dcea monitor` or `dcea trust verify` takes the baseline",
            store.path.display()
        ))),
        Loaded::PreviousBoot => Err(Error::Usage(format!(
            "the trust database at {} is from before the last reboot: `dcea trust verify` takes a new baseline",
            store.path.display()
        ))),
        Loaded::SetAside { .. } => unreachable!("a read-only store never sets aside"),
    }
}

fn show(args: &ShowArgs) -> Result<u8, Error> {
    let mut file = load_for_reading(&args.state.state_dir)?;
    if let Some(want) = &args.container {
        file.containers.retain(|id, c| {
            id == want
                || id.starts_with(want.as_str())
                || c.name.as_deref() == Some(want)
                || c.pod.as_ref().is_some_and(|p| pod_label(p) == *want || p.name == *want)
        });
        if file.containers.is_empty() {
            return Err(Error::Usage(format!("no container {want:?} in the trust database")));
        }
    }
    let text = match args.format {
        ShowFormat::Json => serde_json::to_string_pretty(&file).unwrap_or_default() + "\n",
        ShowFormat::Text => render_table(&file),
    };
    print_or_stop(&text)?;
    Ok(0)
}

fn print_or_stop(text: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::io("writing to stdout", e)),
        _ => Ok(()),
    }
}

fn pod_label(p: &PodRef) -> String {
    match &p.namespace {
        Some(ns) => format!("{ns}/{}", p.name),
        None => p.name.clone(),
    }
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or("-".to_string(), escape_text)
}

/// The table as text; names and labels are escaped so one record stays on its lines.
pub fn render_table(file: &TrustFile) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "trust database written {}: {} containers, {} processes",
        file.written_at,
        file.containers.len(),
        file.process_count()
    );
    // Column titles fit the 11-wide inode columns.
    let header: Vec<String> = NsKind::ALL
        .iter()
        .map(|k| if *k == NsKind::PidForChildren { "PIDCHILDREN".into() } else { k.name().to_uppercase() })
        .collect();
    // Pods first, each with its containers; then containers outside any pod.
    let mut order: Vec<(&String, &ContainerRecord)> = file.containers.iter().collect();
    order.sort_by(|a, b| (a.1.pod.is_none(), &a.1.pod, a.0).cmp(&(b.1.pod.is_none(), &b.1.pod, b.0)));
    let mut current_pod: Option<&PodRef> = None;
    for (id, c) in order {
        if let Some(p) = &c.pod
            && current_pod != Some(p)
        {
            let _ = writeln!(s);
            let uid = p.uid.as_deref().map_or(String::new(), |u| format!(" (uid {})", escape_text(u)));
            let _ = writeln!(s, "pod {}{uid}", escape_text(&pod_label(p)));
            current_pod = Some(p);
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "container {id} ({})", escape_text(&c.runtime));
        let _ = writeln!(s, "  name {}  image {}  first seen {}", opt(&c.name), opt(&c.image), c.first_seen);
        let shares = if c.shares_host.is_empty() { "none".to_string() } else { c.shares_host.join(",") };
        let _ = writeln!(s, "  init pid {} (start {}); shares with the host: {shares}", c.init_pid, c.init_start_time);
        let baseline: Vec<String> =
            c.baseline.iter().map(|n| if *n == 0 { "-".into() } else { n.to_string() }).collect();
        let _ = writeln!(s, "  {:<8} {:<12} {:<16} {}", "", "baseline", "", row(&baseline));
        let _ = writeln!(s, "  {:<8} {:<12} {:<16} {}", "PID", "START", "COMM", row(&header));
        for p in &c.processes {
            let ns: Vec<String> = p.ns.iter().map(|n| if *n == 0 { "-".into() } else { n.to_string() }).collect();
            let comm: String = escape_text(&p.comm).chars().take(16).collect();
            let _ = writeln!(s, "  {:<8} {:<12} {:<16} {}", p.pid, p.start_time, comm, row(&ns));
        }
    }
    s
}

fn row(cells: &[String]) -> String {
    cells.iter().map(|c| format!("{c:<11}")).collect::<Vec<_>>().join(" ").trim_end().to_string()
}

fn verify(args: &VerifyArgs) -> Result<u8, Error> {
    if !sys::is_root() {
        return Err(Error::Usage(
            "dcea trust verify must run as root (it reads every process's namespaces in /proc)".into(),
        ));
    }
    let host = HostNamespaces::detect(args.host_ns_pid)?;
    let metadata = MetadataCache::fetch(&engine::socket_path()).unwrap_or_else(|e| {
        eprintln!("dcea: no Docker engine ({e}): Docker containers are named by id only");
        MetadataCache::disabled()
    });
    let cri_sockets = crate::container::cri::socket::discover(args.cri.cri_socket.as_deref());
    let metadata = metadata.with_cri(crate::container::cri::fetch_cache(&cri_sockets));
    let dir = &args.state.state_dir;
    let store = match TrustStore::open(dir)? {
        Some(s) => s,
        None => {
            eprintln!(
                "dcea: another dcea holds the trust database in {}: checking against it without saving",
                dir.display()
            );
            TrustStore::read_only(dir)
        }
    };
    let loaded = store.load()?;
    if let Some(line) = loaded.describe(&store.path) {
        eprintln!("dcea: {line}");
    }
    let mut checker = TrustChecker::new(AlertContext::new(host, metadata), false);
    if let Loaded::Database(f) = &loaded {
        checker.restore(f);
    }
    let alerts = checker.pass();
    store.save(&checker.snapshot())?;
    let mut out = String::new();
    for a in &alerts {
        out.push_str(&output::render(a, args.format));
        out.push('\n');
    }
    print_or_stop(&out)?;
    let st = checker.last;
    eprintln!(
        "dcea: trust verify: {} containers ({} new), {} container processes of {}, {} violations ({:.1} ms)",
        st.containers,
        st.new_containers,
        st.container_processes,
        st.processes,
        st.violations,
        st.elapsed_us as f64 / 1000.0
    );
    Ok(if st.violations > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::db::{ContainerRecord, Digests, ProcessRecord};

    #[test]
    fn table_escapes_hostile_names() {
        let mut f = TrustFile::new(&HostNamespaces::fixed());
        let ns = [1u32, 2, 2, 3, 4, 5, 6, 7, 8];
        f.containers.insert(
            "c".repeat(64),
            ContainerRecord {
                runtime: "docker".into(),
                name: Some("evil\nname\u{1b}[31m".into()),
                image: None,
                first_seen: "t".into(),
                init_pid: 9,
                init_start_time: 1,
                baseline: vec![0, 2, 2, 3, 4, 5, 6, 7, 8],
                shares_host: vec![],
                pod: None,
                processes: vec![ProcessRecord::new(9, 1, "a\nb", &ns, &mut Digests::default())],
            },
        );
        let text = render_table(&f);
        assert!(text.contains("name evil\\nname\\u{1b}[31m"), "{text}");
        assert!(text.contains("a\\nb"), "{text}");
        assert!(text.contains("shares with the host: none"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("container ")).count(), 1);
    }

    #[test]
    fn table_lists_containers_by_pod() {
        let mut f = TrustFile::new(&HostNamespaces::fixed());
        let record = |pod: Option<(&str, &str)>| ContainerRecord {
            runtime: "containerd".into(),
            name: Some("app".into()),
            image: None,
            first_seen: "t".into(),
            init_pid: 9,
            init_start_time: 1,
            baseline: vec![0; 9],
            shares_host: vec!["pid".into()],
            pod: pod.map(|(ns, name)| PodRef {
                namespace: Some(ns.into()),
                name: name.into(),
                uid: Some("u-1".into()),
            }),
            processes: vec![],
        };
        f.containers.insert("a".repeat(64), record(None));
        f.containers.insert("b".repeat(64), record(Some(("prod", "web-1"))));
        f.containers.insert("c".repeat(64), record(Some(("prod", "web-1"))));
        f.containers.insert("d".repeat(64), record(Some(("dev", "db-0"))));
        let text = render_table(&f);
        let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("pod ") || l.starts_with("container ")).collect();
        assert_eq!(heads.len(), 6, "{text}");
        assert_eq!(heads[0], "pod dev/db-0 (uid u-1)");
        assert!(heads[1].starts_with(&format!("container {}", "d".repeat(64))));
        assert_eq!(heads[2], "pod prod/web-1 (uid u-1)");
        assert!(heads[3].contains(&"b".repeat(64)) && heads[4].contains(&"c".repeat(64)), "{text}");
        assert!(heads[5].contains(&"a".repeat(64)), "containers outside pods come last: {text}");
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["containers"]["b".repeat(64)]["pod"]["name"], "web-1");
        assert!(json["containers"]["a".repeat(64)].get("pod").is_none(), "no pod, no key (older readers)");
    }
}
