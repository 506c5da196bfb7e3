//! The default database compiled into the binary: `dcea-user/data/osv/`, versioned and dated
//! in its MANIFEST.json. Small on purpose; `--db` takes full osv.dev exports.

use super::Database;

const MANIFEST: &str = include_str!("../../../../data/osv/MANIFEST.json");

const FILES: [&str; 30] = [
    include_str!("../../../../data/osv/DEBIAN-CVE-2026-4438.json"),
    include_str!("../../../../data/osv/DEBIAN-CVE-2016-7543.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2019-18423.json"),
    include_str!("../../../../data/osv/DEBIAN-CVE-2021-3156.json"),
    include_str!("../../../../data/osv/DEBIAN-CVE-2023-41056.json"),
    include_str!("../../../../data/osv/DSA-4543-1.json"),
    include_str!("../../../../data/osv/DSA-4776-1.json"),
    include_str!("../../../../data/osv/DSA-4865-1.json"),
    include_str!("../../../../data/osv/DSA-4921-1.json"),
    include_str!("../../../../data/osv/DSA-4982-1.json"),
    include_str!("../../../../data/osv/DSA-5035-1.json"),
    include_str!("../../../../data/osv/DSA-5059-1.json"),
    include_str!("../../../../data/osv/DSA-5081-1.json"),
    include_str!("../../../../data/osv/DSA-5091-1.json"),
    include_str!("../../../../data/osv/DSA-5162-1.json"),
    include_str!("../../../../data/osv/DSA-5281-1.json"),
    include_str!("../../../../data/osv/DSA-5321-1.json"),
    include_str!("../../../../data/osv/DSA-5343-1.json"),
    include_str!("../../../../data/osv/DSA-5514-1.json"),
    include_str!("../../../../data/osv/DSA-5615-1.json"),
    include_str!("../../../../data/osv/DSA-5673-1.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2018-15664.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2019-0211.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2019-14271.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2019-14287.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2019-16884.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2019-20372.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2019-5736.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2021-3711.json"),
    include_str!("../../../../data/osv/ALPINE-CVE-2022-0778.json"),
];

pub fn load() -> Database {
    let manifest: serde_json::Value = serde_json::from_str(MANIFEST).unwrap_or_default();
    let mut db = Database::empty("embedded".into());
    for f in FILES {
        db.add_json(f.as_bytes());
    }
    db.info.version = manifest["version"].as_str().map(str::to_string);
    db.info.date = manifest["date"].as_str().map(str::to_string);
    db
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_database_loads_cleanly() {
        let db = super::load();
        assert_eq!(db.info.stats.advisories, 30);
        assert_eq!(db.info.stats.invalid, 0);
        assert!(db.info.version.is_some() && db.info.date.is_some());
        assert_eq!(db.info.stats.unknown_fields, 0);
        assert!(db.info.stats.skipped_ecosystems.is_empty() && db.info.stats.skipped_ranges == 0);
    }

    #[test]
    fn manifest_lists_every_embedded_file() {
        let manifest: serde_json::Value = serde_json::from_str(super::MANIFEST).unwrap();
        let listed = manifest["files"].as_array().unwrap();
        assert_eq!(listed.len(), super::FILES.len());
        assert_eq!(manifest["count"].as_u64(), Some(super::FILES.len() as u64));
        for (name, text) in listed.iter().zip(super::FILES) {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(format!("{}.json", v["id"].as_str().unwrap()), name.as_str().unwrap());
        }
    }
}
