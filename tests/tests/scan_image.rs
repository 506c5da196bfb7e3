//! `dcea scan image` and `dcea measure image` on real images built by the local Docker
//! engine: this host's dpkg database, an apk database, whiteouts and opaque directories,
//! docker-save archives, the engine's export stream and OCI layouts converted from them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use dcea_tests::docker::{self, docker};
use serde_json::Value;

const PREFIX: &str = "dcea-scan6-test";

fn ready(test: &str) -> bool {
    dcea_tests::require_root(test) && docker::available(test)
}

fn dcea(args: &[&str]) -> Output {
    let bin = dcea_tests::dcea_bin();
    Command::new(&bin).args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", bin.display()))
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn sh(cmd: &str) -> String {
    let out = Command::new("bash").args(["-euo", "pipefail", "-c", cmd]).output().expect("bash");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Images created by a test, removed when it ends (pass or fail).
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

/// Builds `tag` from a Dockerfile and context files (legacy builder, no network).
fn build(dir: &Path, tag: &str, dockerfile: &str, images: &mut Images) {
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--network", "none", "-q", "-t", tag, dir.to_str().unwrap()])
        .output()
        .expect("docker build");
    assert!(out.status.success(), "docker build {tag}: {}", String::from_utf8_lossy(&out.stderr));
    images.0.push(tag.to_string());
}

fn save(tag: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
    docker(&["save", "-o", path.to_str().unwrap(), tag]);
    path
}

/// Converts a docker-save archive into an OCI image layout (gzip layers), as a directory.
fn to_oci(archive: &Path, out: &Path) -> PathBuf {
    let x = out.join("x");
    let oci = out.join("oci");
    std::fs::create_dir_all(&x).unwrap();
    std::fs::create_dir_all(oci.join("blobs/sha256")).unwrap();
    sh(&format!("tar -C {} -xf {}", x.display(), archive.display()));
    let manifest: Value = serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let put = |src: &Path| -> (String, u64) {
        let hex = sh(&format!("sha256sum {} | cut -d' ' -f1", src.display()));
        let dst = oci.join("blobs/sha256").join(&hex);
        std::fs::copy(src, &dst).unwrap();
        (format!("sha256:{hex}"), std::fs::metadata(&dst).unwrap().len())
    };
    let mut layers = Vec::new();
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let src = x.join(l.as_str().unwrap());
        let gz = out.join("layer.gz");
        sh(&format!("gzip -1 -n -c {} > {}", src.display(), gz.display()));
        let (digest, size) = put(&gz);
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}));
    }
    let (config, config_size) = put(&x.join(manifest[0]["Config"].as_str().unwrap()));
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": layers});
    let mpath = out.join("manifest.json");
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let (md, msize) = put(&mpath);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": msize, "annotations": {"org.opencontainers.image.ref.name": "converted"}}]});
    std::fs::write(oci.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(oci.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    oci
}

/// Installed packages as dpkg-query counts them for `--admindir` (config-files excluded, as
/// dcea does: nothing of such a package is on disk).
fn dpkg_query_count(admindir: &Path) -> usize {
    sh(&format!(
        "dpkg-query -W -f='${{db:Status-Status}}\\n' --admindir={} | grep -vc '^config-files$'",
        admindir.display()
    ))
    .parse()
    .unwrap()
}

#[test]
fn host_dpkg_database_through_every_source_kind() {
    if !ready("host_dpkg_database_through_every_source_kind") {
        return;
    }
    let mut images = Images(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("dpkg")).unwrap();
    std::fs::copy("/var/lib/dpkg/status", ctx.join("dpkg/status")).unwrap();
    std::fs::copy("/etc/os-release", ctx.join("os-release")).unwrap();
    let tag = format!("{PREFIX}/dpkg:1");
    // Layer 0 busybox, 1 os-release, 2 the dpkg database, 3 an unrelated change.
    build(
        &ctx,
        &tag,
        "FROM dcea-test/busybox:latest\nCOPY os-release /usr/lib/os-release\nCOPY dpkg/status /var/lib/dpkg/status\nRUN echo hi > /hello\n",
        &mut images,
    );
    let want = dpkg_query_count(&ctx.join("dpkg"));
    assert!(want > 300, "this host should have hundreds of packages, has {want}");
    let archive = save(&tag, tmp.path());
    let oci_dir = to_oci(&archive, tmp.path());
    let oci_tar = tmp.path().join("oci.tar");
    sh(&format!("tar -C {} -cf {} .", oci_dir.display(), oci_tar.display()));

    for source in [archive.to_str().unwrap(), tag.as_str(), oci_dir.to_str().unwrap(), oci_tar.to_str().unwrap()] {
        let out = dcea(&["scan", "image", source, "--format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{source}: {}", String::from_utf8_lossy(&out.stderr));
        let v = json_of(&out);
        let pkgs = v["packages"].as_array().unwrap();
        assert_eq!(pkgs.len(), want, "{source}: package count differs from dpkg-query");
        assert_eq!(v["target"]["ecosystem"], "Debian:12", "{source}");
        let libc = pkgs.iter().find(|p| p["name"] == "libc6").expect("libc6");
        assert_eq!(libc["source"], "glibc");
        assert_eq!(libc["layer"], 2, "{source}: the status file came with layer 2");
        assert_eq!(v["target"]["layers"].as_array().unwrap().len(), 4);
    }
    // The converted OCI layout verifies its blob digests.
    let out = dcea(&["measure", "image", oci_dir.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(json_of(&out)["mismatches"].as_array().unwrap().is_empty());
}

#[test]
fn whiteouts_and_opaque_directories_from_a_real_build() {
    if !ready("whiteouts_and_opaque_directories_from_a_real_build") {
        return;
    }
    let mut images = Images(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("{PREFIX}/whiteout:1");
    build(
        tmp.path(),
        &tag,
        "FROM dcea-test/busybox:latest\n\
         RUN mkdir -p /opt/app/sub /data && echo old > /opt/app/old && echo deep > /opt/app/sub/deep && echo a > /data/a && echo b > /data/b\n\
         RUN rm -rf /opt/app && mkdir /opt/app && echo new > /opt/app/new && rm /data/a\n",
        &mut images,
    );
    let archive = save(&tag, tmp.path());
    // The engine wrote an opaque marker and a whiteout into the last layer.
    let listing = sh(&format!(
        "cd {0} && tar -xf {1} manifest.json && tar -xOf {1} $(python3 -c 'import json;print(json.load(open(\"manifest.json\"))[0][\"Layers\"][-1])') | tar -t",
        tmp.path().display(),
        archive.display()
    ));
    assert!(listing.contains("opt/app/.wh..wh..opq"), "{listing}");
    assert!(listing.contains("data/.wh.a"), "{listing}");
    let img = dcea_user::scan::image::load(
        archive.to_str().unwrap(),
        &dcea_user::scan::image::LoadOptions::default(),
        &|_| false,
    )
    .unwrap();
    let under = |dir: &str| -> Vec<String> {
        img.view.iter().filter(|(p, _)| p.starts_with(dir)).map(|(p, _)| p.clone()).collect()
    };
    assert_eq!(under("opt/app/"), ["opt/app/new"]);
    assert_eq!(under("data/"), ["data/b"]);
    assert!(img.view.get("bin/busybox").is_some() || img.view.get("bin/sh").is_some());
}

const APK_DB: &str = "C:Q1dummy=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\n\n\
P:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\n\
P:libssl3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\n\
P:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n\n";

/// Test-only advisory (not a real one) to check matching by origin and the exit codes.
const FIXTURE: &str = r#"{"id":"DCEA-TEST-0001","aliases":["CVE-0000-0001"],"database_specific":{"severity":"high"},
 "affected":[{"package":{"name":"openssl","ecosystem":"Alpine:v3.19"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"3.1.0-r0"},{"fixed":"3.1.4-r6"}]}]}]}"#;

#[test]
fn apk_database_findings_exit_codes_sarif_and_sbom() {
    if !ready("apk_database_findings_exit_codes_sarif_and_sbom") {
        return;
    }
    let mut images = Images(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("lib/apk/db")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("lib/apk/db/installed"), APK_DB).unwrap();
    std::fs::write(root.join("etc/alpine-release"), "3.19.1\n").unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n")
        .unwrap();
    let tag = format!("{PREFIX}/apk:1");
    let id = sh(&format!("tar -C {} -c . | docker import - {tag}", root.display()));
    assert!(id.starts_with("sha256:"));
    images.0.push(tag.clone());
    let db = tmp.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("fixture.json"), FIXTURE).unwrap();
    let sbom = tmp.path().join("sbom.json");

    let out = dcea(&[
        "scan",
        "image",
        &tag,
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
        "--fail-on",
        "high",
        "--sbom",
        sbom.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["packages"].as_array().unwrap().len(), 4);
    let findings = v["findings"].as_array().unwrap();
    let names: Vec<&str> = findings.iter().map(|f| f["package"].as_str().unwrap()).collect();
    assert_eq!(names, ["libcrypto3", "libssl3"]);
    assert_eq!(findings[0]["fixed_version"], "3.1.4-r6");
    assert_eq!(findings[0]["installed_version"], "3.1.4-r5");
    assert_eq!(findings[0]["cves"][0], "CVE-0000-0001");
    assert_eq!(findings[0]["layer"], 0);
    let bom: Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["components"].as_array().unwrap().len(), 4);
    assert!(bom["components"][0]["purl"].as_str().unwrap().starts_with("pkg:apk/alpine/"));

    // Below the threshold: exit 0. SARIF carries the same findings.
    let out =
        dcea(&["scan", "image", &tag, "--db", db.to_str().unwrap(), "--format", "sarif", "--fail-on", "critical"]);
    assert_eq!(out.status.code(), Some(0));
    let sarif = json_of(&out);
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 2);
    // An unreadable source is an error: exit 2.
    let out = dcea(&["scan", "image", "/nonexistent/image.tar", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn embedded_database_finds_a_real_advisory_in_an_older_glibc() {
    if !ready("embedded_database_finds_a_real_advisory_in_an_older_glibc") {
        return;
    }
    let mut images = Images(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/etc/os-release", root.join("etc/os-release")).unwrap();
    // bookworm's libc6 as of point release 12.12, before the fix for CVE-2026-4438.
    std::fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u13\n",
    )
    .unwrap();
    let tag = format!("{PREFIX}/oldlibc:1");
    sh(&format!("tar -C {} -c . | docker import - {tag}", root.display()));
    images.0.push(tag.clone());
    let out = dcea(&["scan", "image", &tag, "--format", "json", "--fail-on", "medium"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_of(&out);
    let f = &v["findings"][0];
    assert_eq!(f["id"], "DEBIAN-CVE-2026-4438");
    assert_eq!(f["fixed_version"], "2.36-9+deb12u14");
    assert_eq!(f["severity"], "medium");
    assert_eq!(v["target"]["database"]["name"], "embedded");
}

#[test]
fn measure_save_then_verify_names_the_tampered_file() {
    if !ready("measure_save_then_verify_names_the_tampered_file") {
        return;
    }
    let mut images = Images(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("payload.txt"), "trusted configuration value\n").unwrap();
    let tag = format!("{PREFIX}/measure:1");
    build(
        tmp.path(),
        &tag,
        "FROM dcea-test/busybox:latest\nCOPY payload.txt /etc/payload.txt\nRUN echo x > /x\n",
        &mut images,
    );
    let archive = save(&tag, tmp.path());
    let state = tmp.path().join("state");
    let st = state.to_str().unwrap();
    let out = dcea(&["measure", "image", archive.to_str().unwrap(), "--save", "--state-dir", st]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dcea(&["measure", "image", archive.to_str().unwrap(), "--verify", "--state-dir", st]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    // Change one byte of /etc/payload.txt inside its layer, in place, same size.
    let x = tmp.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    sh(&format!("tar -C {} -xf {}", x.display(), archive.display()));
    let manifest: Value = serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let layer = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| x.join(l.as_str().unwrap()))
        .find(|p| std::fs::read(p).unwrap().windows(27).any(|w| w == b"trusted configuration value"));
    let layer = layer.expect("layer with the payload");
    let mut bytes = std::fs::read(&layer).unwrap();
    let at = bytes.windows(27).position(|w| w == b"trusted configuration value").unwrap();
    bytes[at] = b'T';
    std::fs::write(&layer, bytes).unwrap();
    let tampered = tmp.path().join("tampered.tar");
    sh(&format!("tar -C {} -cf {} .", x.display(), tampered.display()));

    let out = dcea(&["measure", "image", tampered.to_str().unwrap(), "--verify", "--state-dir", st]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("modified /etc/payload.txt"), "{text}");
    assert!(text.contains("diff_id"), "{text}");
    let out =
        dcea(&["measure", "image", tampered.to_str().unwrap(), "--verify", "--state-dir", st, "--format", "json"]);
    let d = json_of(&out);
    assert_eq!(d["modified"].as_array().unwrap().len(), 1);
    assert_eq!(d["modified"][0]["path"], "/etc/payload.txt");
    // And scanning refuses the tampered archive outright.
    let out = dcea(&["scan", "image", tampered.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("digest mismatch"));
}
