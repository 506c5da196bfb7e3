//! Syslog sink: RFC 5424 over a unix datagram socket (/dev/log), UDP, or TCP with octet
//! counting; reconnects on error.

use std::{
    io::{self, Write},
    net::{TcpStream, UdpSocket},
    os::unix::net::UnixDatagram,
    path::PathBuf,
    time::Duration,
};

use super::{SinkWriter, rfc5424};
use crate::output::{Alert, Format, render};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTarget {
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
}

enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

pub struct SyslogWriter {
    target: SyslogTarget,
    conn: Option<Conn>,
    pid: u32,
}

impl SyslogWriter {
    pub fn new(target: SyslogTarget) -> SyslogWriter {
        SyslogWriter { target, conn: None, pid: std::process::id() }
    }

    fn connect(&self) -> io::Result<Conn> {
        Ok(match &self.target {
            SyslogTarget::Unix(path) => {
                let s = UnixDatagram::unbound()?;
                s.connect(path)?;
                Conn::Unix(s)
            }
            SyslogTarget::Udp(addr) => {
                let s = UdpSocket::bind(if addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })?;
                s.connect(addr)?;
                Conn::Udp(s)
            }
            SyslogTarget::Tcp(addr) => {
                let s = TcpStream::connect(addr)?;
                s.set_write_timeout(Some(Duration::from_secs(5)))?;
                Conn::Tcp(s)
            }
        })
    }
}

impl SinkWriter for SyslogWriter {
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
        let msg = rfc5424::format(alert, rfc5424::FACILITY_DAEMON, self.pid, &render(alert, Format::Json));
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let result = match self.conn.as_mut() {
            Some(Conn::Unix(s)) => s.send(msg.as_bytes()).map(|_| ()),
            Some(Conn::Udp(s)) => s.send(msg.as_bytes()).map(|_| ()),
            Some(Conn::Tcp(s)) => s.write_all(rfc5424::frame_octet_counted(&msg).as_bytes()),
            None => Ok(()),
        };
        if result.is_err() {
            // Reconnect on the retry.
            self.conn = None;
        }
        result
    }
}
