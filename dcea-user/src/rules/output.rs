//! Output templates: `%field` placeholders rendered like Falco (`<NA>` for a missing value),
//! and every referenced field carried in the alert's `output_fields`.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::{
    event::{EventView, Value},
    fields::{self, FieldId, FieldRef, FieldType, render_enum, render_flags},
};
use crate::output::rfc3339_nanos;

#[derive(Debug)]
struct Placeholder {
    name: String,
    field: Option<(FieldRef, FieldType)>,
}

#[derive(Debug)]
enum Seg {
    Lit(String),
    Field(usize),
}

#[derive(Debug, Default)]
pub(crate) struct Template {
    segs: Vec<Seg>,
    fields: Vec<Placeholder>,
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl Template {
    /// Parse a template. Unknown fields are not fatal (they render `<NA>`): they come back as
    /// (byte offset, message) warnings.
    pub fn parse(text: &str) -> (Template, Vec<(usize, String)>) {
        let mut t = Template::default();
        let mut warnings = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        let mut base = 0;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let mut len = after.find(|c: char| !is_field_char(c)).unwrap_or(after.len());
            // A sentence may end right after a field: `… %fd.name.`
            while len > 0 && after[..len].ends_with('.') {
                len -= 1;
            }
            if len == 0 {
                lit.push('%');
                base += i + 1;
                rest = after;
                continue;
            }
            let mut name_len = len;
            let mut arg = None;
            if after[len..].starts_with('[')
                && let Some(close) = after[len..].find(']')
            {
                arg = Some(&after[len + 1..len + close]);
                name_len = len + close + 1;
            }
            let name = &after[..len];
            if !lit.is_empty() {
                t.segs.push(Seg::Lit(std::mem::take(&mut lit)));
            }
            if name == "container.info" && arg.is_none() {
                // Falco's shorthand.
                t.segs.push(Seg::Lit("container_id=".into()));
                let _ = t.push_field("container.id", None);
                t.segs.push(Seg::Lit(" container_name=".into()));
                let _ = t.push_field("container.name", None);
            } else if let Err(e) = t.push_field(name, arg) {
                warnings.push((base + i, format!("{e} (renders <NA>)")));
            }
            base += i + 1 + name_len;
            rest = &after[name_len..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            t.segs.push(Seg::Lit(lit));
        }
        (t, warnings)
    }

    fn push_field(&mut self, name: &str, arg: Option<&str>) -> Result<(), fields::FieldError> {
        let resolved = fields::resolve(name, arg);
        let display = match (&resolved, arg) {
            (Ok(r), _) => fields::display_name(r.field, r.any_generation),
            (Err(_), Some(a)) => format!("{name}[{a}]"),
            (Err(_), None) => name.to_string(),
        };
        let idx = match self.fields.iter().position(|p| p.name == display) {
            Some(i) => i,
            None => {
                self.fields.push(Placeholder {
                    name: display,
                    field: resolved.as_ref().ok().map(|r| {
                        // `%proc.aname` without [N] shows the parent.
                        let f = if r.any_generation { FieldRef { id: r.field.id, arg: 1 } } else { r.field };
                        (f, r.ty)
                    }),
                });
                self.fields.len() - 1
            }
        };
        self.segs.push(Seg::Field(idx));
        resolved.map(|_| ())
    }

    /// The output line and the values of every placeholder (`null` when missing).
    pub fn render<E: EventView + ?Sized>(&self, ev: &E, time_ns: u64) -> (String, BTreeMap<String, Json>) {
        let values: Vec<(String, Json)> = self
            .fields
            .iter()
            .map(|p| match p.field {
                Some((f, ty)) => render_value(ev, f, ty, time_ns),
                None => ("<NA>".to_string(), Json::Null),
            })
            .collect();
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Lit(s) => out.push_str(s),
                Seg::Field(i) => out.push_str(&values[*i].0),
            }
        }
        let map = self.fields.iter().zip(values).map(|(p, (_, j))| (p.name.clone(), j)).collect();
        (out, map)
    }
}

/// One field as text and as JSON, Falco style: flags and enums by name, `<NA>`/null if absent.
pub fn render_value<E: EventView + ?Sized>(ev: &E, f: FieldRef, ty: FieldType, time_ns: u64) -> (String, Json) {
    let na = || ("<NA>".to_string(), Json::Null);
    match f.id {
        FieldId::EvtType => {
            let n = ev.evt_type().name();
            return (n.to_string(), json!(n));
        }
        FieldId::EvtDir => return ("<".into(), json!("<")),
        FieldId::EvtTime => {
            let ns = match ev.field(FieldRef::new(FieldId::EvtRawtime)) {
                Value::Num(n) if n >= 0 => n as u64,
                _ => time_ns,
            };
            let t = rfc3339_nanos(ns);
            return (t.clone(), json!(t));
        }
        _ => {}
    }
    match ev.field(f) {
        Value::None => na(),
        Value::Str(s) => (s.to_string(), json!(s)),
        Value::Num(n) => match ty {
            FieldType::Enum(table) => {
                let s = render_enum(table, n);
                (s.clone(), json!(s))
            }
            _ => (n.to_string(), json!(n)),
        },
        Value::Bool(b) => (b.to_string(), json!(b)),
        Value::Flags(bits, kind) => {
            let s = render_flags(bits, kind);
            (s.clone(), json!(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::event::{EvtType, SimpleEvent};

    #[test]
    fn renders_fields_na_and_output_fields() {
        let (t, w) = Template::parse(
            "Shell %proc.name (parent=%proc.aname[1] flags=%evt.arg.flags) in %container.id: %fd.name. 100% %user.name",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].1.contains("unknown field `user.name`"), "{w:?}");
        let mut ev = SimpleEvent::new(EvtType::Openat);
        ev.name = Some("sh");
        ev.ancestors = &["bash"];
        ev.flags = Some(1 | libc::O_CREAT as u64);
        ev.container_id = Some("abc");
        let (out, fields) = t.render(&ev, 0);
        assert_eq!(out, "Shell sh (parent=bash flags=O_WRONLY|O_CREAT) in abc: <NA>. 100% <NA>");
        assert_eq!(fields["proc.name"], json!("sh"));
        assert_eq!(fields["proc.aname[1]"], json!("bash"));
        assert_eq!(fields["evt.arg.flags"], json!("O_WRONLY|O_CREAT"));
        assert_eq!(fields["fd.name"], Json::Null);
        assert_eq!(fields["user.name"], Json::Null);
        assert_eq!(fields.len(), 6);
    }

    #[test]
    fn enums_numbers_time_and_container_info() {
        let (t, w) = Template::parse("%evt.type %evt.arg.request pid=%proc.pid %evt.time %container.info");
        assert!(w.is_empty(), "{w:?}");
        let mut ev = SimpleEvent::new(EvtType::Ptrace);
        ev.ptrace_request = Some(16);
        ev.pid = Some(42);
        ev.container_id = Some("c1");
        let (out, fields) = t.render(&ev, 1_700_000_000_000_000_000);
        assert_eq!(
            out,
            "ptrace PTRACE_ATTACH pid=42 2023-11-14T22:13:20.000000000Z container_id=c1 container_name=<NA>"
        );
        assert_eq!(fields["proc.pid"], json!(42));
        assert_eq!(fields["evt.arg.request"], json!("PTRACE_ATTACH"));
    }
}
