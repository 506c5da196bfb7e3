//! CycloneDX 1.5 SBOM (JSON) of the installed packages, with package URLs and the layer
//! that introduced each package, plus the vulnerabilities found.

use serde_json::{Value, json};

use super::{packages::Package, render::ScanResult};

fn purl(p: &Package, distro: Option<&super::distro::Distro>) -> String {
    let (ty, ns) = match p.manager {
        "dpkg" => ("deb", distro.map(|d| d.id.as_str()).unwrap_or("debian")),
        "apk" => ("apk", distro.map(|d| d.id.as_str()).unwrap_or("alpine")),
        _ => ("rpm", distro.map(|d| d.id.as_str()).unwrap_or("redhat")),
    };
    let enc = |s: &str| s.replace('%', "%25").replace(':', "%3A").replace('+', "%2B").replace('@', "%40");
    let mut q = Vec::new();
    if let Some(a) = &p.arch {
        q.push(format!("arch={}", enc(a)));
    }
    if let Some(v) = distro.and_then(|d| d.version_id.as_deref()) {
        q.push(format!("distro={ns}-{}", enc(v)));
    }
    let mut s = format!("pkg:{ty}/{ns}/{}@{}", enc(&p.name), enc(&p.version));
    if !q.is_empty() {
        s.push('?');
        s.push_str(&q.join("&"));
    }
    s
}

pub fn cyclonedx(r: &ScanResult) -> Value {
    let components: Vec<Value> = r
        .packages
        .iter()
        .map(|p| {
            let purl = purl(p, r.distro.as_ref());
            json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "properties": [
                    {"name": "dcea:package:source", "value": p.source},
                    {"name": "dcea:package:source_version", "value": p.source_version},
                    {"name": "dcea:package:manager", "value": p.manager},
                    {"name": "dcea:layer:index", "value": p.layer.to_string()},
                    {"name": "dcea:package:db", "value": p.db},
                ],
            })
        })
        .collect();
    let vulnerabilities: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            let pkg = r.packages.iter().find(|p| p.name == f.package && p.version == f.installed_version);
            json!({
                "id": f.advisory,
                "references": f.aliases.iter().map(|a| json!({"id": a, "source": {"name": "alias"}})).collect::<Vec<_>>(),
                "ratings": [{"severity": f.severity.as_str()}],
                "affects": [{"ref": pkg.map(|p| purl(p, r.distro.as_ref())).unwrap_or_default()}],
                "recommendation": f.fixed_version.as_ref().map(|v| format!("upgrade {} to {v}", f.source)),
            })
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "tools": [{"vendor": "dcea", "name": "dcea", "version": env!("CARGO_PKG_VERSION")}],
            "component": {
                "type": "container",
                "bom-ref": r.config_digest,
                "name": r.repo_tags.first().unwrap_or(&r.source),
                "version": r.config_digest,
            },
        },
        "components": components,
        "vulnerabilities": vulnerabilities,
    })
}
