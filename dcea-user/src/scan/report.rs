//! What every static scanner reports, and how: findings with a severity and a status, rendered
//! as a table for people, JSON for scripts and SARIF 2.1.0 for code-scanning dashboards, plus
//! the CI exit code (`--fail-on`).

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// GitHub code scanning reads `security-severity` (CVSS-like, 0–10) to rank alerts.
    fn security_severity(self) -> &'static str {
        match self {
            Severity::Info => "0.0",
            Severity::Low => "3.0",
            Severity::Medium => "5.5",
            Severity::High => "8.0",
            Severity::Critical => "9.5",
        }
    }
}

/// Whether the finding is a problem. Only `Fail` and `Vulnerable` count for `--fail-on`:
/// an `Unknown` is reported with its reason but never fails a build on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// A dangerous setting is present (configuration checks).
    Fail,
    /// A known vulnerability applies (version checks).
    Vulnerable,
    Fixed,
    NotApplicable,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Fail => "fail",
            Status::Vulnerable => "vulnerable",
            Status::Fixed => "fixed",
            Status::NotApplicable => "not-applicable",
            Status::Unknown => "unknown",
        }
    }

    pub fn is_problem(self) -> bool {
        matches!(self, Status::Fail | Status::Vulnerable)
    }
}

/// What a finding is about: the host, a container, an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Subject {
    pub fn host(name: impl Into<String>) -> Subject {
        Subject { kind: "host".into(), id: name.into(), name: None }
    }

    /// Short form for tables: a container's name, else its id cut to 12 characters.
    pub fn short(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            // Container ids are 64 hex digits; Docker shows 12.
            _ if self.kind == "container" => self.id.chars().take(12).collect(),
            _ => self.id.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Stable rule id (`CVE-…`, `DCEA-CFG-…`).
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub status: Status,
    pub subject: Subject,
    /// What was observed, one fact per line.
    pub evidence: Vec<String>,
    pub remediation: String,
    /// CIS Docker Benchmark recommendation, e.g. "5.4".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cis: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// Which scanner: "kernel", "config", "image".
    pub scan: String,
    /// Scanner-specific facts about the target (kernel version, host name, …).
    pub target: Value,
    pub findings: Vec<Finding>,
    /// Problems that did not stop the scan (a container that exited mid-scan, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Report {
    pub fn new(scan: &str, target: Value) -> Report {
        Report {
            tool: "dcea",
            version: env!("CARGO_PKG_VERSION"),
            scan: scan.into(),
            target,
            findings: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Most severe problems first, then by subject and id, so output is stable.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            b.status
                .is_problem()
                .cmp(&a.status.is_problem())
                .then(b.severity.cmp(&a.severity))
                .then_with(|| a.subject.id.cmp(&b.subject.id))
                .then_with(|| a.id.cmp(&b.id))
        });
    }

    /// 1 when a problem at or above `fail_on` was found, else 0.
    pub fn exit_code(&self, fail_on: Option<Severity>) -> u8 {
        match fail_on {
            Some(threshold) if self.findings.iter().any(|f| f.status.is_problem() && f.severity >= threshold) => 1,
            _ => 0,
        }
    }

    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Table => self.render_table(),
            ReportFormat::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            ReportFormat::Sarif => serde_json::to_string_pretty(&self.to_sarif()).unwrap_or_default() + "\n",
        }
    }

    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let rows: Vec<[String; 5]> = self
            .findings
            .iter()
            .map(|f| {
                [
                    f.severity.as_str().to_uppercase(),
                    f.status.as_str().into(),
                    f.id.clone(),
                    sanitize(&f.subject.short()),
                    sanitize(
                        &f.cis.as_ref().map(|c| format!("{} (CIS {c})", f.title)).unwrap_or_else(|| f.title.clone()),
                    ),
                ]
            })
            .collect();
        let header = ["SEVERITY", "STATUS", "ID", "SUBJECT", "TITLE"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i == 4 {
                    s.push_str(cell);
                } else {
                    let _ = write!(s, "{cell:<w$}  ");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&line(header));
        for (row, f) in rows.iter().zip(&self.findings) {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
            for e in &f.evidence {
                let _ = writeln!(out, "    - {}", sanitize(e));
            }
            if f.status.is_problem() && !f.remediation.is_empty() {
                let _ = writeln!(out, "    fix: {}", sanitize(&f.remediation));
            }
        }
        let problems = self.findings.iter().filter(|f| f.status.is_problem()).count();
        let _ = writeln!(out, "\n{} finding(s), {problems} problem(s)", self.findings.len());
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {}", sanitize(w));
        }
        out
    }

    /// SARIF 2.1.0: one rule per distinct id, one result per finding. Results carry `kind`
    /// (fail / pass / notApplicable / review) so a dashboard can tell fixed from vulnerable.
    pub fn to_sarif(&self) -> Value {
        let mut rule_ids: Vec<&str> = Vec::new();
        let mut rules = Vec::new();
        for f in &self.findings {
            if rule_ids.contains(&f.id.as_str()) {
                continue;
            }
            rule_ids.push(&f.id);
            let mut tags = vec!["security".to_string(), "container-escape".to_string()];
            if let Some(cis) = &f.cis {
                tags.push(format!("CIS-Docker-{cis}"));
            }
            tags.extend(f.cves.iter().cloned());
            rules.push(json!({
                "id": f.id,
                "name": f.id,
                "shortDescription": { "text": f.title },
                "help": { "text": f.remediation },
                "defaultConfiguration": { "level": level(f.severity) },
                "properties": { "tags": tags, "security-severity": f.severity.security_severity() },
            }));
        }
        let results: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                let (kind, lvl) = match f.status {
                    Status::Fail | Status::Vulnerable => ("fail", level(f.severity)),
                    Status::Fixed => ("pass", "none"),
                    Status::NotApplicable => ("notApplicable", "none"),
                    Status::Unknown => ("review", "note"),
                };
                let mut text = format!("{}: {} [{}]", f.subject.short(), f.title, f.status.as_str());
                for e in &f.evidence {
                    text.push_str("\n- ");
                    text.push_str(e);
                }
                json!({
                    "ruleId": f.id,
                    "ruleIndex": rule_ids.iter().position(|r| *r == f.id).unwrap_or(0),
                    "kind": kind,
                    "level": lvl,
                    "message": { "text": text },
                    "locations": [{
                        "logicalLocations": [{
                            "name": f.subject.short(),
                            "fullyQualifiedName": format!("{}/{}", f.subject.kind, f.subject.id),
                            "kind": "resource",
                        }]
                    }],
                    "properties": {
                        "severity": f.severity.as_str(),
                        "status": f.status.as_str(),
                        "subject": f.subject,
                        "cis": f.cis,
                        "cves": f.cves,
                    },
                })
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "dcea",
                    "version": self.version,
                    "informationUri": "https://example.invalid/dcea",
                    "rules": rules,
                }},
                "automationDetails": { "id": format!("dcea/scan/{}", self.scan) },
                "properties": { "target": self.target, "warnings": self.warnings },
                "results": results,
            }]
        })
    }
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// Container names and mount paths come from the host and may hold control bytes: keep each
/// table line one line.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Human-readable table (default on a terminal).
    Table,
    /// The report as one JSON document (default when stdout is not a terminal).
    Json,
    /// SARIF 2.1.0 for code-scanning dashboards.
    Sarif,
}

