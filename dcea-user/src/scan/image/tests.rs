//! Layer walking and image assembly on archives built in memory, hostile ones included.

use std::io::Write;

use sha2::{Digest, Sha256};

use super::{
    archive::{LoadOptions, load},
    error::ImageError,
    layer::{Compression, Limits, NodeKind, hex},
};

pub enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// A tar whose names are written raw, so hostile paths (`../x`) survive.
pub fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data, ty, link): (&str, &[u8], _, Option<&str>) = match e {
            E::File(n, d) => (n, d, tar::EntryType::Regular, None),
            E::Dir(n) => (n, &[], tar::EntryType::Directory, None),
            E::Link(n, t) => (n, &[], tar::EntryType::Symlink, Some(t)),
            E::Hard(n, t) => (n, &[], tar::EntryType::Link, Some(t)),
        };
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = link {
            raw.linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// A docker-save archive (manifest.json last, as docker writes it) of the given layers.
pub fn docker_archive(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config =
        serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let names: Vec<String> = (0..layers.len()).map(|i| format!("l{i}/layer.tar")).collect();
    let manifest =
        serde_json::to_vec(&serde_json::json!([{"Config": config_name, "RepoTags": ["t:1"], "Layers": names}]))
            .unwrap();
    let mut entries: Vec<E> = layers.iter().zip(&names).map(|(l, n)| E::File(n, l)).collect();
    entries.push(E::File(&config_name, &config));
    entries.push(E::File("manifest.json", &manifest));
    tar_of(&entries)
}

fn write_tmp(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, data).unwrap();
    p.to_string_lossy().into_owned()
}

fn opts() -> LoadOptions {
    let mut o = LoadOptions::default();
    o.walk.blob_digest = true;
    o.walk.diff_id = true;
    o.walk.file_digests = true;
    o
}

fn all(_: &str) -> bool {
    true
}

