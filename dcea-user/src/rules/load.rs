//! Rules files → definitions: `rule`, `macro` and `list` items checked key by key, with
//! Falco's redefinition, `append: true` and `override: {key: append|replace}` applied in load
//! order. Conditions are kept as text (with the source positions of every fragment) and
//! compiled once everything is read, so a macro may be used before it is defined.

use std::collections::HashMap;

use super::{
    Diagnostic, Source,
    condition::Op,
    yaml::{self, Kind, Node, Pos, Style},
};
use crate::{enforce::Action, output::Priority};
use dcea_common::Guard;

/// Where something was written: a YAML node, or a byte offset inside a condition text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    At { file: u16, pos: Pos },
    Text { text: u32, off: u32 },
}

/// One YAML scalar's share of a condition text (appends concatenate several).
#[derive(Clone, Debug)]
struct Frag {
    at: usize,
    len: usize,
    file: u16,
    offset: usize,
    pos: Pos,
    style: Style,
}

#[derive(Clone, Debug)]
pub(crate) struct CondText {
    pub text: String,
    frags: Vec<Frag>,
}

#[derive(Clone, Debug)]
pub(crate) struct ListDef {
    pub name: String,
    pub items: Vec<(String, Span)>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub(crate) struct MacroDef {
    pub name: String,
    pub cond: u32,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub(crate) enum Raw {
    Scalar(String, Span),
    Seq(Vec<Raw>, Span),
}

impl Raw {
    pub fn span(&self) -> Span {
        match self {
            Raw::Scalar(_, s) | Raw::Seq(_, s) => *s,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ExceptionDef {
    pub name: String,
    pub span: Span,
    /// A single field (scalar) or a tuple of fields (list).
    pub fields: Option<Raw>,
    pub comps: Option<Raw>,
    pub values: Vec<Raw>,
}

#[derive(Clone, Debug)]
pub(crate) struct RuleDef {
    pub name: String,
    pub desc: String,
    pub cond: u32,
    pub output: u32,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub exceptions: Vec<ExceptionDef>,
    pub span: Span,
    /// Falco event source; rules for other sources (k8s_audit, plugins) are skipped.
    pub source: Option<(String, Span)>,
    pub skip_if_unknown_filter: bool,
    pub warn_evttypes: bool,
    /// dcea: what `--enforce` does when the rule fires, and the kernel guard that can do it
    /// at the hook.
    pub action: Action,
    pub guard: Option<Guard>,
}

pub(crate) struct Defs<T> {
    pub items: Vec<T>,
    pub by_name: HashMap<String, usize>,
}

impl<T> Default for Defs<T> {
    fn default() -> Self {
        Defs { items: Vec::new(), by_name: HashMap::new() }
    }
}

impl<T> Defs<T> {
    fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        self.by_name.get(name).map(|&i| &mut self.items[i])
    }
    /// Define or redefine (a redefinition keeps the original's place in the order).
    fn put(&mut self, name: &str, def: T) {
        match self.by_name.get(name) {
            Some(&i) => self.items[i] = def,
            None => {
                self.by_name.insert(name.to_string(), self.items.len());
                self.items.push(def);
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Store {
    pub sources: Vec<Source>,
    pub texts: Vec<CondText>,
    pub lists: Defs<ListDef>,
    pub macros: Defs<MacroDef>,
    pub rules: Defs<RuleDef>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Files above this size are refused rather than parsed.
pub const MAX_FILE_BYTES: usize = 16 << 20;

const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "exceptions",
    "append",
    "override",
    "source",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
    "action",
    "guard",
];
const MACRO_KEYS: &[&str] = &["macro", "condition", "append", "override"];
const LIST_KEYS: &[&str] = &["list", "items", "append", "override"];
const EXCEPTION_KEYS: &[&str] = &["name", "fields", "comps", "values"];
const RULE_APPENDABLE: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const RULE_REPLACEABLE: &[&str] = &[
    "condition",
    "output",
    "desc",
    "priority",
    "tags",
    "exceptions",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "action",
    "guard",
];

/// Mapping entries by key, with duplicate keys refused.
struct Entries<'n> {
    map: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Entries<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.map.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl Store {
    pub fn resolve(&self, span: Span) -> (String, Option<Pos>) {
        match span {
            Span::At { file, pos } => (self.file_name(file), Some(pos)),
            Span::Text { text, off } => {
                let Some(t) = self.texts.get(text as usize) else { return ("?".into(), None) };
                let off = off as usize;
                let frag = t.frags.iter().rev().find(|f| f.at <= off).or(t.frags.first());
                match frag {
                    Some(f) => {
                        let value = &t.text[f.at..f.at + f.len];
                        let local = off.saturating_sub(f.at).min(f.len);
                        let src = &self.sources[f.file as usize].text;
                        (
                            self.file_name(f.file),
                            Some(yaml::scalar_value_pos(src, f.offset, f.pos, f.style, value, local)),
                        )
                    }
                    None => ("?".into(), None),
                }
            }
        }
    }

    fn file_name(&self, file: u16) -> String {
        self.sources.get(file as usize).map(|s| s.name.clone()).unwrap_or_else(|| "?".into())
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        let (file, pos) = self.resolve(span);
        self.errors.push(Diagnostic { file, pos, message: message.into() });
    }

    pub fn warn(&mut self, span: Span, message: impl Into<String>) {
        let (file, pos) = self.resolve(span);
        self.warnings.push(Diagnostic { file, pos, message: message.into() });
    }

    pub fn text(&self, id: u32) -> &str {
        &self.texts[id as usize].text
    }

    fn new_text(&mut self, file: u16, node: &Node) -> u32 {
        let value = node.as_str().unwrap_or("").to_string();
        let frag = Frag { at: 0, len: value.len(), file, offset: node.offset, pos: node.pos, style: node.style };
        self.texts.push(CondText { text: value, frags: vec![frag] });
        (self.texts.len() - 1) as u32
    }

    /// `base` + " " + the node's text, as Falco appends conditions and outputs.
    fn append_text(&mut self, base: u32, file: u16, node: &Node) -> u32 {
        let mut t = self.texts[base as usize].clone();
        let add = node.as_str().unwrap_or("");
        t.text.push(' ');
        let at = t.text.len();
        t.text.push_str(add);
        t.frags.push(Frag { at, len: add.len(), file, offset: node.offset, pos: node.pos, style: node.style });
        self.texts.push(t);
        (self.texts.len() - 1) as u32
    }

    /// Read one rules file into the store.
    pub fn add_file(&mut self, source: Source) {
        let file = self.sources.len() as u16;
        let too_big = source.text.len() > MAX_FILE_BYTES;
        let parsed = if too_big { None } else { Some(yaml::parse(&source.text)) };
        self.sources.push(source);
        let at = |pos| Span::At { file, pos };
        let docs = match parsed {
            None => {
                self.error(at(Pos { line: 1, col: 1 }), format!("file larger than {MAX_FILE_BYTES} bytes"));
                return;
            }
            Some(Err(e)) => {
                self.error(at(e.pos), format!("invalid YAML: {}", e.message));
                return;
            }
            Some(Ok(docs)) => docs,
        };
        for doc in &docs {
            match &doc.kind {
                _ if doc.is_null() => {}
                Kind::Seq(items) => {
                    for item in items {
                        self.add_item(file, item);
                    }
                }
                _ => self.error(
                    at(doc.pos),
                    format!(
                        "a rules file is a list of `- rule:`, `- macro:` and `- list:` items, found {}",
                        doc.kind_name()
                    ),
                ),
            }
        }
    }

    fn entries<'n>(&mut self, file: u16, node: &'n Node) -> Option<Entries<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                Span::At { file, pos: node.pos },
                format!("expected a `- rule:`, `- macro:` or `- list:` mapping, found {}", node.kind_name()),
            );
            return None;
        };
        let mut out = Entries { map: Vec::with_capacity(entries.len()) };
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.error(Span::At { file, pos: k.pos }, "keys must be strings");
                return None;
            };
            if out.has(key) {
                self.error(Span::At { file, pos: k.pos }, format!("duplicate key `{key}`"));
                return None;
            }
            out.map.push((key, k, v));
        }
        Some(out)
    }

    fn add_item(&mut self, file: u16, item: &Node) {
        let Some(e) = self.entries(file, item) else { return };
        let kinds: Vec<&str> = ["rule", "macro", "list"].into_iter().filter(|k| e.has(k)).collect();
        let at = Span::At { file, pos: item.pos };
        match kinds.as_slice() {
            ["rule"] => self.add_rule(file, &e, at),
            ["macro"] => self.add_macro(file, &e, at),
            ["list"] => self.add_list(file, &e, at),
            [] => {
                if e.has("required_engine_version") || e.has("required_plugin_versions") {
                    return;
                }
                let keys: Vec<&str> = e.map.iter().map(|(k, _, _)| *k).collect();
                self.warn(at, format!("ignoring an item with unknown key(s) {}", keys.join(", ")));
            }
            many => self.error(at, format!("an item is one of rule, macro or list, not {}", many.join(" and "))),
        }
    }

    /// The name scalar of an item (`rule: NAME`).
    fn name(&mut self, file: u16, e: &Entries, key: &str) -> Option<(String, Span)> {
        let node = e.get(key)?;
        let span = Span::At { file, pos: node.pos };
        match node.as_str() {
            Some(s) if !node.is_null() && !s.trim().is_empty() => Some((s.to_string(), span)),
            _ => {
                self.error(span, format!("`{key}` must be a non-empty name"));
                None
            }
        }
    }

    fn check_keys(&mut self, file: u16, e: &Entries, allowed: &[&str], what: &str) -> bool {
        let mut ok = true;
        for (key, k, _) in &e.map {
            if !allowed.contains(key) {
                let hint = allowed
                    .iter()
                    .map(|a| (super::fields::edit_distance(key, a), a))
                    .filter(|(d, _)| *d <= 2)
                    .min_by_key(|(d, _)| *d)
                    .map(|(_, a)| format!(" (did you mean `{a}`?)"))
                    .unwrap_or_default();
                self.error(
                    Span::At { file, pos: k.pos },
                    format!("unknown key `{key}` in {what}{hint}; allowed: {}", allowed.join(", ")),
                );
                ok = false;
            }
        }
        ok
    }

    fn bool_of(&mut self, file: u16, node: &Node, key: &str) -> Option<bool> {
        let v = node.as_str().map(str::to_ascii_lowercase);
        match v.as_deref() {
            Some("true" | "yes" | "on") => Some(true),
            Some("false" | "no" | "off") => Some(false),
            _ => {
                self.error(Span::At { file, pos: node.pos }, format!("`{key}` must be true or false"));
                None
            }
        }
    }

    fn string_of(&mut self, file: u16, node: &Node, key: &str) -> Option<String> {
        match node.as_str() {
            Some(s) if !node.is_null() || key == "desc" => Some(s.to_string()),
            _ => {
                self.error(
                    Span::At { file, pos: node.pos },
                    format!("`{key}` must be a string, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    fn strings_of(&mut self, file: u16, node: &Node, key: &str) -> Option<Vec<(String, Span)>> {
        if node.is_null() {
            return Some(Vec::new());
        }
        let Kind::Seq(items) = &node.kind else {
            self.error(Span::At { file, pos: node.pos }, format!("`{key}` must be a list, found {}", node.kind_name()));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            match i.as_str() {
                Some(s) => out.push((s.to_string(), Span::At { file, pos: i.pos })),
                None => {
                    self.error(
                        Span::At { file, pos: i.pos },
                        format!("`{key}` items must be strings, found {}", i.kind_name()),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// `override:` → (key, is_append) pairs, checked against what the item may override.
    fn overrides(
        &mut self,
        file: u16,
        e: &Entries,
        name_key: &str,
        appendable: &[&str],
        replaceable: &[&str],
    ) -> Option<Option<Vec<(String, bool)>>> {
        let Some(node) = e.get("override") else { return Some(None) };
        let span = Span::At { file, pos: node.pos };
        if e.has("append") {
            self.error(span, "`append` and `override` cannot be used together");
            return None;
        }
        let Kind::Map(entries) = &node.kind else {
            self.error(span, "`override` must map keys to `append` or `replace`");
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = k.as_str().unwrap_or("");
            let kspan = Span::At { file, pos: k.pos };
            let append = match v.as_str() {
                Some("append") => true,
                Some("replace") => false,
                _ => {
                    self.error(
                        Span::At { file, pos: v.pos },
                        format!("override of `{key}` must be `append` or `replace`"),
                    );
                    return None;
                }
            };
            let allowed = if append { appendable } else { replaceable };
            if !allowed.contains(&key) {
                self.error(
                    kspan,
                    format!(
                        "`{key}` cannot be {} (allowed: {})",
                        if append { "appended" } else { "replaced" },
                        allowed.join(", ")
                    ),
                );
                return None;
            }
            if !e.has(key) {
                self.error(kspan, format!("override names `{key}` but the item does not define it"));
                return None;
            }
            out.push((key.to_string(), append));
        }
        for (key, k, _) in &e.map {
            if *key != name_key && *key != "override" && !out.iter().any(|(o, _)| o == key) {
                self.error(Span::At { file, pos: k.pos }, format!("`{key}` is not listed in `override`"));
                return None;
            }
        }
        Some(Some(out))
    }

    fn add_list(&mut self, file: u16, e: &Entries, at: Span) {
        if !self.check_keys(file, e, LIST_KEYS, "a list") {
            return;
        }
        let Some((name, span)) = self.name(file, e, "list") else { return };
        let append = match e.get("append") {
            Some(n) => match self.bool_of(file, n, "append") {
                Some(b) => b,
                None => return,
            },
            None => false,
        };
        let Some(overrides) = self.overrides(file, e, "list", &["items"], &["items"]) else { return };
        let items = match e.get("items") {
            Some(n) => match self.strings_of(file, n, "items") {
                Some(v) => v,
                None => return,
            },
            None => {
                self.error(at, format!("list `{name}` has no `items`"));
                return;
            }
        };
        let mode = overrides.map(|o| o.first().is_some_and(|(_, a)| *a)).map(Some).unwrap_or(append.then_some(true));
        match mode {
            Some(is_append) => match self.lists.get_mut(&name) {
                Some(def) if is_append => def.items.extend(items),
                Some(def) => def.items = items,
                None => {
                    self.error(span, format!("list `{name}` is appended to or overridden but was never defined before"))
                }
            },
            None => self.lists.put(&name, ListDef { name: name.clone(), items, span }),
        }
    }

    fn add_macro(&mut self, file: u16, e: &Entries, at: Span) {
        if !self.check_keys(file, e, MACRO_KEYS, "a macro") {
            return;
        }
        let Some((name, span)) = self.name(file, e, "macro") else { return };
        let append = match e.get("append") {
            Some(n) => match self.bool_of(file, n, "append") {
                Some(b) => b,
                None => return,
            },
            None => false,
        };
        let Some(overrides) = self.overrides(file, e, "macro", &["condition"], &["condition"]) else { return };
        let Some(cond) = e.get("condition") else {
            self.error(at, format!("macro `{name}` has no `condition`"));
            return;
        };
        if self.string_of(file, cond, "condition").is_none() {
            return;
        }
        let mode = overrides.map(|o| o.first().is_some_and(|(_, a)| *a)).map(Some).unwrap_or(append.then_some(true));
        match mode {
            Some(is_append) => match self.macros.by_name.get(&name).copied() {
                Some(i) => {
                    let base = self.macros.items[i].cond;
                    self.macros.items[i].cond =
                        if is_append { self.append_text(base, file, cond) } else { self.new_text(file, cond) };
                }
                None => self
                    .error(span, format!("macro `{name}` is appended to or overridden but was never defined before")),
            },
            None => {
                let cond = self.new_text(file, cond);
                self.macros.put(&name, MacroDef { name: name.clone(), cond, span });
            }
        }
    }

    fn action_of(&mut self, file: u16, node: &Node) -> Option<Action> {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        self.one_of(file, node, "action", &names, Action::parse)
    }

    fn guard_of(&mut self, file: u16, node: &Node) -> Option<Guard> {
        let names: Vec<&str> = Guard::ALL.iter().map(|g| g.name()).collect();
        self.one_of(file, node, "guard", &names, Guard::from_name)
    }

    /// A string value that must be one of `names`, parsed by `parse`; else a positioned error.
    fn one_of<T>(
        &mut self,
        file: u16,
        node: &Node,
        key: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let value = node.as_str().and_then(parse);
        if value.is_none() {
            self.error(
                Span::At { file, pos: node.pos },
                format!("invalid {key} `{}`: one of {}", node.as_str().unwrap_or(node.kind_name()), names.join(", ")),
            );
        }
        value
    }

    fn priority_of(&mut self, file: u16, node: &Node) -> Option<Priority> {
        let p = match node.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("emergency") => Priority::Emergency,
            Some("alert") => Priority::Alert,
            Some("critical") => Priority::Critical,
            Some("error") => Priority::Error,
            Some("warning" | "warn") => Priority::Warning,
            Some("notice") => Priority::Notice,
            Some("informational" | "info") => Priority::Informational,
            Some("debug") => Priority::Debug,
            _ => {
                self.error(
                    Span::At { file, pos: node.pos },
                    format!(
                        "invalid priority `{}`: one of emergency, alert, critical, error, warning, notice, informational, debug",
                        node.as_str().unwrap_or(node.kind_name())
                    ),
                );
                return None;
            }
        };
        Some(p)
    }

    fn raw(file: u16, node: &Node) -> Raw {
        let span = Span::At { file, pos: node.pos };
        match &node.kind {
            Kind::Scalar(s) => Raw::Scalar(s.clone(), span),
            Kind::Seq(items) => Raw::Seq(items.iter().map(|i| Store::raw(file, i)).collect(), span),
            // A mapping is never valid here; an empty scalar makes the compiler report it.
            Kind::Map(_) => Raw::Seq(Vec::new(), span),
        }
    }

    fn exceptions_of(&mut self, file: u16, node: &Node) -> Option<Vec<ExceptionDef>> {
        if node.is_null() {
            return Some(Vec::new());
        }
        let Kind::Seq(items) = &node.kind else {
            self.error(Span::At { file, pos: node.pos }, "`exceptions` must be a list");
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            let e = self.entries(file, item)?;
            if !self.check_keys(file, &e, EXCEPTION_KEYS, "an exception") {
                return None;
            }
            let (name, span) = match self.name(file, &e, "name") {
                Some(n) => n,
                None => {
                    if !e.has("name") {
                        self.error(Span::At { file, pos: item.pos }, "an exception needs a `name`");
                    }
                    return None;
                }
            };
            if out.iter().any(|x: &ExceptionDef| x.name == name) {
                self.error(span, format!("duplicate exception `{name}`"));
                return None;
            }
            let values = match e.get("values") {
                None => Vec::new(),
                Some(v) if v.is_null() => Vec::new(),
                Some(v) => match &v.kind {
                    Kind::Seq(items) => items.iter().map(|i| Store::raw(file, i)).collect(),
                    _ => {
                        self.error(Span::At { file, pos: v.pos }, "exception `values` must be a list");
                        return None;
                    }
                },
            };
            out.push(ExceptionDef {
                name,
                span,
                fields: e.get("fields").map(|n| Store::raw(file, n)),
                comps: e.get("comps").map(|n| Store::raw(file, n)),
                values,
            });
        }
        Some(out)
    }

    /// Exceptions of an append: values of a known name are added, new names are added whole.
    fn merge_exceptions(&mut self, rule: &mut RuleDef, add: Vec<ExceptionDef>) {
        for x in add {
            match rule.exceptions.iter_mut().find(|e| e.name == x.name) {
                Some(e) => {
                    if x.fields.is_some() || x.comps.is_some() {
                        self.warn(
                            x.span,
                            format!("exception `{}` exists: its fields/comps stay, only values are appended", x.name),
                        );
                    }
                    e.values.extend(x.values);
                }
                None => rule.exceptions.push(x),
            }
        }
    }

    fn add_rule(&mut self, file: u16, e: &Entries, at: Span) {
        if !self.check_keys(file, e, RULE_KEYS, "a rule") {
            return;
        }
        let Some((name, span)) = self.name(file, e, "rule") else { return };
        let flag = |s: &mut Store, key: &str| -> Option<Option<bool>> {
            match e.get(key) {
                Some(n) => s.bool_of(file, n, key).map(Some),
                None => Some(None),
            }
        };
        let Some(append) = flag(self, "append") else { return };
        let Some(enabled) = flag(self, "enabled") else { return };
        let Some(warn_evttypes) = flag(self, "warn_evttypes") else { return };
        let Some(skip_unknown) = flag(self, "skip-if-unknown-filter") else { return };
        let Some(overrides) = self.overrides(file, e, "rule", RULE_APPENDABLE, RULE_REPLACEABLE) else { return };
        let priority = match e.get("priority") {
            Some(n) => match self.priority_of(file, n) {
                Some(p) => Some(p),
                None => return,
            },
            None => None,
        };
        let tags = match e.get("tags") {
            Some(n) => match self.strings_of(file, n, "tags") {
                Some(t) => Some(t.into_iter().map(|(s, _)| s).collect::<Vec<_>>()),
                None => return,
            },
            None => None,
        };
        let desc = match e.get("desc") {
            Some(n) => match self.string_of(file, n, "desc") {
                Some(d) => Some(d),
                None => return,
            },
            None => None,
        };
        for key in ["condition", "output"] {
            if let Some(n) = e.get(key)
                && self.string_of(file, n, key).is_none()
            {
                return;
            }
        }
        let exceptions = match e.get("exceptions") {
            Some(n) => match self.exceptions_of(file, n) {
                Some(x) => Some(x),
                None => return,
            },
            None => None,
        };
        let source = e.get("source").map(|n| (n.as_str().unwrap_or("").to_string(), Span::At { file, pos: n.pos }));
        let action = match e.get("action") {
            Some(n) => match self.action_of(file, n) {
                Some(a) => Some(a),
                None => return,
            },
            None => None,
        };
        let guard = match e.get("guard") {
            Some(n) => match self.guard_of(file, n) {
                Some(g) => Some(g),
                None => return,
            },
            None => None,
        };

        if let Some(overrides) = overrides {
            let Some(&idx) = self.rules.by_name.get(&name) else {
                self.error(span, format!("rule `{name}` is overridden but was never defined before"));
                return;
            };
            let mut rule = self.rules.items[idx].clone();
            for (key, is_append) in overrides {
                let node = e.get(&key).expect("checked by overrides()");
                match (key.as_str(), is_append) {
                    ("condition", true) => rule.cond = self.append_text(rule.cond, file, node),
                    ("condition", false) => rule.cond = self.new_text(file, node),
                    ("output", true) => rule.output = self.append_text(rule.output, file, node),
                    ("output", false) => rule.output = self.new_text(file, node),
                    ("desc", true) => {
                        rule.desc.push(' ');
                        rule.desc.push_str(desc.as_deref().unwrap_or(""));
                    }
                    ("desc", false) => rule.desc = desc.clone().unwrap_or_default(),
                    ("tags", true) => {
                        for t in tags.clone().unwrap_or_default() {
                            if !rule.tags.contains(&t) {
                                rule.tags.push(t);
                            }
                        }
                    }
                    ("tags", false) => rule.tags = tags.clone().unwrap_or_default(),
                    ("exceptions", true) => self.merge_exceptions(&mut rule, exceptions.clone().unwrap_or_default()),
                    ("exceptions", false) => rule.exceptions = exceptions.clone().unwrap_or_default(),
                    ("priority", _) => rule.priority = priority.unwrap_or(rule.priority),
                    ("enabled", _) => rule.enabled = enabled.unwrap_or(rule.enabled),
                    ("warn_evttypes", _) => rule.warn_evttypes = warn_evttypes.unwrap_or(true),
                    ("skip-if-unknown-filter", _) => rule.skip_if_unknown_filter = skip_unknown.unwrap_or(false),
                    ("action", _) => rule.action = action.unwrap_or(rule.action),
                    ("guard", _) => rule.guard = guard.or(rule.guard),
                    _ => {}
                }
            }
            self.rules.items[idx] = rule;
            return;
        }

        if append == Some(true) {
            let Some(&idx) = self.rules.by_name.get(&name) else {
                self.error(span, format!("rule `{name}` has `append: true` but was never defined before"));
                return;
            };
            for (key, k, _) in &e.map {
                if !matches!(*key, "rule" | "append" | "condition" | "exceptions") {
                    self.error(
                        Span::At { file, pos: k.pos },
                        format!("`append: true` appends only condition and exceptions; use `override:` for `{key}`"),
                    );
                    return;
                }
            }
            let mut rule = self.rules.items[idx].clone();
            if let Some(n) = e.get("condition") {
                rule.cond = self.append_text(rule.cond, file, n);
            }
            self.merge_exceptions(&mut rule, exceptions.unwrap_or_default());
            self.rules.items[idx] = rule;
            return;
        }

        // `- rule: X` + `enabled:` alone toggles an existing rule (Falco's older form).
        let only_enabled = e.map.iter().all(|(k, _, _)| matches!(*k, "rule" | "enabled" | "append"));
        if only_enabled && enabled.is_some() {
            match self.rules.get_mut(&name) {
                Some(rule) => rule.enabled = enabled.unwrap_or(true),
                None => self.error(span, format!("rule `{name}` is enabled/disabled but was never defined before")),
            }
            return;
        }

        let missing: Vec<&str> =
            ["condition", "output", "desc", "priority"].into_iter().filter(|k| !e.has(k)).collect();
        if !missing.is_empty() {
            self.error(at, format!("rule `{name}` is missing {}", missing.join(", ")));
            return;
        }
        let cond = self.new_text(file, e.get("condition").expect("present"));
        let output = self.new_text(file, e.get("output").expect("present"));
        self.rules.put(
            &name,
            RuleDef {
                name: name.clone(),
                desc: desc.unwrap_or_default(),
                cond,
                output,
                priority: priority.expect("present"),
                tags: tags.unwrap_or_default(),
                enabled: enabled.unwrap_or(true),
                exceptions: exceptions.unwrap_or_default(),
                span,
                source,
                skip_if_unknown_filter: skip_unknown.unwrap_or(false),
                warn_evttypes: warn_evttypes.unwrap_or(true),
                action: action.unwrap_or_default(),
                guard,
            },
        );
    }
}

/// Parse `proc.aname[2]` into name and argument.
pub(crate) fn split_field(s: &str) -> (&str, Option<&str>) {
    match (s.find('['), s.strip_suffix(']')) {
        (Some(i), Some(inner)) => (&s[..i], Some(&inner[i + 1..])),
        _ => (s, None),
    }
}

/// Comparison operator of an exception's `comps`.
pub(crate) fn comp_of(s: &str) -> Option<Op> {
    Op::parse(s.trim())
}