/// Output options shared by every `dcea scan` target.
#[derive(Clone, Debug, clap::Args)]
pub struct OutputArgs {
    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Exit with status 1 when a problem at or above this severity is found.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
}

impl OutputArgs {
    pub fn resolved_format(&self) -> ReportFormat {
        use std::io::IsTerminal;
        self.format.unwrap_or(if std::io::stdout().is_terminal() { ReportFormat::Table } else { ReportFormat::Json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity, status: Status) -> Finding {
        Finding {
            id: id.into(),
            title: format!("title of {id}"),
            severity,
            status,
            subject: Subject { kind: "container".into(), id: "ab".repeat(32), name: Some("web\nx".into()) },
            evidence: vec!["seen".into()],
            remediation: "do less".into(),
            cis: Some("5.4".into()),
            cves: vec![],
        }
    }

    fn report() -> Report {
        let mut r = Report::new("config", json!({"host": "h"}));
        r.findings = vec![
            finding("A", Severity::Low, Status::Fail),
            finding("B", Severity::Critical, Status::Unknown),
            finding("C", Severity::High, Status::Vulnerable),
            finding("D", Severity::Critical, Status::Fixed),
        ];
        r.sort();
        r
    }

    #[test]
    fn exit_code_counts_only_problems_at_or_above_threshold() {
        let r = report();
        assert_eq!(r.exit_code(None), 0);
        assert_eq!(r.exit_code(Some(Severity::Critical)), 0, "critical ones are unknown/fixed");
        assert_eq!(r.exit_code(Some(Severity::High)), 1);
        assert_eq!(r.exit_code(Some(Severity::Low)), 1);
        let empty = Report::new("config", Value::Null);
        assert_eq!(empty.exit_code(Some(Severity::Info)), 0);
    }

    #[test]
    fn sort_puts_severe_problems_first() {
        let ids: Vec<_> = report().findings.iter().map(|f| f.id.clone()).collect();
        assert_eq!(ids, ["C", "A", "B", "D"]);
    }

    #[test]
    fn table_keeps_hostile_names_on_one_line() {
        let t = report().render_table();
        assert!(t.starts_with("SEVERITY"));
        assert!(t.contains("web?x"), "{t}");
        assert!(!t.contains("web\nx"));
        assert!(t.contains("(CIS 5.4)"));
        assert!(t.contains("4 finding(s), 2 problem(s)"));
    }

    #[test]
    fn sarif_has_rules_results_and_kinds() {
        let s = report().to_sarif();
        assert_eq!(s["version"], "2.1.0");
        let run = &s["runs"][0];
        assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 4);
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[0]["ruleId"], "C");
        assert_eq!(results[0]["kind"], "fail");
        assert_eq!(results[0]["level"], "error");
        let idx = results[0]["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][idx]["id"], "C");
        assert!(results.iter().any(|r| r["kind"] == "pass"));
        assert!(results.iter().any(|r| r["kind"] == "review"));
    }

    #[test]
    fn json_round_trips() {
        let v: Value = serde_json::from_str(&report().render(ReportFormat::Json)).unwrap();
        assert_eq!(v["scan"], "config");
        assert_eq!(v["findings"][0]["status"], "vulnerable");
        assert_eq!(v["findings"][1]["severity"], "low");
    }
}
