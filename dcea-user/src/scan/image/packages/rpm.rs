//! rpm: the sqlite database (`rpmdb.sqlite`, rpm ≥ 4.16: Fedora 33+, RHEL 9, Alma/Rocky 9).
//! Each row holds an rpm header blob, parsed here directly. Berkeley DB (`Packages`) and
//! NDB (`Packages.db`) databases are detected and reported, not read.

use rusqlite::{Connection, OpenFlags};

use super::{
    super::{
        error::{ImageError, Result},
        fs::FsView,
    },
    Package,
};

pub const SQLITE: &str = "var/lib/rpm/rpmdb.sqlite";
pub const SQLITE_OLD: &str = "usr/lib/sysimage/rpm/rpmdb.sqlite";
pub const SQLITE_SUSE: &str = "usr/lib/sysimage/rpm/Packages.db";
const BDB: [&str; 2] = ["var/lib/rpm/Packages", "usr/lib/sysimage/rpm/Packages"];
const NDB: [&str; 1] = ["var/lib/rpm/Packages.db"];

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub name: Option<String>,
    pub version: Option<String>,
    pub release: Option<String>,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub source_rpm: Option<String>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses an rpm header blob as stored in rpmdb (index count, data size, index, data).
pub fn parse_header(blob: &[u8]) -> Option<Header> {
    let count = be32(blob, 0)? as usize;
    let dlen = be32(blob, 4)? as usize;
    let index_end = 8usize.checked_add(count.checked_mul(16)?)?;
    let data = blob.get(index_end..index_end.checked_add(dlen)?)?;
    let mut h = Header::default();
    for i in 0..count {
        let at = 8 + i * 16;
        let (tag, ty, off) = (be32(blob, at)?, be32(blob, at + 4)?, be32(blob, at + 8)? as usize);
        let string = || -> Option<String> {
            let s = data.get(off..)?;
            let end = s.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&s[..end]).into_owned())
        };
        let is_str = ty == TYPE_STRING || ty == TYPE_I18NSTRING;
        match tag {
            TAG_NAME if is_str => h.name = string(),
            TAG_VERSION if is_str => h.version = string(),
            TAG_RELEASE if is_str => h.release = string(),
            TAG_ARCH if is_str => h.arch = string(),
            TAG_SOURCERPM if is_str => h.source_rpm = string(),
            TAG_EPOCH if ty == TYPE_INT32 => h.epoch = be32(data, off),
            _ => {}
        }
    }
    Some(h)
}

/// `glibc-2.34-60.el9.src.rpm` → `glibc`.
fn source_name(srpm: &str) -> Option<String> {
    let base = srpm.strip_suffix(".rpm")?;
    let base = base.rsplit_once('.')?.0; // arch (src/nosrc)
    let base = base.rsplit_once('-')?.0; // release
    Some(base.rsplit_once('-')?.0.to_string()) // version
}

fn read_sqlite(bytes: &[u8], db: &str, layer: usize) -> Result<Vec<Package>> {
    let err = |e: rusqlite::Error| ImageError::PackageDb { path: db.to_string(), message: e.to_string() };
    // sqlite reads files, so the database goes to a private temp file, removed on drop.
    let mut tmp =
        tempfile::NamedTempFile::new().map_err(|e| ImageError::io("creating a temp file for the rpm database", e))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| ImageError::io("writing the rpm database copy", e))?;
    let result = (|| {
        let conn = Connection::open_with_flags(tmp.path(), OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        let mut stmt = conn.prepare("SELECT blob FROM Packages").map_err(err)?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(err)?;
        let mut out = Vec::new();
        for blob in rows {
            let blob = blob.map_err(err)?;
            let Some(h) = parse_header(&blob) else { continue };
            let (Some(name), Some(version)) = (h.name, h.version) else {
                continue;
            };
            if name == "gpg-pubkey" {
                continue;
            }
            let mut evr = match h.epoch {
                Some(e) if e > 0 => format!("{e}:{version}"),
                _ => version,
            };
            if let Some(r) = h.release {
                evr = format!("{evr}-{r}");
            }
            out.push(Package {
                source: h.source_rpm.as_deref().and_then(source_name).unwrap_or_else(|| name.clone()),
                source_version: evr.clone(),
                name,
                version: evr,
                arch: h.arch,
                manager: "rpm",
                db: db.to_string(),
                ecosystem: None,
                layer,
            });
        }
        Ok(out)
    })();
    drop(tmp);
    result
}

pub fn read(view: &FsView) -> Result<Vec<Package>> {
    for db in [SQLITE, SQLITE_OLD] {
        if let Some((path, node, bytes)) = view.read(db)? {
            return read_sqlite(bytes, &path, node.layer);
        }
    }
    Ok(Vec::new())
}

/// rpm databases this reader does not parse.
pub fn unsupported(view: &FsView) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in BDB {
        if view.lookup(p)?.is_some() {
            out.push(format!("{p}: rpm Berkeley DB database (not read; rpm < 4.16 images)"));
        }
    }
    for p in NDB.iter().chain(&[SQLITE_SUSE]) {
        if view.lookup(p)?.is_some() {
            out.push(format!("{p}: rpm NDB database (not read; SUSE images)"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a header blob the way rpm stores it in rpmdb.
    pub fn header_blob(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, value) in entries {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(value);
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    fn glibc() -> Vec<u8> {
        header_blob(&[
            (TAG_NAME, TYPE_STRING, b"glibc\0"),
            (TAG_VERSION, TYPE_STRING, b"2.34\0"),
            (TAG_RELEASE, TYPE_STRING, b"60.el9\0"),
            (TAG_EPOCH, TYPE_INT32, &1u32.to_be_bytes()),
            (TAG_ARCH, TYPE_STRING, b"x86_64\0"),
            (TAG_SOURCERPM, TYPE_STRING, b"glibc-2.34-60.el9.src.rpm\0"),
        ])
    }

    #[test]
    fn header_parsing() {
        let h = parse_header(&glibc()).unwrap();
        assert_eq!(h.name.as_deref(), Some("glibc"));
        assert_eq!(h.release.as_deref(), Some("60.el9"));
        assert_eq!(h.epoch, Some(1));
        assert_eq!(source_name("glibc-2.34-60.el9.src.rpm").as_deref(), Some("glibc"));
        // Truncated or absurd blobs are rejected, not panicked on.
        assert!(parse_header(&glibc()[..20]).is_none());
        assert!(parse_header(&[0xff; 8]).is_none());
    }

    #[test]
    fn sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)", []).unwrap();
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [glibc()]).unwrap();
        drop(conn);
        let bytes = std::fs::read(&path).unwrap();
        let pkgs = read_sqlite(&bytes, SQLITE, 1).unwrap();
        assert_eq!(pkgs.len(), 1);
        assert_eq!(pkgs[0].version, "1:2.34-60.el9");
        assert_eq!(pkgs[0].source, "glibc");
    }
}
