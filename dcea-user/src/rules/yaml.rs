//! YAML documents as a small node tree that remembers where every node starts, so errors
//! can name file:line:column — down to a character inside a multi-line condition.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A place in a file: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
    Collection,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// Byte offset of the node's first character in the file text.
    pub offset: usize,
    pub style: Style,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// YAML's null: `~`, `null`, or nothing at all (plain style only).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if self.style == Style::Plain && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(_) if self.is_null() => "null",
            Kind::Scalar(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// Position of the character at byte `offset` of this scalar's value, following YAML's
    /// quoting, escapes and line folding back to the source.
    pub fn value_pos(&self, text: &str, offset: usize) -> Pos {
        match &self.kind {
            Kind::Scalar(value) => scalar_value_pos(text, self.offset, self.pos, self.style, value, offset),
            _ => self.pos,
        }
    }
}

/// Bounds that keep hostile input from costing unbounded memory or stack.
const MAX_DEPTH: usize = 64;
const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

enum Frame {
    Seq { node: Node, items: Vec<Node>, anchor: usize },
    Map { node: Node, entries: Vec<(Node, Node)>, key: Option<Node>, anchor: usize },
}

/// Char index → byte offset, walking forward (markers arrive mostly in order).
struct Cursor<'t> {
    text: &'t str,
    chars: usize,
    bytes: usize,
}

impl Cursor<'_> {
    fn byte_of(&mut self, char_index: usize) -> usize {
        if char_index < self.chars {
            self.chars = 0;
            self.bytes = 0;
        }
        let mut it = self.text[self.bytes..].char_indices();
        while self.chars < char_index {
            match it.next() {
                Some((_, c)) => {
                    self.bytes += c.len_utf8();
                    self.chars += 1;
                }
                None => break,
            }
        }
        self.bytes
    }
}

/// Parse every document of a YAML stream.
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    let mut cursor = Cursor { text, chars: 0, bytes: 0 };

    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| YamlError {
            pos: Pos { line: e.marker().line() as u32, col: e.marker().col() as u32 + 1 },
            message: e.info().to_string(),
        })?;
        let pos = Pos { line: span.start.line() as u32, col: span.start.col() as u32 + 1 };
        let offset = cursor.byte_of(span.start.index());
        let too_big = |pos| YamlError { pos, message: format!("document too large (more than {MAX_NODES} nodes)") };
        let done: Option<(Node, usize)> = match event {
            Event::Scalar(value, style, anchor, _) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                nodes += 1;
                Some((Node { kind: Kind::Scalar(value.into_owned()), pos, offset, style }, anchor))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError { pos, message: format!("nested deeper than {MAX_DEPTH} levels") });
                }
                nodes += 1;
                let node = Node { kind: Kind::Seq(Vec::new()), pos, offset, style: Style::Collection };
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { node, items: Vec::new(), anchor }
                } else {
                    Frame::Map { node, entries: Vec::new(), key: None, anchor }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { mut node, items, anchor }) => {
                    node.kind = Kind::Seq(items);
                    Some((node, anchor))
                }
                Some(Frame::Map { mut node, entries, anchor, .. }) => {
                    node.kind = Kind::Map(entries);
                    Some((node, anchor))
                }
                None => None,
            },
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| YamlError { pos, message: "alias to an unknown anchor".into() })?;
                nodes += count(&node);
                if nodes > MAX_NODES {
                    return Err(too_big(pos));
                }
                Some((node, 0))
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::DocumentEnd | Event::Nothing => {
                None
            }
        };
        if nodes > MAX_NODES {
            return Err(too_big(pos));
        }
        let Some((node, anchor)) = done else { continue };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(docs)
}

fn count(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar(_) => 1,
        Kind::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|(k, v)| count(k) + count(v)).sum::<usize>(),
    }
}