#[test]
fn whiteouts_and_opaque_dirs_give_the_exact_final_view() {
    let l0 = tar_of(&[
        E::Dir("etc/"),
        E::File("etc/a", b"a0"),
        E::File("etc/b", b"b0"),
        E::Dir("opt/app/"),
        E::File("opt/app/old", b"x"),
        E::Dir("opt/app/sub/"),
        E::File("opt/app/sub/deep", b"y"),
        E::File("keep", b"k"),
    ]);
    let l1 = tar_of(&[
        E::File("etc/.wh.a", b""),
        E::File("etc/b", b"b1"),
        // The opaque marker after a new entry of the same layer must not hide that entry.
        E::File("opt/app/new", b"n"),
        E::File("opt/app/.wh..wh..opq", b""),
        E::File("etc/.wh.missing", b""),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_tmp(&dir, "img.tar", &docker_archive(&[l0, gzip(&l1)]));
    let img = load(&path, &opts(), &all).unwrap();
    let files: Vec<&str> = img.view.iter().filter(|(_, n)| n.kind == NodeKind::File).map(|(p, _)| p.as_str()).collect();
    assert_eq!(files, ["etc/b", "keep", "opt/app/new"]);
    assert_eq!(img.view.read("etc/b").unwrap().unwrap().2, b"b1");
    assert_eq!(img.view.get("etc/b").unwrap().layer, 1);
    assert!(img.view.get("opt/app/sub").is_none());
    assert_eq!(img.layers[1].compression, Compression::Gzip);
    // docker-save lists no blob digests, the config's diff_ids are checked instead.
    assert_eq!(img.mismatches.len(), 1, "{:?}", img.mismatches);
    assert_eq!(img.mismatches[0].what, "layer 1 diff_id");
}

#[test]
fn path_traversal_is_rejected_and_nothing_is_written() {
    let canary = std::env::temp_dir().join("dcea-traversal-canary");
    let _ = std::fs::remove_file(&canary);
    let evil = tar_of(&[E::File("etc/../../../../tmp/dcea-traversal-canary", b"pwned")]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_tmp(&dir, "img.tar", &docker_archive(&[evil]));
    match load(&path, &opts(), &all) {
        Err(ImageError::PathTraversal { path, .. }) => assert!(path.contains("../")),
        other => panic!("expected a traversal error, got {other:?}"),
    }
    assert!(!canary.exists());
    // Absolute names are normalised into the root, not refused.
    let abs = tar_of(&[E::File("/etc/passwd", b"root:x:0:0")]);
    let path = write_tmp(&dir, "abs.tar", &docker_archive(&[abs]));
    assert!(load(&path, &opts(), &all).unwrap().view.get("etc/passwd").is_some());
}

#[test]
fn symlinks_resolve_inside_the_root_and_loops_or_escapes_are_errors() {
    let l = tar_of(&[
        E::File("usr/lib/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        E::Link("etc/os-release", "../usr/lib/os-release"),
        E::Link("loop1", "loop2"),
        E::Link("loop2", "/loop1"),
        E::Link("etc/escape", "../../../../etc/shadow"),
        E::Link("abs", "/usr/lib"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_tmp(&dir, "img.tar", &docker_archive(&[l]));
    let img = load(&path, &opts(), &all).unwrap();
    assert_eq!(img.view.resolve("etc/os-release").unwrap().as_deref(), Some("usr/lib/os-release"));
    assert_eq!(img.view.resolve("abs/os-release").unwrap().as_deref(), Some("usr/lib/os-release"));
    assert!(matches!(img.view.resolve("loop1"), Err(ImageError::SymlinkLoop { .. })));
    assert!(matches!(img.view.resolve("etc/escape"), Err(ImageError::SymlinkEscape { .. })));
    assert_eq!(super::distro::detect(&img.view).unwrap().unwrap().id, "debian");
}

#[test]
fn truncated_gzip_is_a_clear_error() {
    let l = gzip(&tar_of(&[E::File("a", &vec![7u8; 100_000])]));
    let cut = l[..l.len() / 2].to_vec();
    let dir = tempfile::tempdir().unwrap();
    // Written as an OCI-style blob name so the outer archive stays well-formed.
    let path = write_tmp(&dir, "img.tar", &docker_archive(&[cut]));
    let err = load(&path, &opts(), &all).unwrap_err();
    assert!(err.to_string().contains("truncated") || err.to_string().contains("l0/layer.tar"), "{err}");
}

#[test]
fn absurd_sizes_and_bombs_hit_limits() {
    // A header claiming 2^40 bytes with no data behind it.
    let mut h = tar::Header::new_gnu();
    h.set_path("huge").unwrap();
    h.set_size(1 << 40);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut l = h.as_bytes().to_vec();
    l.resize(4096, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts();
    o.limits = Limits { max_expanded_bytes: 1 << 30, ..Limits::default() };
    let path = write_tmp(&dir, "huge.tar", &docker_archive(&[gzip(&l)]));
    assert!(matches!(load(&path, &o, &all), Err(ImageError::Bomb { what: "entry size", .. })));

    // 64 MiB of zeros gzip to ~64 KiB: past the ratio limit once above the floor.
    let zeros = tar_of(&[E::File("z", &vec![0u8; 64 << 20])]);
    let path = write_tmp(&dir, "bomb.tar", &docker_archive(&[gzip(&zeros)]));
    o.limits = Limits { ratio_floor: 1 << 20, max_ratio: 100, ..Limits::default() };
    assert!(matches!(load(&path, &o, &all), Err(ImageError::Bomb { what: "compression ratio", .. })));
    o.limits = Limits { max_expanded_bytes: 8 << 20, ..Limits::default() };
    assert!(matches!(load(&path, &o, &all), Err(ImageError::Bomb { what: "entry size", .. })));
    let mib = vec![1u8; 1 << 20];
    let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    let files: Vec<E> = names.iter().map(|n| E::File(n, &mib)).collect();
    let path = write_tmp(&dir, "big.tar", &docker_archive(&[gzip(&tar_of(&files))]));
    assert!(matches!(load(&path, &o, &all), Err(ImageError::Bomb { what: "expanded size", .. })));
    o.limits = Limits { max_entries: 2, ..Limits::default() };
    let many = tar_of(&[E::File("a", b""), E::File("b", b""), E::File("c", b"")]);
    let path = write_tmp(&dir, "many.tar", &docker_archive(&[many]));
    assert!(matches!(load(&path, &o, &all), Err(ImageError::Bomb { what: "entry count", .. })));
}

#[test]
fn duplicate_entries_later_wins_with_a_warning_and_hard_links_copy() {
    let l = tar_of(&[E::File("x", b"first"), E::File("x", b"second"), E::Hard("y", "x")]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_tmp(&dir, "img.tar", &docker_archive(&[l]));
    let img = load(&path, &opts(), &all).unwrap();
    assert_eq!(img.view.read("x").unwrap().unwrap().2, b"second");
    assert_eq!(img.view.get("y").unwrap().sha256, img.view.get("x").unwrap().sha256);
    assert!(img.warnings.iter().any(|w| w.contains("duplicate entry x")), "{:?}", img.warnings);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (i, junk) in [&b""[..], b"not a tar at all", &[0x1f, 0x8b, 0, 0, 0], &[0xff; 2048]].iter().enumerate() {
        let path = write_tmp(&dir, &format!("j{i}"), junk);
        assert!(load(&path, &opts(), &all).is_err());
        let path = write_tmp(&dir, &format!("k{i}.tar"), &docker_archive(&[junk.to_vec()]));
        assert!(load(&path, &opts(), &all).is_err());
    }
}

/// An OCI layout directory with a gzip and a zstd layer, digests checked; one changed byte
/// in a blob is reported as a blob and diff_id mismatch.
#[test]
fn oci_layout_with_gzip_and_zstd_layers() {
    let t0 = tar_of(&[E::File("bin/sh", b"#!")]);
    let t1 = tar_of(&[E::File("etc/alpine-release", b"3.19.1\n")]);
    let blobs = [gzip(&t0), zstd::encode_all(&t1[..], 3).unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&b).unwrap();
    let put = |data: &[u8]| {
        let d = sha(data);
        std::fs::write(b.join(&d[7..]), data).unwrap();
        d
    };
    let config =
        serde_json::to_vec(&serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [sha(&t0), sha(&t1)]}}))
            .unwrap();
    let cd = put(&config);
    let layers: Vec<_> = blobs
        .iter()
        .zip(["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd"])
        .map(|(l, mt)| serde_json::json!({"mediaType": mt, "digest": put(l), "size": l.len()}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()}, "layers": layers})).unwrap();
    let md = put(&manifest);
    std::fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "t:oci"}}]});
    std::fs::write(dir.path().join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let src = dir.path().to_string_lossy().into_owned();
    let img = load(&src, &opts(), &all).unwrap();
    assert!(img.mismatches.is_empty(), "{:?}", img.mismatches);
    assert_eq!(img.format, "oci");
    assert_eq!(img.manifest_digest, md);
    assert_eq!(img.layers[1].compression, Compression::Zstd);
    assert_eq!(super::distro::detect(&img.view).unwrap().unwrap().ecosystem().as_deref(), Some("Alpine:v3.19"));

    // Tamper: same size, one byte different inside the gzip layer's content.
    let mut t0x = t0.clone();
    t0x[512] = b'?';
    let first = layers[0]["digest"].as_str().unwrap();
    std::fs::write(b.join(&first[7..]), gzip(&t0x)).unwrap();
    let img = load(&src, &opts(), &all).unwrap();
    let what: Vec<&str> = img.mismatches.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(what, ["layer 0 blob", "layer 0 diff_id"]);
}
