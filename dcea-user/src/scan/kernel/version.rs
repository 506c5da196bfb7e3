//! Which kernel is this, really? `uname -r` alone is not enough: Debian keeps the ABI number
//! there (`6.1.0-18-amd64`) and the package version in `uname -v` (`Debian 6.1.76-1`); Ubuntu
//! records the stable base in /proc/version_signature; RHEL-family kernels keep 4.18.0 for a
//! decade while backporting fixes, so only their package release says anything.

use std::{cmp::Ordering, collections::BTreeMap, fmt};

use serde::Serialize;

use crate::scan::Error;

/// An upstream kernel version. `-rcN` sorts before the release: 5.17-rc6 < 5.17 < 5.17.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub rc: Option<u32>,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> KernelVersion {
        KernelVersion { major, minor, patch, rc: None }
    }

    pub fn branch(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// Parse the leading `X.Y[.Z][-rcN]` of a string; the rest is returned unparsed.
    pub fn parse_prefix(s: &str) -> Option<(KernelVersion, &str)> {
        let (major, rest) = leading_number(s)?;
        let rest = rest.strip_prefix('.')?;
        let (minor, mut rest) = leading_number(rest)?;
        let mut patch = 0;
        if let Some(r) = rest.strip_prefix('.')
            && let Some((p, r2)) = leading_number(r)
        {
            patch = p;
            rest = r2;
        }
        let mut rc = None;
        if let Some(r) = rest.strip_prefix("-rc")
            && let Some((n, r2)) = leading_number(r)
        {
            rc = Some(n);
            rest = r2;
        }
        Some((KernelVersion { major, minor, patch, rc }, rest))
    }

    /// Parse a whole version (`5.10.102`, `5.17-rc6`, `2.6.22`); trailing text is an error.
    pub fn parse(s: &str) -> Result<KernelVersion, Error> {
        match KernelVersion::parse_prefix(s.trim()) {
            Some((v, "")) => Ok(v),
            _ => Err(Error::parse("kernel version", format!("{s:?} is not X.Y[.Z][-rcN]"))),
        }
    }
}

fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 || end > 9 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

impl Ord for KernelVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then(
            match (self.rc, other.rc) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(&b),
            },
        )
    }
}

impl PartialOrd for KernelVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 || self.rc.is_none() {
            write!(f, ".{}", self.patch)?;
        }
        if let Some(rc) = self.rc {
            write!(f, "-rc{rc}")?;
        }
        Ok(())
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Who built the kernel, which decides how its version is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// Mainline, stable, Fedora, Arch, custom builds: the upstream version is the truth.
    Upstream,
    Debian,
    Ubuntu,
    /// RHEL, CentOS, AlmaLinux, Rocky, Oracle: fixes are backported into an old base.
    Rhel,
    /// Amazon Linux kernels follow the stable series (`5.10.205-195.807.amzn2`).
    Amazon,
    Suse,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Upstream => "upstream",
            Vendor::Debian => "debian",
            Vendor::Ubuntu => "ubuntu",
            Vendor::Rhel => "rhel",
            Vendor::Amazon => "amazon",
            Vendor::Suse => "suse",
        }
    }
}

/// The raw strings a kernel identifies itself with (this host's, or another machine's given on
/// the command line).
#[derive(Clone, Debug, Default)]
pub struct KernelInput {
    /// `uname -r`
    pub release: String,
    /// `uname -v`
    pub version: String,
    /// /proc/version_signature (Ubuntu only).
    pub signature: Option<String>,
    /// Content of /etc/os-release.
    pub os_release: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelInfo {
    pub release: String,
    pub vendor: Vendor,
    /// The upstream version the kernel is built from, as well as it can be told.
    pub upstream: KernelVersion,
    /// Whether `upstream` includes the stable patch level. False for Debian without a package
    /// version, Ubuntu without a signature, and RHEL/SUSE (backports make it meaningless).
    pub upstream_reliable: bool,
    /// The distribution's kernel package version (`6.1.76-1`, `5.15.0-91.101`, `4.18.0-513.el8`).
    pub package: Option<String>,
    /// Distribution release from os-release (`bookworm`, `22.04`, `8.9`).
    pub os_release: BTreeMap<String, String>,
    pub notes: Vec<String>,
}

/// Parse /etc/os-release: `KEY=value` lines, values optionally quoted. Junk lines are skipped;
/// they never fail a scan.
pub fn parse_os_release(content: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in content.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.to_string(), v.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    out
}

/// Find `Debian <pkgversion>` in `uname -v`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)`.
fn debian_package(version: &str) -> Option<&str> {
    let mut words = version.split_whitespace();
    while let Some(w) = words.next() {
        if w == "Debian" {
            let v = words.next()?;
            return KernelVersion::parse_prefix(v).map(|_| v);
        }
    }
    None
}

/// `#101-Ubuntu SMP …` → 101 (the ABI upload number).
fn ubuntu_build(version: &str) -> Option<&str> {
    let w = version.split_whitespace().find(|w| w.ends_with("-Ubuntu"))?;
    let n = w.trim_start_matches('#').trim_end_matches("-Ubuntu");
    (!n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '~' || c == '.')).then_some(n)
}