/// Walk the source of a scalar alongside its value. Folding and indentation only change
/// whitespace, and escapes are recognisable, so every other value character is found in
/// order in the source.
pub fn scalar_value_pos(text: &str, offset: usize, start: Pos, style: Style, value: &str, target: usize) -> Pos {
    let src = text.get(offset..).unwrap_or("");
    let mut it = src.chars().peekable();
    let mut pos = start;
    let advance = |pos: &mut Pos, c: char| {
        if c == '\n' {
            pos.line += 1;
            pos.col = 1;
        } else {
            pos.col += 1;
        }
    };
    match style {
        // The span starts at the content; should it start at the header (`>`, `|-`, a
        // comment), skip to the first content line.
        Style::Literal | Style::Folded if matches!(it.peek(), Some('>' | '|')) => {
            for c in it.by_ref() {
                advance(&mut pos, c);
                if c == '\n' {
                    break;
                }
            }
        }
        Style::SingleQuoted | Style::DoubleQuoted => {
            if let Some(c) = it.next() {
                advance(&mut pos, c);
            }
        }
        _ => {}
    }
    let quoted = style == Style::DoubleQuoted;
    let single = style == Style::SingleQuoted;
    for (off, vc) in value.char_indices() {
        if vc.is_whitespace() {
            if off >= target {
                return pos;
            }
            if let Some(&c) = it.peek()
                && c.is_whitespace()
            {
                it.next();
                advance(&mut pos, c);
            }
            continue;
        }
        // Skip source whitespace (indentation, folded line breaks, escaped line breaks).
        while let Some(&c) = it.peek() {
            if c.is_whitespace() {
                it.next();
                advance(&mut pos, c);
            } else {
                break;
            }
        }
        if off >= target {
            return pos;
        }
        match it.next() {
            Some(c) if c == vc => {
                advance(&mut pos, c);
                if single && c == '\'' && it.peek() == Some(&'\'') {
                    it.next();
                    advance(&mut pos, '\'');
                }
            }
            Some('\\') if quoted => {
                advance(&mut pos, '\\');
                let len = match it.next() {
                    Some('x') => 2,
                    Some('u') => 4,
                    Some('U') => 8,
                    _ => 0,
                };
                pos.col += 1;
                for _ in 0..len {
                    if it.next().is_some() {
                        pos.col += 1;
                    }
                }
            }
            Some(c) => advance(&mut pos, c),
            None => return pos,
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_scalar_of<'a>(docs: &'a [Node], key: &str) -> &'a Node {
        fn find<'a>(n: &'a Node, key: &str) -> Option<&'a Node> {
            match &n.kind {
                Kind::Scalar(_) => None,
                Kind::Seq(items) => items.iter().find_map(|i| find(i, key)),
                Kind::Map(entries) => {
                    entries.iter().find_map(|(k, v)| if k.as_str() == Some(key) { Some(v) } else { find(v, key) })
                }
            }
        }
        docs.iter().find_map(|d| find(d, key)).expect("key present")
    }

    #[test]
    fn positions_of_nodes() {
        let text = "- rule: a\n  desc: \"x\"\n- list: l\n  items: [a, 'b c']\n";
        let docs = parse(text).unwrap();
        let Kind::Seq(items) = &docs[0].kind else { panic!() };
        assert_eq!(items[1].pos, Pos { line: 3, col: 3 });
        let list = first_scalar_of(&docs, "items");
        let Kind::Seq(li) = &list.kind else { panic!() };
        assert_eq!(li[1].as_str(), Some("b c"));
        assert_eq!(li[1].pos, Pos { line: 4, col: 14 });
        assert_eq!(li[1].style, Style::SingleQuoted);
    }

    #[test]
    fn positions_inside_folded_and_quoted_scalars() {
        let text = "- macro: m\n  condition: >\n    proc.name = a\n      and fd.name = b\n- macro: n\n  condition: \"x = \\\"q\\\" and y\"\n- macro: p\n  condition: plain one\n    two\n";
        let docs = parse(text).unwrap();
        let Kind::Seq(items) = &docs[0].kind else { panic!() };
        let cond = |i: usize| match &items[i].kind {
            Kind::Map(e) => e[1].1.clone(),
            _ => panic!(),
        };
        let m = cond(0);
        let v = m.as_str().unwrap();
        let at = v.find("fd.name").unwrap();
        assert_eq!(m.value_pos(text, at), Pos { line: 4, col: 11 });
        assert_eq!(m.value_pos(text, 0), Pos { line: 3, col: 5 });
        let n = cond(1);
        let v = n.as_str().unwrap();
        assert_eq!(v, "x = \"q\" and y");
        assert_eq!(n.value_pos(text, v.find("and").unwrap()), Pos { line: 6, col: 25 });
        let p = cond(2);
        assert_eq!(p.as_str(), Some("plain one two"));
        assert_eq!(p.value_pos(text, 10), Pos { line: 9, col: 5 });
    }

    #[test]
    fn errors_and_limits() {
        let e = parse("- rule: a\n  desc: [unclosed\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
        // Billion laughs: every level doubles; the node budget stops it.
        let mut bomb = String::from("a: &a0 [x, x]\n");
        for i in 1..40 {
            bomb += &format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1);
        }
        assert!(parse(&bomb).unwrap_err().message.contains("too large"));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("a: *nope").is_err());
    }
}
