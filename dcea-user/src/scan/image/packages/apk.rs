//! apk: `/lib/apk/db/installed` (one `X:value` line per field, blank line between
//! packages). `o:` is the origin (source) package that Alpine's advisories name.

use super::{super::error::Result, super::fs::FsView, Package};

pub const INSTALLED: &str = "lib/apk/db/installed";
/// Where newer apk-tools keep it on merged-/usr systems.
pub const INSTALLED_USR: &str = "usr/lib/apk/db/installed";

pub fn parse(text: &str, db: &str, layer: usize) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut origin, mut arch) = (None, None, None, None);
    let mut flush = |name: &mut Option<String>,
                     version: &mut Option<String>,
                     origin: &mut Option<String>,
                     arch: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            out.push(Package {
                source: origin.take().unwrap_or_else(|| n.clone()),
                source_version: v.clone(),
                name: n,
                version: v,
                arch: arch.take(),
                manager: "apk",
                db: db.to_string(),
                ecosystem: None,
                layer,
            });
        }
        *origin = None;
        *arch = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut origin, &mut arch);
            continue;
        }
        match line.split_once(':') {
            Some(("P", v)) => name = Some(v.to_string()),
            Some(("V", v)) => version = Some(v.to_string()),
            Some(("o", v)) => origin = Some(v.to_string()),
            Some(("A", v)) => arch = Some(v.to_string()),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut origin, &mut arch);
    out
}

pub fn read(view: &FsView) -> Result<Vec<Package>> {
    for db in [INSTALLED, INSTALLED_USR] {
        if let Some((path, node, bytes)) = view.read(db)? {
            return Ok(parse(&String::from_utf8_lossy(bytes), &path, node.layer));
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_db() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nS:383152\no:musl\nm:Natanael Copa\n\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nF:lib\nR:libcrypto.so.3\n\n";
        let pkgs = parse(text, INSTALLED, 2);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[1].name, "libcrypto3");
        assert_eq!(pkgs[1].source, "openssl");
        assert_eq!(pkgs[1].version, "3.1.4-r5");
        assert_eq!(pkgs[0].arch.as_deref(), Some("x86_64"));
        assert_eq!(pkgs[0].layer, 2);
    }
}
