//! Turns a loaded image into the shared scan report: distribution, packages, findings
//! (package, installed and fixed version, advisory and aliases, severity, introducing
//! layer), plus the image-specific JSON (`packages`, per-finding details).

use serde::Serialize;
use serde_json::{Value, json};

use super::{
    archive::{LayerInfo, LoadedImage},
    distro::{self, Distro},
    error::Result,
    osv::{Database, DbInfo},
    packages::{self, Package},
};
use crate::scan::report::{Finding, Report, ReportFormat, Severity, Status, Subject};

#[derive(Clone, Debug, Serialize)]
pub struct ImageFinding {
    pub advisory: String,
    pub aliases: Vec<String>,
    pub severity: Severity,
    /// False when the database gave no severity and `medium` was assumed.
    pub severity_known: bool,
    pub package: String,
    pub installed_version: String,
    pub source: String,
    pub source_version: String,
    pub fixed_version: Option<String>,
    pub layer: usize,
    pub layer_digest: Option<String>,
}

#[derive(Debug)]
pub struct ScanResult {
    pub report: Report,
    pub distro: Option<Distro>,
    pub packages: Vec<Package>,
    pub findings: Vec<ImageFinding>,
    pub layers: Vec<LayerInfo>,
    pub database: DbInfo,
    pub source: String,
    pub config_digest: String,
    pub repo_tags: Vec<String>,
}

fn layer_id(l: &LayerInfo) -> Option<String> {
    l.expected_diff_id.clone().or_else(|| l.diff_id.clone()).or_else(|| l.digest.clone())
}

pub fn analyse(image: LoadedImage, db: Database) -> Result<ScanResult> {
    let distro = distro::detect(&image.view)?;
    let inventory = packages::collect(&image.view)?;
    let ecosystem = distro.as_ref().and_then(Distro::ecosystem);
    let scheme = distro.as_ref().and_then(Distro::scheme);
    let mut warnings = image.warnings.clone();
    warnings.extend(inventory.unsupported.iter().cloned());
    if distro.is_none() && !inventory.packages.is_empty() {
        warnings.push("no release file found: packages listed but not matched against advisories".into());
    } else if let Some(d) = &distro
        && ecosystem.is_none()
    {
        warnings.push(format!("distribution {:?} has no OSV ecosystem known to dcea; packages not matched", d.id));
    }
    let stats = &db.info.stats;
    if !stats.skipped_ecosystems.is_empty() || stats.skipped_ranges > 0 || stats.invalid > 0 || stats.unknown_fields > 0
    {
        warnings.push(format!(
            "vulnerability database: skipped {} affected entries of other ecosystems, {} non-ECOSYSTEM ranges, {} invalid entries, {} unknown fields",
            stats.skipped_ecosystems.values().sum::<u64>(),
            stats.skipped_ranges,
            stats.invalid,
            stats.unknown_fields
        ));
    }

    let mut packages = inventory.packages;
    let mut findings = Vec::new();
    for p in &mut packages {
        p.ecosystem = ecosystem.clone();
        let Some(scheme) = scheme else { continue };
        for m in db.matches(p, scheme) {
            findings.push(ImageFinding {
                advisory: m.advisory,
                aliases: m.aliases,
                severity: m.severity.unwrap_or(Severity::Medium),
                severity_known: m.severity.is_some(),
                package: p.name.clone(),
                installed_version: p.version.clone(),
                source: p.source.clone(),
                source_version: p.source_version.clone(),
                fixed_version: m.fixed,
                layer: p.layer,
                layer_digest: image.layers.get(p.layer).and_then(layer_id),
            });
        }
    }
    findings.sort_by(|a, b| {
        b.severity.cmp(&a.severity).then_with(|| a.package.cmp(&b.package)).then_with(|| a.advisory.cmp(&b.advisory))
    });

    let subject = Subject {
        kind: "image".into(),
        id: image.config_digest.clone(),
        name: Some(image.repo_tags.first().cloned().unwrap_or_else(|| image.source.clone())),
    };
    let target = json!({
        "source": image.source,
        "format": image.format,
        "manifest_digest": image.manifest_digest,
        "config_digest": image.config_digest,
        "repo_tags": image.repo_tags,
        "distro": distro,
        "ecosystem": ecosystem,
        "layers": image.layers,
        "files": image.view.len(),
        "packages": packages.len(),
        "database": db.info,
    });
    let mut report = Report::new("image", target);
    report.warnings = warnings;
    report.findings = findings.iter().map(|f| to_finding(f, &subject)).collect();
    Ok(ScanResult {
        report,
        distro,
        packages,
        findings,
        layers: image.layers,
        database: db.info,
        source: image.source,
        config_digest: image.config_digest,
        repo_tags: image.repo_tags,
    })
}

