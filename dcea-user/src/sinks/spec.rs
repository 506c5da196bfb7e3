//! `--output` values.

use std::{path::PathBuf, str::FromStr};

use super::syslog::SyslogTarget;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputSpec {
    Stdout,
    File(PathBuf),
    Syslog(SyslogTarget),
    Http(String),
}

pub const OUTPUT_HELP: &str =
    "stdout | file:PATH | syslog[:unix:PATH|:udp://HOST:PORT|:tcp://HOST:PORT] | http(s)://HOST[:PORT]/PATH";

impl FromStr for OutputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("--output {s:?}: {why} (one of {OUTPUT_HELP})"));
        if s == "stdout" || s == "-" {
            return Ok(OutputSpec::Stdout);
        }
        if let Some(path) = s.strip_prefix("file:") {
            return if path.is_empty() { bad("no path") } else { Ok(OutputSpec::File(path.into())) };
        }
        if s == "syslog" {
            return Ok(OutputSpec::Syslog(SyslogTarget::Unix("/dev/log".into())));
        }
        if let Some(rest) = s.strip_prefix("syslog:") {
            if let Some(path) = rest.strip_prefix("unix:") {
                return if path.is_empty() {
                    bad("no socket path")
                } else {
                    Ok(OutputSpec::Syslog(SyslogTarget::Unix(path.into())))
                };
            }
            for (scheme, make) in
                [("udp://", SyslogTarget::Udp as fn(String) -> SyslogTarget), ("tcp://", SyslogTarget::Tcp)]
            {
                if let Some(addr) = rest.strip_prefix(scheme) {
                    return match addr.rsplit_once(':') {
                        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                            Ok(OutputSpec::Syslog(make(addr.to_string())))
                        }
                        _ => bad("expected HOST:PORT"),
                    };
                }
            }
            return bad("unknown syslog transport");
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return match reqwest::Url::parse(s) {
                Ok(u) if u.host_str().is_some() => Ok(OutputSpec::Http(s.to_string())),
                Ok(_) => bad("no host"),
                Err(e) => bad(&e.to_string()),
            };
        }
        bad("unknown output")
    }
}

impl OutputSpec {
    /// The sink's name in metrics and logs.
    pub fn name(&self) -> String {
        match self {
            OutputSpec::Stdout => "stdout".into(),
            OutputSpec::File(p) => format!("file:{}", p.display()),
            OutputSpec::Syslog(SyslogTarget::Unix(p)) => format!("syslog:unix:{}", p.display()),
            OutputSpec::Syslog(SyslogTarget::Udp(a)) => format!("syslog:udp://{a}"),
            OutputSpec::Syslog(SyslogTarget::Tcp(a)) => format!("syslog:tcp://{a}"),
            OutputSpec::Http(u) => u.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_says_what_is_wrong() {
        assert_eq!("stdout".parse::<OutputSpec>(), Ok(OutputSpec::Stdout));
        assert_eq!("file:/var/log/dcea.json".parse(), Ok(OutputSpec::File("/var/log/dcea.json".into())));
        assert_eq!("syslog".parse(), Ok(OutputSpec::Syslog(SyslogTarget::Unix("/dev/log".into()))));
        assert_eq!(
            "syslog:udp://127.0.0.1:514".parse(),
            Ok(OutputSpec::Syslog(SyslogTarget::Udp("127.0.0.1:514".into())))
        );
        assert_eq!("syslog:tcp://[::1]:6514".parse(), Ok(OutputSpec::Syslog(SyslogTarget::Tcp("[::1]:6514".into()))));
        assert_eq!("https://sidekick:2801/".parse(), Ok(OutputSpec::Http("https://sidekick:2801/".into())));
        for bad in ["file:", "syslog:udp://host", "syslog:smtp://x:1", "ftp://x", "kafka", "http://"] {
            let e = bad.parse::<OutputSpec>().unwrap_err();
            assert!(e.contains("--output") && e.contains("file:PATH"), "{bad}: {e}");
        }
    }
}
