//! Alert delivery with real parts: a stalled stdout reader under an event flood, an HTTP
//! receiver that goes away, storm control, rsyslog, Prometheus, and bad input.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use dcea_tests::{ESCAPE_RULE, HostAnchor, dcea_bin, docker, helper_bin, monotonic_ns, ready_timeout, require_root};
use serde_json::Value;

/// A `dcea monitor` whose stdout the test handles itself.
struct Agent {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn start(args: &[&str], stdout: Stdio) -> Agent {
        let mut child = Command::new(dcea_bin())
            .arg("monitor")
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", dcea_bin().display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (lines, err) = (stderr.clone(), child.stderr.take().expect("stderr"));
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let agent = Agent { child, stderr };
        agent.wait_stderr("dcea: ready", ready_timeout());
        agent
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.stderr.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no '{needle}' on dcea's stderr within {timeout:?}:\n{}",
                self.stderr_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT, wait for the exit, and return the stop summary line.
    fn stop(mut self) -> String {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(200));
        self.wait_stderr("dcea: stopping", Duration::from_secs(1))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        dcea_tests::stop_child(&mut self.child);
    }
}

/// A fake container (helper-made namespaces) entering the anchor's mount namespace: one
/// Critical escape alert; returns the escaping pid.
fn escape(anchor: &HostAnchor) -> u32 {
    let out = Command::new(helper_bin())
        .args(["fake-container-escape", &anchor.pid().to_string(), "mnt", "50"])
        .output()
        .expect("spawn helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("helper printed no pid: {stdout} / {}", String::from_utf8_lossy(&out.stderr)))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The numbers of the stop summary's delivery part: (alerts, folded, shed, delivered by `sink`).
fn delivery_numbers(summary: &str, sink: &str) -> (u64, u64, u64, u64) {
    let part = summary.split("delivery: ").nth(1).unwrap_or_else(|| panic!("no delivery part: {summary}"));
    let num = |after: &str| -> u64 {
        let i = part.find(after).unwrap_or_else(|| panic!("no '{after}' in {part}"));
        part[..i].trim_end().rsplit([' ', ',']).next().unwrap().parse().unwrap()
    };
    let delivered = part
        .split(&format!("{sink} delivered "))
        .nth(1)
        .and_then(|s| s.split([',', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{sink} delivered' in {part}"));
    (num(" alerts"), num(" folded"), num(" shed"), delivered)
}

fn kernel_lost(summary: &str) -> (u64, u64) {
    let n = |after: &str| -> u64 {
        let i = summary.find(after).unwrap_or_else(|| panic!("no '{after}' in {summary}"));
        summary[..i].trim_end().rsplit(' ').next().unwrap().parse().unwrap()
    };
    (n(" lost (ring buffer full)"), n(" lost on the priority channel"))
}

// ---------------------------------------------------------------- HTTP receiver on loopback

/// A Falcosidekick stand-in: takes POSTs and keeps their JSON bodies; `garbage` answers
/// with bytes that are not HTTP.
struct Receiver {
    stop: Arc<AtomicBool>,
    port: u16,
    join: Option<thread::JoinHandle<()>>,
}

fn handle(mut s: TcpStream, got: &Mutex<Vec<Value>>, garbage: bool, stop: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if stop.load(Ordering::Relaxed) {
            // Stopped: kept-alive connections die too, unanswered.
            return;
        }
        if garbage {
            let _ = s.write_all(b"\x00\x01banana not http\r\n\r\n");
            return;
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("POST body is not JSON ({e})"));
        got.lock().unwrap().push(v);
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

impl Receiver {
    fn start(port: u16, got: Arc<Mutex<Vec<Value>>>, garbage: bool) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("binding {port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let join = thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let (got, st) = (got.clone(), st.clone());
                        thread::spawn(move || handle(s, &got, garbage, &st));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { stop, port, join: Some(join) }
    }

    /// Close the listening socket: connections are refused until the next start.
    fn stop(mut self) -> u16 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            j.join().unwrap();
        }
        self.port
    }
}

fn escapes_received(got: &Mutex<Vec<Value>>, pids: &[u32]) -> Vec<u32> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == ESCAPE_RULE)
        .filter_map(|v| v["output_fields"]["proc.pid"].as_u64().map(|p| p as u32))
        .filter(|p| pids.contains(p))
        .collect()
}

#[test]
fn http_sink_spools_while_the_receiver_is_down_and_replays_in_order_once() {
    if !require_root("http_sink_spools_while_the_receiver_is_down") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(port, got.clone(), false);
    let url = format!("http://127.0.0.1:{port}/");
    let agent = Agent::start(
        &["--mode", "ebpf", "--state-dir", state.path().to_str().unwrap(), "--output", &url, "--storm-window", "0s"],
        Stdio::null(),
    );
    let anchor = HostAnchor::start();
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(escape(&anchor));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while escapes_received(&got, &pids).len() < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(escapes_received(&got, &pids), pids, "delivered while the receiver is up");

    let port = receiver.stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(15) {
        pids.push(escape(&anchor));
        thread::sleep(Duration::from_millis(700));
    }
    let while_down = escapes_received(&got, &pids).len();
    assert_eq!(while_down, 3, "nothing can arrive while the receiver is down");
    let spool = state.path().join("spool");
    assert!(spool.exists(), "the spool is under the state dir");

    let _receiver = Receiver::start(port, got.clone(), false);
    for _ in 0..3 {
        pids.push(escape(&anchor));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while escapes_received(&got, &pids).len() < pids.len() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let received = escapes_received(&got, &pids);
    assert_eq!(received, pids, "every escape, in order, none twice (stderr:\n{})", agent.stderr_text());
    let summary = agent.stop();
    assert!(summary.contains(&format!("{url} delivered ")), "{summary}");
}

#[test]
fn garbage_http_responses_are_retried_and_bad_spool_segments_set_aside() {
    if !require_root("garbage_http_responses_are_retried") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    // Segments an earlier (or newer) dcea left behind: truncated, corrupt, newer format.
    let dir = state.path().join("spool").join(format!("http___127.0.0.1_{port}_"));
    std::fs::create_dir_all(&dir).unwrap();
    let header = |version: u32| {
        let mut h = b"DCEASPL\0".to_vec();
        h.extend(version.to_le_bytes());
        h.extend([0; 4]);
        h
    };
    let record = |payload: &[u8]| {
        let mut r = (payload.len() as u32).to_le_bytes().to_vec();
        r.extend(crc32(payload).to_le_bytes());
        r.extend(payload);
        r
    };
    let old = br#"{"rule":"From an earlier run","priority":"Warning","output":"x","output_fields":{}}"#;
    let mut truncated = header(1);
    truncated.extend(record(old));
    truncated.extend(&record(old)[..20]);
    std::fs::write(dir.join("0000000000000001.spool"), &truncated).unwrap();
    let mut corrupt = header(1);
    corrupt.extend(record(b"{\"rule\":\"corrupt\"}"));
    let n = corrupt.len();
    corrupt[n - 2] ^= 0x55;
    std::fs::write(dir.join("0000000000000002.spool"), &corrupt).unwrap();
    std::fs::write(dir.join("0000000000000003.spool"), header(7)).unwrap();

    let got = Arc::new(Mutex::new(Vec::new()));
    let garbage = Receiver::start(port, got.clone(), true);
    let mut agent = Agent::start(
        &["--mode", "ebpf", "--state-dir", state.path().to_str().unwrap(), "--output", &url, "--http-timeout", "1s"],
        Stdio::null(),
    );
    let text = agent.stderr_text();
    assert!(text.contains("truncated mid-record"), "{text}");
    assert!(text.contains("newer dcea (spool format 7"), "{text}");
    let anchor = HostAnchor::start();
    let pids = vec![escape(&anchor), escape(&anchor)];
    agent.wait_stderr("spooling until it answers", Duration::from_secs(10));
    thread::sleep(Duration::from_secs(2));
    assert!(agent.alive(), "garbage responses are not fatal:\n{}", agent.stderr_text());
    assert!(got.lock().unwrap().is_empty());

    let port = garbage.stop();
    let _good = Receiver::start(port, got.clone(), false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while escapes_received(&got, &pids).len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(escapes_received(&got, &pids), pids, "delivered once it answers:\n{}", agent.stderr_text());
    let earlier = got.lock().unwrap().iter().filter(|v| v["rule"] == "From an earlier run").count();
    assert_eq!(earlier, 1, "the readable record before the truncation is delivered");
    let set_aside = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".spool.rejected"))
        .count();
    assert_eq!(set_aside, 3, "every damaged segment is kept aside for inspection");
    agent.stop();
}

/// CRC-32 (IEEE), as the spool writes it; bitwise, for a test.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn unwritable_file_sink_is_a_clear_start_up_error() {
    if !require_root("unwritable_file_sink") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(dcea_bin())
        .args(["monitor", "--mode", "poll", "--state-dir", state.path().to_str().unwrap()])
        .args(["--output", "file:/proc/dcea-no-such-dir/alerts.json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--output file:/proc/dcea-no-such-dir/alerts.json: cannot open it for appending"),
        "{stderr}"
    );
    assert!(!stderr.contains("dcea: ready"), "{stderr}");
}

// ---------------------------------------------------------------- rsyslog

#[test]
fn syslog_sink_reaches_a_real_rsyslog_over_udp_and_a_unix_socket() {
    if !require_root("syslog_sink_reaches_rsyslog")
        || !dcea_tests::skip::require_program("syslog_sink_reaches_rsyslog", "rsyslogd", "rsyslog")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let sock = d.join("log.sock");
    let out = d.join("received.log");
    let conf = format!(
        r#"global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
module(load="imudp")
input(type="imuxsock" Socket="{sock}" UseSpecialParser="off" CreatePath="on")
input(type="imudp" address="127.0.0.1" port="{port}")
template(name="fields" type="string" string="%inputname%|%syslogseverity%|%syslogfacility%|%app-name%|%msgid%|%structured-data%|%msg%\n")
action(type="omfile" file="{out}" template="fields")
"#,
        dir = d.display(),
        sock = sock.display(),
        out = out.display()
    );
    std::fs::write(d.join("rsyslog.conf"), conf).unwrap();
    let mut rsyslog = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(d.join("rsyslog.conf"))
        .arg("-i")
        .arg(d.join("rsyslog.pid"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsyslogd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(sock.exists(), "rsyslogd made no socket");
    let state = tempfile::tempdir().unwrap();
    let udp = format!("syslog:udp://127.0.0.1:{port}");
    let unix = format!("syslog:unix:{}", sock.display());
    let agent = Agent::start(
        &["--mode", "ebpf", "--state-dir", state.path().to_str().unwrap(), "--output", &udp, "--output", &unix],
        Stdio::null(),
    );
    let anchor = HostAnchor::start();
    let pid = escape(&anchor);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ours = |l: &str| l.contains(&format!("\"proc.pid\":{pid},")) || l.contains(&format!("\"proc.pid\":{pid}}}"));
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<String> = text.lines().filter(|l| ours(l)).map(str::to_string).collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        thread::sleep(Duration::from_millis(100));
    };
    agent.stop();
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    assert_eq!(lines.len(), 2, "one message per transport: {lines:?}");
    let inputs: Vec<&str> = lines.iter().map(|l| l.split('|').next().unwrap()).collect();
    assert!(inputs.contains(&"imudp") && inputs.contains(&"imuxsock"), "{inputs:?}");
    for l in &lines {
        let f: Vec<&str> = l.splitn(7, '|').collect();
        assert_eq!(f[1], "2", "Critical is severity 2: {l}");
        assert_eq!(f[2], "3", "facility daemon: {l}");
        assert_eq!(f[3], "dcea", "{l}");
        assert!(
            f[5].starts_with("[dcea@32473 rule=\"Container escape into host namespace\" priority=\"Critical\""),
            "{l}"
        );
        let json: Value =
            serde_json::from_str(f[6].trim()).unwrap_or_else(|e| panic!("MSG is not the JSON ({e}): {l}"));
        assert_eq!(json["rule"], ESCAPE_RULE);
    }
}

// ---------------------------------------------------------------- Prometheus

#[test]
fn metrics_are_scraped_by_a_real_prometheus_and_move() {
    if !require_root("metrics_are_scraped_by_prometheus")
        || !dcea_tests::skip::require_program("metrics_are_scraped_by_prometheus", "prometheus", "prometheus")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mport, pport) = (free_port(), free_port());
    let state = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{mport}");
    let mut agent = Agent::start(
        &["--mode", "ebpf", "--state-dir", state.path().to_str().unwrap(), "--metrics-addr", &addr],
        Stdio::null(),
    );
    assert_eq!(reqwest::blocking::get(format!("http://{addr}/healthz")).unwrap().status(), 200);
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dcea\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let client = reqwest::blocking::Client::new();
    let query = |q: &str| -> Vec<(String, f64)> {
        let url = format!("http://127.0.0.1:{pport}/api/v1/query");
        let Ok(resp) = client.get(&url).query(&[("query", q)]).send().and_then(|r| r.text()) else { return Vec::new() };
        let v: Value = serde_json::from_str(&resp).unwrap_or(Value::Null);
        v["data"]["result"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        (
                            r["metric"].to_string(),
                            r["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let wait_for = |q: &str, ok: &dyn Fn(f64) -> bool| -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, v)) = query(q).into_iter().next()
                && ok(v)
            {
                return v;
            }
            assert!(Instant::now() < deadline, "Prometheus never answered {q} as expected");
            thread::sleep(Duration::from_millis(500));
        }
    };
    wait_for("up{job=\"dcea\"}", &|v| v == 1.0);
    assert!(wait_for("dcea_programs_attached", &|v| v > 0.0) > 0.0);
    let escapes = "sum(dcea_alerts_total{rule=\"Container escape into host namespace\"}) or vector(0)";
    let before = wait_for(escapes, &|_| true);
    let decoded_before = wait_for("dcea_records_decoded_total", &|_| true);
    let anchor = HostAnchor::start();
    for _ in 0..3 {
        escape(&anchor);
    }
    let after = wait_for(escapes, &|v| v >= before + 3.0);
    assert!(after >= before + 3.0);
    wait_for("dcea_records_decoded_total", &|v| v > decoded_before);
    wait_for("sum(dcea_alerts_delivered_total{sink=\"stdout\"})", &|v| v >= 3.0);
    for series in [
        "dcea_kernel_events_emitted_total",
        "dcea_kernel_events_lost_total",
        "dcea_trust_passes_total",
        "dcea_sink_queue_depth",
    ] {
        assert!(!query(series).is_empty(), "{series} is not in Prometheus");
    }
    let lost_channels = query("dcea_kernel_events_lost_total");
    assert!(lost_channels.iter().any(|(m, _)| m.contains("priority")), "{lost_channels:?}");
    assert!(agent.alive());
    let _ = prom.kill();
    let _ = prom.wait();
    agent.stop();
}

// ---------------------------------------------------------------- Docker: storm and flood

const CRED_RULE: &str = "Credential file opened in a container";

fn same_container(field: &Value, id: &str) -> bool {
    field.as_str().is_some_and(|f| !f.is_empty() && (id.starts_with(f) || f.starts_with(id)))
}

#[test]
fn storm_of_20000_hits_becomes_a_handful_of_alerts_and_exact_summaries() {
    if !require_root("storm_of_20000_hits") || !docker::available("storm_of_20000_hits") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("alerts.json");
    let sink = format!("file:{}", file.display());
    let agent = Agent::start(
        &["--mode", "ebpf", "--state-dir", state.path().to_str().unwrap(), "--output", &sink],
        Stdio::null(),
    );
    let started = Instant::now();
    let c = docker::Container::run_named(
        "dcea-storm",
        &[],
        // 1,000 hits a second for 20 s (about; the loop itself takes time too).
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do j=0; while [ $j -lt 1000 ]; do cat /etc/shadow >/dev/null; j=$((j+1)); done; sleep 1; i=$((i+1)); done",
        ],
    );
    assert_eq!(c.wait(), 0, "the loop ran");
    let took = started.elapsed();
    thread::sleep(Duration::from_secs(1));
    let summary = agent.stop();
    let text = std::fs::read_to_string(&file).unwrap();
    let ours: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["rule"] == CRED_RULE && same_container(&v["output_fields"]["container.id"], &c.id))
        .collect();
    let firsts = ours.iter().filter(|v| v["output_fields"]["dcea.suppressed"].is_null()).count() as u64;
    let summaries: Vec<u64> = ours.iter().filter_map(|v| v["output_fields"]["dcea.suppressed"].as_u64()).collect();
    let total = firsts + summaries.iter().sum::<u64>();
    eprintln!("storm: 20000 hits in {took:?} -> {firsts} alerts + {} summaries {summaries:?}", summaries.len());
    // One alert and one summary per 10 s window (a busy machine stretches the 20 s).
    let windows = took.as_secs() / 10 + 2;
    assert!(
        firsts <= windows && summaries.len() as u64 <= windows,
        "a handful, got {firsts} + {summaries:?} in {took:?}"
    );
    assert!(!summaries.is_empty(), "summaries carry the count");
    let (lost_main, lost_priority) = kernel_lost(&summary);
    if lost_main == 0 {
        assert_eq!(total, 20000, "every hit is either delivered or counted in a summary; {summary}");
    } else {
        assert!(total <= 20000 && total + lost_main >= 20000, "{total} counted, {lost_main} lost: {summary}");
    }
    assert_eq!(lost_priority, 0, "{summary}");
    for s in ours.iter().filter(|v| !v["output_fields"]["dcea.suppressed"].is_null()) {
        assert_eq!(s["output_fields"]["dcea.storm_window"], "10s");
    }
}

/// The issue's flood: two containers reading /etc/shadow in a loop, a privileged one making
/// UTS namespaces; forever, or `(reads, unshares)` times each.
fn flood_containers(prefix: &str, bounded: Option<(u32, u32)>) -> [docker::Container; 3] {
    let repeat = |n: Option<u32>, body: &str| match n {
        Some(n) => format!("i=0; while [ $i -lt {n} ]; do {body}; i=$((i+1)); done"),
        None => format!("while true; do {body}; done"),
    };
    let shadow = repeat(bounded.map(|b| b.0), "cat /etc/shadow >/dev/null");
    let unshare = repeat(bounded.map(|b| b.1), "unshare -u true");
    [
        docker::Container::run_named(prefix, &[], &["sh", "-c", &shadow]),
        docker::Container::run_named(prefix, &[], &["sh", "-c", &shadow]),
        docker::Container::run_named(prefix, &["--privileged"], &["sh", "-c", &unshare]),
    ]
}

/// A privileged `--pid=host` container entering the anchor's mount namespace, then `tail`.
fn nsenter_escape_container(name: &str, anchor: &HostAnchor, tail: &str) -> docker::Container {
    let mnt = format!("--mount=/proc/{}/ns/mnt", anchor.pid());
    docker::Container::run_named(
        name,
        &["--privileged", "--pid=host"],
        &["sh", "-c", &format!("nsenter {mnt} -- true{tail}")],
    )
}

#[test]
fn flood_with_a_stalled_stdout_reader_still_delivers_the_escape() {
    if !require_root("flood_with_a_stalled_stdout_reader") || !docker::available("flood_with_a_stalled_stdout_reader") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // Storm control off: every hit is an alert, so the stalled pipe fills and the queue sheds.
    let mut agent = Agent::start(
        &[
            "--mode",
            "ebpf",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--storm-window",
            "0s",
            "--output-queue",
            "2000",
        ],
        Stdio::piped(),
    );
    let stdout = agent.child.stdout.take().unwrap();
    let anchor = HostAnchor::start();
    let flood = flood_containers("dcea-flood", None);
    let stall_start = Instant::now();
    thread::sleep(Duration::from_secs(3));
    let escaper = nsenter_escape_container("dcea-flood-escape", &anchor, "; sleep 60");
    // The reader stalls for 15 s, as a slow log shipper or a full pipe would.
    thread::sleep(Duration::from_secs(15).saturating_sub(stall_start.elapsed()));
    let resumed = monotonic_ns();
    let (tx, rx) = mpsc::channel::<(u64, String)>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((monotonic_ns(), line)).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut escape_at = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while escape_at.is_none() && Instant::now() < deadline {
        if let Ok((t, l)) = rx.recv_timeout(Duration::from_millis(100)) {
            if l.contains(ESCAPE_RULE) {
                let v: Value = serde_json::from_str(&l).unwrap();
                if same_container(&v["output_fields"]["container.id"], &escaper.id) {
                    escape_at = Some(t);
                }
            }
            lines.push(l);
        }
    }
    let escape_at = escape_at.unwrap_or_else(|| {
        panic!("no escape alert within 5 s of resuming ({} lines read):\n{}", lines.len(), agent.stderr_text())
    });
    let latency_ms = (escape_at - resumed) / 1_000_000;
    eprintln!("flood: escape read {latency_ms} ms after the reader resumed ({} lines before it)", lines.len());
    assert!(latency_ms < 1000, "the escape within 1 s of resuming, took {latency_ms} ms");
    drop(flood);
    // Read the rest while the agent stops; then every number must add up.
    let reader = thread::spawn(move || rx.iter().count());
    assert!(agent.alive());
    let summary = agent.stop();
    let rest = reader.join().unwrap();
    let read = (lines.len() + rest) as u64;
    let (alerts, folded, shed, delivered) = delivery_numbers(&summary, "stdout");
    eprintln!("flood: {summary}");
    assert_eq!(folded, 0, "storm control off");
    assert_eq!(delivered, read, "what stdout delivered is what the reader read: {summary}");
    assert_eq!(alerts - shed, delivered, "raised minus shed is delivered: {summary}");
    let (_, lost_priority) = kernel_lost(&summary);
    assert_eq!(lost_priority, 0, "the priority channel never overflows: {summary}");
}

#[test]
fn flood_with_the_http_receiver_down_delivers_every_alert_from_the_spool_in_order_once() {
    const TEST: &str = "flood_with_the_http_receiver_down";
    if !require_root(TEST) || !docker::available(TEST) {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("alerts.json");
    let port = free_port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(port, got.clone(), false);
    let url = format!("http://127.0.0.1:{port}/");
    // Storm control off: thousands of alerts pile up in the spool. The file sink beside it is
    // the reference: the HTTP receiver must end with exactly what the file holds, in its order.
    let agent = Agent::start(
        &[
            "--mode",
            "ebpf",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--storm-window",
            "0s",
            "--output",
            &format!("file:{}", file.display()),
            "--output",
            &url,
        ],
        Stdio::null(),
    );
    let anchor = HostAnchor::start();
    let port = receiver.stop();
    let down = Instant::now();
    // A bounded flood (about 10 s of work), the escape in the middle.
    let flood = flood_containers("dcea-httpflood", Some((3000, 1000)));
    thread::sleep(Duration::from_secs(2));
    let escaper = nsenter_escape_container("dcea-httpflood-escape", &anchor, "");
    assert_eq!(escaper.wait(), 0, "the escape ran: {}", escaper.logs());
    thread::sleep(Duration::from_secs(15).saturating_sub(down.elapsed()));
    assert!(got.lock().unwrap().is_empty(), "nothing arrives while the receiver is down");
    let _receiver = Receiver::start(port, got.clone(), false);
    for c in &flood {
        assert_eq!(c.wait(), 0, "the flood ran: {}", c.logs());
    }
    thread::sleep(Duration::from_secs(1));
    // Everything raised so far is in the file; the spool drains behind it.
    let reference = || -> Vec<Value> {
        std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while got.lock().unwrap().len() < reference().len() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    let replay_took = down.elapsed();
    let stderr = agent.stderr_text();
    let summary = agent.stop();
    let (alerts, _, shed, delivered) = delivery_numbers(&summary, &url);
    let (reference, received) = (reference(), got.lock().unwrap().clone());
    eprintln!("http flood: {} alerts via the spool, all in by {replay_took:?}; {summary}", received.len());
    assert_eq!(shed, 0, "nothing shed within the spool bound: {summary}");
    assert_eq!(alerts, reference.len() as u64, "the file holds every alert: {summary}");
    assert!(reference.len() > 1000, "a flood, not a trickle: {}", reference.len());
    assert_eq!(delivered, received.len() as u64, "{summary}");
    assert_eq!(received.len(), reference.len(), "every alert reached the receiver (stderr:\n{stderr})");
    if let Some(i) = (0..received.len()).find(|&i| received[i] != reference[i]) {
        panic!("order differs at alert {i}: file {} / http {}", reference[i], received[i]);
    }
    assert!(
        received
            .iter()
            .any(|v| v["rule"] == ESCAPE_RULE && same_container(&v["output_fields"]["container.id"], &escaper.id)),
        "the escape came through the spool"
    );
}

#[test]
fn a_setns_storm_never_fills_the_priority_channel_ahead_of_an_escape() {
    if !require_root("a_setns_storm_never_fills_the_priority_channel") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("alerts.json");
    let agent = Agent::start(
        &[
            "--mode",
            "ebpf",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--output",
            &format!("file:{}", file.display()),
        ],
        Stdio::null(),
    );
    let anchor = HostAnchor::start();
    // Storms from two processes at once, the escape right after: the priority ring (512 KiB,
    // about 1,000 records) would be full many times over if these setns records went there.
    // Host processes changing their namespaces for real; none is a container entering the host's.
    let storms: Vec<_> = (0..2).map(|_| thread::spawn(|| dcea_tests::bench::loops::ns_pair_us(200_000))).collect();
    thread::sleep(Duration::from_millis(300));
    let pid = escape(&anchor);
    for s in storms {
        s.join().unwrap();
    }
    thread::sleep(Duration::from_secs(1));
    let summary = agent.stop();
    let (_, lost_priority) = kernel_lost(&summary);
    assert_eq!(lost_priority, 0, "the priority channel never overflows: {summary}");
    let text = std::fs::read_to_string(&file).unwrap();
    let escaped = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v["rule"] == ESCAPE_RULE && v["output_fields"]["proc.pid"].as_u64() == Some(pid as u64));
    assert!(escaped, "the escape was delivered: {summary}");
    eprintln!("setns storm: {summary}");
}
