//! A container with a network for the quarantine tests and benchmark: a veth pair between a
//! network namespace the test makes (`dcea-q-<pid>-<n>`) and the container's own, addresses of
//! 10.213.0.0/16 the test owns, and a helper listening on the host side. Docker here runs with
//! `--bridge=none`: the test wires the container itself. Everything is removed on drop
//! (deleting the namespace deletes the veth pair).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

pub struct Wire {
    pub ns: String,
    pub host_ip: String,
    pub container_ip: String,
    listener: Option<Child>,
    heard: Option<Receiver<String>>,
}

impl Wire {
    /// Wire the container whose init is `container_pid`; `n` (0..4) tells apart the wires of
    /// one test process.
    pub fn connect(container_pid: u32, n: u32) -> Wire {
        let me = std::process::id();
        let ns = format!("dcea-q-{me}-{n}");
        let subnet = (me % 60) * 4 + n;
        let (host_if, cont_if) = (format!("qh{}{n}", me % 1_000_000), format!("qc{}{n}", me % 1_000_000));
        let ip = |args: &[&str]| run(Command::new("ip").args(args));
        ip(&["netns", "add", &ns]);
        // From here on the drop removes the namespace.
        let wire = Wire {
            ns: ns.clone(),
            host_ip: format!("10.213.{subnet}.1"),
            container_ip: format!("10.213.{subnet}.2"),
            listener: None,
            heard: None,
        };
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", &host_if, "type", "veth", "peer", "name", &cont_if]);
        ip(&["-n", &ns, "link", "set", &cont_if, "netns", &container_pid.to_string()]);
        ip(&["-n", &ns, "addr", "add", &format!("{}/30", wire.host_ip), "dev", &host_if]);
        ip(&["-n", &ns, "link", "set", &host_if, "up"]);
        let pid = container_pid.to_string();
        let nsenter = |args: &[&str]| run(Command::new("nsenter").args(["-t", &pid, "-n", "ip"]).args(args));
        nsenter(&["addr", "add", &format!("{}/30", wire.container_ip), "dev", &cont_if]);
        nsenter(&["link", "set", &cont_if, "up"]);
        wire
    }

    /// Run `dcea-test-helper ARGS…` in the host-side namespace, its stdout lines read by
    /// [`Wire::hear`]; waits for its `listening` line when `ready` is set.
    pub fn listen(&mut self, args: &[&str], ready: bool) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(crate::helper_bin())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn listener");
        let (tx, heard) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.listener = Some(child);
        self.heard = Some(heard);
        if ready {
            assert!(self.hear("listening", Duration::from_secs(5)), "the listener did not start");
        }
    }

    /// Did the listener print a line starting with `prefix` within `timeout`?
    pub fn hear(&self, prefix: &str, timeout: Duration) -> bool {
        let Some(heard) = &self.heard else { return false };
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match heard.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Forget what the listener said so far.
    pub fn drain(&self) {
        if let Some(h) = &self.heard {
            while h.try_recv().is_ok() {}
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = l.kill();
            let _ = l.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
