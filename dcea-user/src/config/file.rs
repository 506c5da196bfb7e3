//! The config file itself: one YAML mapping of settings, each value remembered with where it
//! was written. What the keys mean and whether the values fit is decided in `keys`/`layers`.

use crate::rules::yaml::{self, Kind, Node, Pos};

use super::ConfigError;

/// Config files are a few dozen lines; a bigger one is a mistake (or an attack on the parser).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One `key: value` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written.
    pub key: String,
    pub key_pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `key:`, `key: ~`, `key: null`: the same as leaving the key out.
    Unset,
    One(String, Pos),
    Many(Vec<(String, Pos)>),
}

impl Value {
    pub fn pos(&self) -> Option<Pos> {
        match self {
            Value::Unset => None,
            Value::One(_, p) => Some(*p),
            Value::Many(items) => items.first().map(|(_, p)| *p),
        }
    }
}

/// Parse `text` (read from `origin`, used in errors) into its entries, in file order. Every
/// structural error is reported, not just the first.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Entry>, Vec<ConfigError>> {
    let err = |pos: Pos, key: &str, message: String| ConfigError::at(origin, pos, key, message);
    let docs = yaml::parse(text).map_err(|e| vec![err(e.pos, "", e.message)])?;
    let root = match docs.as_slice() {
        [] => return Ok(Vec::new()),
        [root] => root,
        [_, second, ..] => {
            return Err(vec![err(second.pos, "", "one YAML document expected, found several".into())]);
        }
    };
    if root.is_null() {
        return Ok(Vec::new());
    }
    let Kind::Map(pairs) = &root.kind else {
        return Err(vec![err(
            root.pos,
            "",
            format!("expected a mapping of settings (`key: value` lines), found {}", root.kind_name()),
        )]);
    };
    let mut entries = Vec::with_capacity(pairs.len());
    let mut errors = Vec::new();
    for (k, v) in pairs {
        let key = match k.as_str() {
            Some(s) if !k.is_null() => s.to_string(),
            _ => {
                errors.push(err(k.pos, "", format!("a key must be a setting name, found {}", k.kind_name())));
                continue;
            }
        };
        match value(v) {
            Ok(value) => entries.push(Entry { key, key_pos: k.pos, value }),
            Err((pos, message)) => errors.push(err(pos, &key, message)),
        }
    }
    if errors.is_empty() { Ok(entries) } else { Err(errors) }
}

fn value(v: &Node) -> Result<Value, (Pos, String)> {
    match &v.kind {
        _ if v.is_null() => Ok(Value::Unset),
        Kind::Scalar(s) => Ok(Value::One(s.clone(), v.pos)),
        Kind::Seq(items) if items.is_empty() => {
            Err((v.pos, "an empty list cannot be expressed as flags: leave the key out for the default".into()))
        }
        Kind::Seq(items) => items
            .iter()
            .map(|item| match item.as_str() {
                Some(s) if !item.is_null() => Ok((s.to_string(), item.pos)),
                _ => Err((item.pos, format!("list items must be values, found {}", item.kind_name()))),
            })
            .collect::<Result<_, _>>()
            .map(Value::Many),
        Kind::Map(_) => Err((v.pos, "expected a value or a list of values, found a mapping".into())),
    }
}

/// Read a config file, bounded in size.
pub fn read(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let file = std::fs::File::open(path)?;
    let n = file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if n as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(text)
}