/// Strip a trailing `.x86_64` / `.aarch64` / `.noarch` architecture from an RPM release.
fn strip_arch(release: &str) -> &str {
    for arch in [".x86_64", ".aarch64", ".ppc64le", ".s390x", ".i686", ".noarch"] {
        if let Some(r) = release.strip_suffix(arch) {
            return r;
        }
    }
    release
}

fn is_rhel_release(suffix: &str) -> bool {
    // `.el8`, `.el8_5`, `.el9_3`, `.el7`, Oracle UEK `.el8uek`.
    suffix.split('.').any(|part| part.len() >= 3 && part.starts_with("el") && part.as_bytes()[2].is_ascii_digit())
}

pub fn identify(input: &KernelInput) -> Result<KernelInfo, Error> {
    let release = input.release.trim();
    let (base, suffix) = KernelVersion::parse_prefix(release)
        .ok_or_else(|| Error::parse("kernel release", format!("{release:?} does not start with X.Y")))?;
    let os_release = input.os_release.as_deref().map(parse_os_release).unwrap_or_default();
    let mut info = KernelInfo {
        release: release.to_string(),
        vendor: Vendor::Upstream,
        upstream: base,
        upstream_reliable: true,
        package: None,
        os_release,
        notes: Vec::new(),
    };

    // Ubuntu: "Ubuntu 5.15.0-91.101-generic 5.15.131"
    if let Some(sig) = input.signature.as_deref().map(str::trim).filter(|s| s.starts_with("Ubuntu ")) {
        let mut words = sig.split_whitespace().skip(1);
        let pkg = words.next().unwrap_or_default();
        let upstream = words.next().and_then(|w| KernelVersion::parse(w).ok());
        info.vendor = Vendor::Ubuntu;
        // The flavour (-generic, -aws, …) follows the ABI.upload pair.
        let pkg_core = match pkg.rfind('-') {
            Some(i) if pkg[..i].contains('-') => &pkg[..i],
            _ => pkg,
        };
        info.package = Some(pkg_core.to_string());
        match upstream {
            Some(u) => info.upstream = u,
            None => {
                info.upstream_reliable = false;
                info.notes.push(format!("version_signature {sig:?} has no upstream version"));
            }
        }
        return Ok(info);
    }
    if let Some(pkg) = debian_package(&input.version) {
        info.vendor = Vendor::Debian;
        info.package = Some(pkg.to_string());
        if let Some((v, _)) = KernelVersion::parse_prefix(pkg) {
            info.upstream = v;
        }
        return Ok(info);
    }
    if let Some(build) = ubuntu_build(&input.version) {
        // No signature (e.g. checking another machine): the package version is recoverable,
        // the stable base is not.
        info.vendor = Vendor::Ubuntu;
        let abi = suffix.trim_start_matches('-').split('-').next().unwrap_or_default();
        info.package = Some(format!("{}-{abi}.{build}", base_without_rc(&base)));
        info.upstream_reliable = false;
        info.notes.push("no /proc/version_signature: the Ubuntu kernel's stable base is unknown".into());
        return Ok(info);
    }
    let rpm_release = strip_arch(suffix);
    if rpm_release.contains(".amzn") {
        info.vendor = Vendor::Amazon;
        info.package = Some(format!("{}{rpm_release}", base_without_rc(&base)));
        return Ok(info);
    }
    if is_rhel_release(rpm_release) {
        info.vendor = Vendor::Rhel;
        info.package = Some(format!("{}{rpm_release}", base_without_rc(&base)));
        info.upstream_reliable = false;
        info.notes.push(format!(
            "RHEL-family kernel {}: fixes are backported into the {} base, so only distribution fixed versions decide",
            info.package.as_deref().unwrap_or_default(),
            base_without_rc(&base)
        ));
        return Ok(info);
    }
    if suffix.ends_with("-default") && suffix.starts_with("-150") || id_is(&info.os_release, "sles") {
        info.vendor = Vendor::Suse;
        info.package = Some(format!("{}{}", base_without_rc(&base), suffix.trim_end_matches("-default")));
        info.upstream_reliable = false;
        info.notes.push("SUSE kernel: fixes are backported; upstream version comparison is not reliable".into());
        return Ok(info);
    }
    let debian_abi = ["-amd64", "-arm64", "-cloud-amd64", "-rt-amd64", "-686-pae", "-armmp"];
    if debian_abi.iter().any(|a| suffix.ends_with(a)) && base.patch == 0 {
        info.vendor = Vendor::Debian;
        info.upstream_reliable = false;
        info.notes.push(
            "Debian ABI release without the package version (`uname -v` carries it, e.g. \"Debian 6.1.76-1\")".into(),
        );
    }
    Ok(info)
}