fn to_finding(f: &ImageFinding, subject: &Subject) -> Finding {
    let mut evidence = vec![format!(
        "installed: {} {} (source package {} {})",
        f.package, f.installed_version, f.source, f.source_version
    )];
    evidence.push(match &f.fixed_version {
        Some(v) => format!("fixed in {} {v}", f.source),
        None => "no fixed version in the database".into(),
    });
    evidence.push(match &f.layer_digest {
        Some(d) => format!("introduced by layer {} ({d})", f.layer),
        None => format!("introduced by layer {}", f.layer),
    });
    if !f.aliases.is_empty() {
        evidence.push(format!("aliases: {}", f.aliases.join(", ")));
    }
    if !f.severity_known {
        evidence.push("the database gives no severity; medium assumed".into());
    }
    let mut cves: Vec<String> = f.aliases.iter().filter(|a| a.starts_with("CVE-")).cloned().collect();
    if f.advisory.starts_with("CVE-") {
        cves.insert(0, f.advisory.clone());
    }
    Finding {
        id: f.advisory.clone(),
        title: format!("{} {} is affected by {}", f.package, f.installed_version, cves.first().unwrap_or(&f.advisory)),
        severity: f.severity,
        status: Status::Vulnerable,
        subject: subject.clone(),
        evidence,
        remediation: match &f.fixed_version {
            Some(v) => format!("rebuild the image with {} {v} or later", f.source),
            None => format!("no fix published yet for {}; remove the package or accept the risk", f.source),
        },
        cis: None,
        cves,
    }
}

impl ScanResult {
    /// The shared report plus `packages` and per-finding package/version/layer fields.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.report).unwrap_or_default();
        if let Some(list) = v["findings"].as_array_mut() {
            for (f, extra) in list.iter_mut().zip(&self.findings) {
                if let (Some(obj), Ok(Value::Object(add))) = (f.as_object_mut(), serde_json::to_value(extra)) {
                    obj.extend(add);
                }
            }
        }
        v["packages"] = serde_json::to_value(&self.packages).unwrap_or_default();
        v
    }

    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Json => serde_json::to_string_pretty(&self.to_json()).unwrap_or_default() + "\n",
            ReportFormat::Sarif => self.report.render(ReportFormat::Sarif),
            ReportFormat::Table => {
                let distro = self
                    .distro
                    .as_ref()
                    .map(|d| d.pretty_name.clone().unwrap_or_else(|| d.id.clone()))
                    .unwrap_or_else(|| "unknown distribution".into());
                let db = &self.database;
                format!(
                    "image {} ({})\n{distro}, {} layer(s), {} package(s); database {} {} {}\n\n{}",
                    self.repo_tags.first().unwrap_or(&self.source),
                    self.config_digest,
                    self.layers.len(),
                    self.packages.len(),
                    db.name,
                    db.version.as_deref().unwrap_or(""),
                    db.date.as_deref().unwrap_or(""),
                    self.report.render_table()
                )
            }
        }
    }
}
