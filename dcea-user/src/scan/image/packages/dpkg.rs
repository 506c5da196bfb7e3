//! dpkg: `/var/lib/dpkg/status` (deb822 paragraphs) and distroless `status.d/*` files.
//! The layer a package comes from is the layer that last wrote its database file; for the
//! shared status file that is refined by the package's own `info/<pkg>.list` file.

use super::{super::error::Result, super::fs::FsView, Package};

pub const STATUS: &str = "var/lib/dpkg/status";
pub const STATUS_D: &str = "var/lib/dpkg/status.d/";
const INFO: &str = "var/lib/dpkg/info";

/// Fields of one deb822 paragraph (continuation lines joined).
pub fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Installed means dpkg has the files on disk: not `not-installed`, not `config-files`.
fn installed(status: Option<&str>) -> bool {
    match status.and_then(|s| s.split_whitespace().nth(2)) {
        Some(state) => !matches!(state, "not-installed" | "config-files"),
        // status.d entries of distroless images carry no Status field.
        None => true,
    }
}

pub fn parse(text: &str, db: &str, layer: usize) -> Vec<Package> {
    paragraphs(text)
        .iter()
        .filter(|p| installed(field(p, "Status")))
        .filter_map(|p| {
            let name = field(p, "Package")?.to_string();
            let version = field(p, "Version")?.to_string();
            // "Source: glibc" or "Source: bash (5.2.15-2)".
            let (source, source_version) = match field(p, "Source") {
                Some(s) => match s.split_once(' ') {
                    Some((n, v)) => (n.to_string(), v.trim().trim_start_matches('(').trim_end_matches(')').to_string()),
                    None => (s.to_string(), version.clone()),
                },
                None => (name.clone(), version.clone()),
            };
            Some(Package {
                name,
                version,
                source,
                source_version,
                arch: field(p, "Architecture").map(str::to_string),
                manager: "dpkg",
                db: db.to_string(),
                ecosystem: None,
                layer,
            })
        })
        .collect()
}

pub fn read(view: &FsView) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    if let Some((path, node, bytes)) = view.read(STATUS)? {
        let mut pkgs = parse(&String::from_utf8_lossy(bytes), &path, node.layer);
        for p in &mut pkgs {
            // The .list file is written by the layer that installed the package.
            let qualified = p.arch.as_deref().map(|a| format!("{INFO}/{}:{a}.list", p.name));
            let plain = format!("{INFO}/{}.list", p.name);
            if let Some(n) = qualified.and_then(|q| view.get(&q)).or_else(|| view.get(&plain)) {
                p.layer = n.layer;
            }
        }
        out.extend(pkgs);
    }
    for (path, _) in view.children(STATUS_D)? {
        if path.ends_with(".md5sums") {
            continue;
        }
        if let Some((path, node, bytes)) = view.read(&path)? {
            out.extend(parse(&String::from_utf8_lossy(bytes), &path, node.layer));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TEXT: &str = "Package: bash\nEssential: yes\nStatus: install ok installed\nPriority: required\nArchitecture: amd64\nSource: bash (5.2.15-2)\nVersion: 5.2.15-2+b8\nDescription: GNU Bourne Again SHell\n Bash is an sh-compatible command language interpreter.\n .\n More text.\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u14\n\nPackage: oldpkg\nStatus: deinstall ok config-files\nVersion: 1.0-1\n\nPackage: purged\nStatus: purge ok not-installed\n\nPackage: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\n";

    #[test]
    fn status_keeps_source_packages() {
        let pkgs = parse(STATUS_TEXT, STATUS, 0);
        let names: Vec<_> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "libc6", "zlib1g"]);
        assert_eq!(pkgs[0].source, "bash");
        assert_eq!(pkgs[0].source_version, "5.2.15-2");
        assert_eq!(pkgs[0].version, "5.2.15-2+b8");
        assert_eq!(pkgs[1].source, "glibc");
        assert_eq!(pkgs[1].source_version, "2.36-9+deb12u14");
        assert_eq!(pkgs[2].source, "zlib1g");
        assert_eq!(pkgs[2].version, "1:1.2.13.dfsg-1");
    }
}