fn base_without_rc(v: &KernelVersion) -> String {
    format!("{}.{}.{}", v.major, v.minor, v.patch)
}

fn id_is(os: &BTreeMap<String, String>, id: &str) -> bool {
    os.get("ID").is_some_and(|v| v == id)
}

/// Compare two distribution package versions with dpkg's algorithm (epoch, upstream,
/// revision; `~` sorts before anything). It also orders RPM `version-release` strings and
/// Ubuntu `ABI.upload` pairs correctly for the forms kernels and runtimes use.
pub fn compare_package_versions(a: &str, b: &str) -> Ordering {
    crate::scan::version::dpkg::compare(a, b)
}

/// Compare RPM `version-release` strings the way rpmvercmp does: runs of digits or letters,
/// separators ignored, a number beats letters, `~` sorts first.
pub fn compare_rpm_versions(a: &str, b: &str) -> Ordering {
    crate::scan::version::rpm::rpmvercmp(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str) -> KernelVersion {
        KernelVersion::parse(s).unwrap()
    }

    fn input(release: &str, version: &str, signature: Option<&str>) -> KernelInput {
        KernelInput {
            release: release.into(),
            version: version.into(),
            signature: signature.map(Into::into),
            os_release: None,
        }
    }

    /// Real `uname -r` / `uname -v` / version_signature triples from distribution kernels.
    #[test]
    fn real_distribution_kernels() {
        #[rustfmt::skip]
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vendor, &'a str, bool, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "6.1.0-18-amd64",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
                None,
                Vendor::Debian,
                "6.1.76",
                true,
                Some("6.1.76-1"),
            ),
            (
                "6.1.0-28-cloud-amd64",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)",
                None,
                Vendor::Debian,
                "6.1.119",
                true,
                Some("6.1.119-1"),
            ),
            (
                "5.10.0-28-amd64",
                "#1 SMP Debian 5.10.209-2 (2024-01-31)",
                None,
                Vendor::Debian,
                "5.10.209",
                true,
                Some("5.10.209-2"),
            ),
            (
                "4.19.0-26-amd64",
                "#1 SMP Debian 4.19.304-1 (2024-01-09)",
                None,
                Vendor::Debian,
                "4.19.304",
                true,
                Some("4.19.304-1"),
            ),
            (
                "3.16.0-4-amd64",
                "#1 SMP Debian 3.16.36-1+deb8u1 (2016-09-03)",
                None,
                Vendor::Debian,
                "3.16.36",
                true,
                Some("3.16.36-1+deb8u1"),
            ),
            (
                "6.12.9+bpo-amd64",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.12.9-1~bpo12+1 (2025-01-19)",
                None,
                Vendor::Debian,
                "6.12.9",
                true,
                Some("6.12.9-1~bpo12+1"),
            ),
            ("6.1.0-18-amd64", "#1 SMP PREEMPT_DYNAMIC", None, Vendor::Debian, "6.1.0", false, None),
            (
                "5.15.0-91-generic",
                "#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023",
                Some("Ubuntu 5.15.0-91.101-generic 5.15.131"),
                Vendor::Ubuntu,
                "5.15.131",
                true,
                Some("5.15.0-91.101"),
            ),
            (
                "6.8.0-31-generic",
                "#31-Ubuntu SMP PREEMPT_DYNAMIC Sat Apr 20 00:40:06 UTC 2024",
                Some("Ubuntu 6.8.0-31.31-generic 6.8.1"),
                Vendor::Ubuntu,
                "6.8.1",
                true,
                Some("6.8.0-31.31"),
            ),
            (
                "5.4.0-42-generic",
                "#46-Ubuntu SMP Fri Jul 10 00:24:02 UTC 2020",
                Some("Ubuntu 5.4.0-42.46-generic 5.4.44"),
                Vendor::Ubuntu,
                "5.4.44",
                true,
                Some("5.4.0-42.46"),
            ),
            (
                "5.19.0-1025-aws",
                "#26~22.04.1-Ubuntu SMP Mon Apr 24 01:58:15 UTC 2023",
                Some("Ubuntu 5.19.0-1025.26~22.04.1-aws 5.19.17"),
                Vendor::Ubuntu,
                "5.19.17",
                true,
                Some("5.19.0-1025.26~22.04.1"),
            ),
            (
                "5.15.0-1051-azure",
                "#59-Ubuntu SMP Thu Oct 5 09:25:37 UTC 2023",
                None,
                Vendor::Ubuntu,
                "5.15.0",
                false,
                Some("5.15.0-1051.59"),
            ),
            (
                "4.18.0-513.5.1.el8_9.x86_64",
                "#1 SMP Fri Sep 29 05:21:10 EDT 2023",
                None,
                Vendor::Rhel,
                "4.18.0",
                false,
                Some("4.18.0-513.5.1.el8_9"),
            ),
            (
                "3.10.0-1160.el7.x86_64",
                "#1 SMP Mon Oct 19 16:18:59 UTC 2020",
                None,
                Vendor::Rhel,
                "3.10.0",
                false,
                Some("3.10.0-1160.el7"),
            ),
            (
                "5.14.0-362.8.1.el9_3.x86_64",
                "#1 SMP PREEMPT_DYNAMIC Wed Nov 8 17:36:32 UTC 2023",
                None,
                Vendor::Rhel,
                "5.14.0",
                false,
                Some("5.14.0-362.8.1.el9_3"),
            ),
            ("4.18.0-513.el8", "#1 SMP", None, Vendor::Rhel, "4.18.0", false, Some("4.18.0-513.el8")),
            (
                "5.4.17-2136.300.7.el8uek.x86_64",
                "#2 SMP Fri Oct 8 16:23:01 PDT 2021",
                None,
                Vendor::Rhel,
                "5.4.17",
                false,
                Some("5.4.17-2136.300.7.el8uek"),
            ),
            (
                "5.10.205-195.807.amzn2.x86_64",
                "#1 SMP Tue Jan 16 18:28:59 UTC 2024",
                None,
                Vendor::Amazon,
                "5.10.205",
                true,
                Some("5.10.205-195.807.amzn2"),
            ),
            (
                "6.1.72-96.166.amzn2023.x86_64",
                "#1 SMP PREEMPT_DYNAMIC Wed Jan 10 22:24:59 UTC 2024",
                None,
                Vendor::Amazon,
                "6.1.72",
                true,
                Some("6.1.72-96.166.amzn2023"),
            ),
            (
                "4.14.336-257.562.amzn2.x86_64",
                "#1 SMP Sat Feb 24 09:50:35 UTC 2024",
                None,
                Vendor::Amazon,
                "4.14.336",
                true,
                Some("4.14.336-257.562.amzn2"),
            ),
            (
                "5.14.21-150500.55.39-default",
                "#1 SMP PREEMPT_DYNAMIC Tue Dec 5 10:06:35 UTC 2023 (2e4092e)",
                None,
                Vendor::Suse,
                "5.14.21",
                false,
                Some("5.14.21-150500.55.39"),
            ),
            (
                "6.5.6-300.fc39.x86_64",
                "#1 SMP PREEMPT_DYNAMIC Fri Oct  6 19:57:21 UTC 2023",
                None,
                Vendor::Upstream,
                "6.5.6",
                true,
                None,
            ),
            (
                "6.7.4-arch1-1",
                "#1 SMP PREEMPT_DYNAMIC Mon, 05 Feb 2024 22:07:49 +0000",
                None,
                Vendor::Upstream,
                "6.7.4",
                true,
                None,
            ),
            ("6.18.44-fc-v445", "#1 SMP PREEMPT_DYNAMIC @0", None, Vendor::Upstream, "6.18.44", true, None),
            ("5.17.0-rc6", "#1 SMP PREEMPT", None, Vendor::Upstream, "5.17-rc6", true, None),
            ("6.9.0-rc1-00001-gabcdef", "#3 SMP", None, Vendor::Upstream, "6.9-rc1", true, None),
            ("5.15.148-gke", "#1 SMP", None, Vendor::Upstream, "5.15.148", true, None),
            ("6.6.0", "#1", None, Vendor::Upstream, "6.6.0", true, None),
        ];
        assert!(cases.len() >= 20);
        for (release, version, sig, vendor, upstream, reliable, package) in cases {
            let info = identify(&input(release, version, *sig)).unwrap_or_else(|e| panic!("{release}: {e}"));
            assert_eq!(info.vendor, *vendor, "{release}");
            assert_eq!(info.upstream, kv(upstream), "{release}");
            assert_eq!(info.upstream_reliable, *reliable, "{release}");
            assert_eq!(info.package.as_deref(), *package, "{release}");
        }
    }

    #[test]
    fn malformed_releases_are_errors_not_panics() {
        for bad in ["", "linux", "6", "6.", ".1", "x.y.z", "99999999999.1", "\u{0}"] {
            assert!(identify(&input(bad, "", None)).is_err(), "{bad:?}");
        }
        // A junk signature or uname -v never panics.
        assert!(identify(&input("5.15.0-91-generic", "#-Ubuntu", Some("Ubuntu"))).is_ok());
        let info = identify(&input("5.15.0-91-generic", "", Some("Ubuntu junk"))).unwrap();
        assert_eq!(info.vendor, Vendor::Ubuntu);
        assert!(!info.upstream_reliable);
        assert!(identify(&input("6.1.0-1-amd64", "Debian", None)).is_ok());
        assert!(identify(&input("6.1.0-1-amd64", "Debian notaversion", None)).is_ok());
    }

    #[test]
    fn rc_ordering() {
        assert!(kv("5.17-rc5") < kv("5.17-rc6"));
        assert!(kv("5.17-rc6") < kv("5.17"));
        assert!(kv("5.16.11") < kv("5.17-rc1"));
        assert!(kv("5.17") < kv("5.17.1"));
        assert_eq!(kv("5.17.0"), kv("5.17"));
        assert_eq!(kv("5.17-rc6").to_string(), "5.17-rc6");
        assert_eq!(kv("5.10.102").to_string(), "5.10.102");
        assert!(KernelVersion::parse("5.10.102-1").is_err());
    }

    #[test]
    fn os_release_with_junk() {
        let os = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\0\0garbage\n=novalue\nbad key=1\n# comment\nID=debian\nVERSION_CODENAME='bookworm'\nVERSION_ID=\"12\n",
        );
        assert_eq!(os.get("ID").map(String::as_str), Some("debian"));
        assert_eq!(os.get("VERSION_CODENAME").map(String::as_str), Some("bookworm"));
        assert_eq!(os.get("PRETTY_NAME").map(String::as_str), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os.get("VERSION_ID").map(String::as_str), Some("\"12"), "unbalanced quote kept verbatim");
        assert!(!os.contains_key("bad key"));
        assert!(parse_os_release("\u{0}\n\n===\n=x").is_empty());
    }

    #[test]
    fn rpm_version_ordering() {
        use Ordering::*;
        for (a, b, want) in [
            ("4.18.0-513.el8", "4.18.0-348.20.1.el8_5", Greater),
            ("4.18.0-348.20.1.el8_5", "4.18.0-348.el8", Greater),
            ("4.18.0-348.12.2.el8_5", "4.18.0-348.20.1.el8_5", Less),
            ("3.10.0-327.36.3.el7", "3.10.0-327.36.2.el7", Greater),
            ("3.10.0-1160.el7", "3.10.0-327.36.3.el7", Greater),
            ("5.10.205-195.807.amzn2", "5.10.205-195.807.amzn2", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0a", "1.0", Greater),
        ] {
            assert_eq!(compare_rpm_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_rpm_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn package_version_ordering() {
        use Ordering::*;
        let cases = [
            ("6.1.76-1", "6.1.76-1", Equal),
            ("6.1.75-1", "6.1.76-1", Less),
            ("6.1.76-1~bpo11+1", "6.1.76-1", Less),
            ("6.1.76-1+deb12u1", "6.1.76-1", Greater),
            ("1:1.0-1", "2.0-1", Greater),
            ("5.10.92-2", "5.10.92-1", Greater),
            ("5.15.0-91.101", "5.15.0-100.110", Less),
            ("1.1.5+ds1-1+deb12u1", "1.1.5+ds1-1", Greater),
            ("1.6.20~ds1-1", "1.6.20-1", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_package_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_package_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
