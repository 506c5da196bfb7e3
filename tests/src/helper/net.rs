//! The network quarantine's probes (`dcea-test-helper net-*`), std and libc only, so they run
//! in a busybox container with the host's libraries mounted and in a VM guest.
//!
//! - `net-listen <ip> <port>`: a TCP echo server and a UDP receiver on the same port; prints
//!   `listening`, then `tcp <peer>` per connection and `udp <payload>` per datagram.
//! - `net-probe tcp|udp <ip> <port>`: one TCP connect with a line echoed back, or one UDP
//!   datagram sent; prints `ok` (exit 0) or `error errno=<n> <message>` (exit 1).
//! - `tcp-stream <ip> <port> <secs>`: one connection, a line every 100 ms, each echo awaited
//!   for 500 ms: prints `connected`, then `ok` or `fail <why>` per line.
//! - `loopback-check`: TCP and UDP over 127.0.0.1 inside the caller's network namespace.
//! - `quarantine-probe <ip> <port>`: in a new network namespace (only `lo`, brought up): a TCP
//!   connect to `<ip>:<port>` and the loopback check; prints `remote=ok|errno=<n>
//!   loopback=ok|<why>` (no address of the namespace routes to `<ip>`: ENETUNREACH unless the
//!   quarantine refuses the connect first, with EPERM).
//! - `tcp-sink <ip> <port>`, `tcp-send <ip> <port> <bytes>`: the bystander throughput benchmark.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

fn addr(ip: &str, port: &str) -> Result<SocketAddr, String> {
    let ip: IpAddr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    Ok(SocketAddr::new(ip, port.parse().map_err(|e| format!("{port}: {e}"))?))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn io_error(e: &std::io::Error) -> String {
    format!("error errno={} {e}", e.raw_os_error().unwrap_or(0))
}

pub fn listen(ip: &str, port: &str) -> Result<u8, String> {
    let at = addr(ip, port)?;
    let tcp = TcpListener::bind(at).map_err(|e| format!("bind tcp {at}: {e}"))?;
    let udp = UdpSocket::bind(at).map_err(|e| format!("bind udp {at}: {e}"))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = udp.recv_from(&mut buf) {
            say(&format!("udp {}", String::from_utf8_lossy(&buf[..n]).trim()));
        }
    });
    say("listening");
    for conn in tcp.incoming() {
        let Ok(mut conn) = conn else { continue };
        say(&format!("tcp {}", conn.peer_addr().map(|a| a.to_string()).unwrap_or_default()));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(0)
}

fn tcp_echo(at: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&at, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"ping\n")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    if line == "ping\n" { Ok(()) } else { Err(std::io::Error::other(format!("echo {line:?}"))) }
}

