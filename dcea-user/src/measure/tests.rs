use super::*;
use crate::scan::image::{
    archive::{LoadOptions, load},
    tests::{E, docker_archive, gzip, tar_of},
};

fn measure_bytes(dir: &tempfile::TempDir, file: &str, archive: &[u8]) -> Record {
    let path = dir.path().join(file);
    std::fs::write(&path, archive).unwrap();
    let mut o = LoadOptions::default();
    o.walk.blob_digest = true;
    o.walk.diff_id = true;
    o.walk.file_digests = true;
    let img = load(path.to_str().unwrap(), &o, &|_| false).unwrap();
    Record::from_image(&img, Some("test:image"))
}

#[test]
fn one_changed_byte_in_one_layer_is_reported_with_its_path() {
    let l0 = tar_of(&[E::File("bin/app", b"v1 binary"), E::File("etc/conf", b"a=1")]);
    let l1 = tar_of(&[E::File("usr/lib/libx.so", b"library bytes"), E::File("etc/conf", b"a=2")]);
    let dir = tempfile::tempdir().unwrap();
    let saved = measure_bytes(&dir, "a.tar", &docker_archive(&[l0.clone(), l1.clone()]));
    assert!(saved.mismatches.is_empty(), "{:?}", saved.mismatches);
    assert_eq!(saved.files.len(), 3);
    assert_eq!(saved.files["/etc/conf"].layer, 1);

    let state = tempfile::tempdir().unwrap();
    let path = save_record(state.path(), &saved).unwrap();
    let back = load_record(&path).unwrap().unwrap();
    assert!(diff(&back, &saved).is_clean());
    // No temp files left next to the record.
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    // Flip one byte of usr/lib/libx.so inside layer 1, keeping the old config (diff_ids).
    let mut l1x = l1.clone();
    let at = l1x.windows(13).position(|w| w == b"library bytes").unwrap();
    l1x[at] ^= 0x20;
    let mut tampered = docker_archive(&[l0.clone(), l1x]);
    // Re-use the original config so only the layer differs, as an attacker editing a blob would.
    let orig = docker_archive(&[l0, l1]);
    tampered = splice_config(&tampered, &orig);
    let now = measure_bytes(&dir, "b.tar", &tampered);
    let d = diff(&back, &now);
    assert!(!d.is_clean());
    assert_eq!(d.modified.len(), 1);
    assert_eq!(d.modified[0].path, "/usr/lib/libx.so");
    assert_eq!(d.modified[0].layer, Some(1));
    assert!(d.layers.iter().any(|l| l.index == 1 && l.what == "diff_id"));
    assert!(d.inconsistent.iter().any(|m| m.what == "layer 1 diff_id"));
    assert!(d.render_text().contains("modified /usr/lib/libx.so (layer 1)"));
}

/// Replaces the config and manifest of `tampered` with those of `orig`.
fn splice_config(tampered: &[u8], orig: &[u8]) -> Vec<u8> {
    let read = |b: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(b);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut v).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), v)
            })
            .collect()
    };
    let t = read(tampered);
    let o = read(orig);
    let entries: Vec<(String, Vec<u8>)> = t
        .into_iter()
        .filter(|(n, _)| n.ends_with("layer.tar"))
        .chain(o.into_iter().filter(|(n, _)| !n.ends_with("layer.tar")))
        .collect();
    let es: Vec<E> = entries.iter().map(|(n, d)| E::File(n, d)).collect();
    tar_of(&es)
}

#[test]
fn added_and_removed_files_and_gzip_layers() {
    let dir = tempfile::tempdir().unwrap();
    let a = measure_bytes(&dir, "a.tar", &docker_archive(&[gzip(&tar_of(&[E::File("x", b"1"), E::File("y", b"2")]))]));
    let b = measure_bytes(&dir, "b.tar", &docker_archive(&[gzip(&tar_of(&[E::File("x", b"1"), E::File("z", b"3")]))]));
    let d = diff(&a, &b);
    assert_eq!(d.added.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["/z"]);
    assert_eq!(d.removed.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["/y"]);
    assert!(d.config_changed);
}