pub fn probe(kind: &str, ip: &str, port: &str) -> Result<u8, String> {
    let at = addr(ip, port)?;
    let result = match kind {
        "tcp" => tcp_echo(at),
        "udp" => UdpSocket::bind(if at.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
            .and_then(|u| u.send_to(b"dcea-udp-probe", at))
            .map(drop),
        _ => return Err(format!("net-probe {kind}: tcp or udp")),
    };
    match result {
        Ok(()) => {
            say("ok");
            Ok(0)
        }
        Err(e) => {
            say(&io_error(&e));
            Ok(1)
        }
    }
}

pub fn stream(ip: &str, port: &str, secs: &str) -> Result<u8, String> {
    let at = addr(ip, port)?;
    let secs: u64 = secs.parse().map_err(|e| format!("{secs}: {e}"))?;
    let s = TcpStream::connect_timeout(&at, Duration::from_secs(2)).map_err(|e| io_error(&e))?;
    s.set_read_timeout(Some(Duration::from_millis(500))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_millis(500))).map_err(|e| e.to_string())?;
    say("connected");
    let mut reader = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut writer = s;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let sent = format!("line {n}\n");
        let r = writer.write_all(sent.as_bytes()).and_then(|()| {
            let mut got = String::new();
            // A line lost earlier may still arrive: read until this one's echo or a timeout.
            loop {
                got.clear();
                reader.read_line(&mut got)?;
                if got.is_empty() {
                    return Err(std::io::Error::other("closed"));
                }
                if got == sent {
                    return Ok(());
                }
            }
        });
        match r {
            Ok(()) => say("ok"),
            Err(e) => say(&format!("fail {e}")),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(0)
}

fn loopback() -> Result<(), String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("tcp bind: {e}"))?;
    let at = l.local_addr().map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut c, _) = l.accept()?;
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf)?;
        c.write_all(&buf)
    });
    tcp_echo_exact(at).map_err(|e| format!("tcp: {e}"))?;
    let _ = server.join();
    let u = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp bind: {e}"))?;
    u.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let me = u.local_addr().map_err(|e| e.to_string())?;
    u.send_to(b"loop", me).map_err(|e| format!("udp send: {e}"))?;
    let mut buf = [0u8; 8];
    let (n, _) = u.recv_from(&mut buf).map_err(|e| format!("udp recv: {e}"))?;
    if &buf[..n] != b"loop" {
        return Err("udp: wrong payload".into());
    }
    Ok(())
}

fn tcp_echo_exact(at: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&at, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf)?;
    if &buf == b"ping\n" { Ok(()) } else { Err(std::io::Error::other("wrong echo")) }
}

pub fn loopback_check() -> Result<u8, String> {
    match loopback() {
        Ok(()) => {
            say("ok");
            Ok(0)
        }
        Err(e) => {
            say(&format!("error {e}"));
            Ok(1)
        }
    }
}

/// Bring `lo` up in the current network namespace.
fn lo_up() -> Result<(), String> {
    // SAFETY: a datagram socket for the ioctl, an ifreq we own, closed at the end.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        let rc = if rc == 0 { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } else { rc };
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(format!("lo up: {err}"));
        }
    }
    Ok(())
}

pub fn quarantine_probe(ip: &str, port: &str) -> Result<u8, String> {
    let at = addr(ip, port)?;
    // SAFETY: unshare of this single-threaded process's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
    }
    lo_up()?;
    let remote = match TcpStream::connect_timeout(&at, Duration::from_secs(2)) {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("errno={}", e.raw_os_error().unwrap_or(0)),
    };
    let lo = match loopback() {
        Ok(()) => "ok".to_string(),
        Err(e) => e.replace(' ', "_"),
    };
    say(&format!("remote={remote} loopback={lo}"));
    Ok(0)
}

/// `tcp-sink <ip> <port>`: accept connections one after another, read each to its end, answer
/// with the byte count (8 bytes, big-endian). Prints `listening`.
pub fn sink(ip: &str, port: &str) -> Result<u8, String> {
    let at = addr(ip, port)?;
    let tcp = TcpListener::bind(at).map_err(|e| format!("bind tcp {at}: {e}"))?;
    say("listening");
    for conn in tcp.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let _ = conn.write_all(&total.to_be_bytes());
    }
    Ok(0)
}

/// `tcp-send <ip> <port> <bytes>`: one connection, `bytes` written in 256 KiB writes, then the
/// sink's count awaited. Prints `secs=<seconds> bytes=<count>`.
pub fn send(ip: &str, port: &str, bytes: &str) -> Result<u8, String> {
    let at = addr(ip, port)?;
    let bytes: u64 = bytes.parse().map_err(|e| format!("{bytes}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&at, Duration::from_secs(2)).map_err(|e| io_error(&e))?;
    let chunk = vec![0x5au8; 256 << 10];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).map_err(|e| io_error(&e))?;
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).map_err(|e| io_error(&e))?;
    say(&format!("secs={:.6} bytes={}", started.elapsed().as_secs_f64(), u64::from_be_bytes(ack)));
    Ok(0)
}
