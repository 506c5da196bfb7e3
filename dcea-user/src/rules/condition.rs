//! Falco's condition language: lexer and parser to an AST that keeps the byte offset of every
//! name, operator and value, so later errors point at the exact character.
//!
//! Grammar (precedence: `not` > `and` > `or`, as in Falco):
//! ```text
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | primary
//! primary := "(" or ")" | IDENT [ "[" ARG "]" ] [ OP [ value ] ]     // IDENT alone = macro
//! value   := STRING | BARE | "(" [ item ("," item)* ] ")" | "val(" IDENT [ "[" ARG "]" ] ")"
//! ```

/// Comparison operators. The unsupported Falco ones parse, so the error can name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    StartsWith,
    EndsWith,
    Glob,
    In,
    PMatch,
    Exists,
    Intersects,
    BContains,
    BStartsWith,
    IGlob,
    Regex,
}

impl Op {
    fn from_word(w: &str) -> Option<Op> {
        Some(match w {
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "startswith" => Op::StartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "in" => Op::In,
            "pmatch" => Op::PMatch,
            "exists" => Op::Exists,
            "intersects" => Op::Intersects,
            "bcontains" => Op::BContains,
            "bstartswith" => Op::BStartsWith,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::In => "in",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
            Op::Intersects => "intersects",
            Op::BContains => "bcontains",
            Op::BStartsWith => "bstartswith",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
        }
    }

    /// Operators whose right-hand side is a list.
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::PMatch | Op::Intersects)
    }

    /// Parse an operator as written in an exception's `comps`.
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            w => return Op::from_word(w),
        })
    }
}

/// A literal value: the text after unquoting, whether it was quoted, and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Literal {
    pub text: String,
    pub quoted: bool,
    pub off: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldName {
    pub name: String,
    pub arg: Option<String>,
    pub off: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    /// `exists` takes nothing.
    None,
    Single(Literal),
    /// Items of `(a, b, c)`; unquoted items that name a list are expanded when compiling.
    List(Vec<Literal>, u32),
    /// `val(other.field)`: compare with another field of the same event.
    Field(FieldName),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ast {
    And(Vec<Ast>),
    Or(Vec<Ast>),
    Not(Box<Ast>),
    Macro { name: String, off: u32 },
    Cmp { field: FieldName, op: Op, op_off: u32, value: Operand },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub off: u32,
    pub message: String,
}

/// Nesting bound: conditions are written by people, and hostile input must not exhaust the stack.
const MAX_NESTING: usize = 200;

pub fn parse(text: &str) -> Result<Ast, SyntaxError> {
    let mut p = Parser { s: text.as_bytes(), text, i: 0, depth: 0 };
    p.ws();
    if p.i == p.s.len() {
        return Err(p.err(0, "empty condition"));
    }
    let ast = p.or()?;
    p.ws();
    if p.i < p.s.len() {
        let what = p.describe_here();
        let msg = if p.s[p.i] == b')' {
            "unbalanced parentheses: `)` without a matching `(`".to_string()
        } else {
            format!("expected `and`, `or` or the end of the condition, found {what}")
        };
        return Err(p.err(p.i, msg));
    }
    Ok(ast)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}
/// Falco's bare-string characters: anything but blanks, parentheses, comma, `=` and quotes.
fn is_bare(b: u8) -> bool {
    !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x08 | b'(' | b')' | b',' | b'=' | b'"' | b'\'')
}

impl Parser<'_> {
    fn err(&self, off: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError { off: off as u32, message: message.into() }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn describe_here(&self) -> String {
        if self.i >= self.s.len() {
            return "the end of the condition".into();
        }
        let rest = &self.text[self.i..];
        let word: String = rest.chars().take_while(|c| !c.is_whitespace()).take(24).collect();
        format!("`{word}`")
    }

    /// The keyword `kw` at the cursor, as a whole word.
    fn at_keyword(&self, kw: &str) -> bool {
        let end = self.i + kw.len();
        self.s.get(self.i..end) == Some(kw.as_bytes()) && self.s.get(end).is_none_or(|b| !is_ident(*b))
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.err(self.i, format!("condition nested deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Ast, SyntaxError> {
        let mut items = vec![self.and()?];
        loop {
            self.ws();
            if !self.at_keyword("or") {
                break;
            }
            self.i += 2;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 { items.pop().expect("one item") } else { Ast::Or(items) })
    }

    fn and(&mut self) -> Result<Ast, SyntaxError> {
        let mut items = vec![self.not()?];
        loop {
            self.ws();
            if !self.at_keyword("and") {
                break;
            }
            self.i += 3;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 { items.pop().expect("one item") } else { Ast::And(items) })
    }

    fn not(&mut self) -> Result<Ast, SyntaxError> {
        self.ws();
        if self.at_keyword("not") {
            self.i += 3;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Ast::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Ast, SyntaxError> {
        self.ws();
        let start = self.i;
        match self.s.get(self.i) {
            None => Err(self.err(self.i, "condition ends where a check, a macro or `(` was expected")),
            Some(b'(') => {
                self.enter()?;
                self.i += 1;
                let inner = match self.or() {
                    // Input that ends inside the parentheses: the open `(` is the news.
                    Err(e) if e.off as usize >= self.s.len() => {
                        return Err(self.err(start, "unbalanced parentheses: this `(` is never closed"));
                    }
                    r => r?,
                };
                self.ws();
                if self.s.get(self.i) != Some(&b')') {
                    let found = self.describe_here();
                    let msg = if self.i >= self.s.len() {
                        "unbalanced parentheses: this `(` is never closed".to_string()
                    } else {
                        format!("expected `)` to close this `(`, found {found}")
                    };
                    return Err(self.err(start, msg));
                }
                self.i += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some(b')') => Err(self.err(self.i, "unbalanced parentheses: `)` without a matching `(`")),
            Some(&b) if is_ident_start(b) => {
                for kw in ["and", "or"] {
                    if self.at_keyword(kw) {
                        return Err(self.err(self.i, format!("`{kw}` where a check, a macro or `(` was expected")));
                    }
                }
                let field = self.ident()?;
                self.ws();
                if self.s.get(self.i) == Some(&b'(') {
                    return Err(self.err(
                        field.off as usize,
                        format!("`{}(…)`: field transformers and functions are not supported", field.name),
                    ));
                }
                let op_off = self.i;
                match self.op() {
                    None => {
                        if field.arg.is_some() {
                            return Err(self.err(self.i, format!("expected an operator after `{}[…]`", field.name)));
                        }
                        Ok(Ast::Macro { name: field.name, off: field.off })
                    }
                    Some(op) => {
                        let value = self.operand(op, op_off)?;
                        Ok(Ast::Cmp { field, op, op_off: op_off as u32, value })
                    }
                }
            }
            Some(_) => {
                let what = self.describe_here();
                Err(self.err(self.i, format!("expected a field, a macro, `not` or `(`, found {what}")))
            }
        }
    }

    fn ident(&mut self) -> Result<FieldName, SyntaxError> {
        let off = self.i;
        while self.i < self.s.len() && is_ident(self.s[self.i]) {
            self.i += 1;
        }
        let name = self.text[off..self.i].to_string();
        let arg = if self.s.get(self.i) == Some(&b'[') {
            let open = self.i;
            let close = self.s[open..]
                .iter()
                .position(|&b| b == b']')
                .ok_or_else(|| self.err(open, "`[` without a closing `]`"))?;
            self.i = open + close + 1;
            Some(self.text[open + 1..open + close].to_string())
        } else {
            None
        };
        Ok(FieldName { name, arg, off: off as u32 })
    }

    fn op(&mut self) -> Option<Op> {
        let rest = &self.s[self.i..];
        let sym = match rest {
            [b'=', b'=', ..] => Some((Op::Eq, 2)),
            [b'!', b'=', ..] => Some((Op::Ne, 2)),
            [b'<', b'=', ..] => Some((Op::Le, 2)),
            [b'>', b'=', ..] => Some((Op::Ge, 2)),
            [b'=', ..] => Some((Op::Eq, 1)),
            [b'<', ..] => Some((Op::Lt, 1)),
            [b'>', ..] => Some((Op::Gt, 1)),
            _ => None,
        };
        if let Some((op, len)) = sym {
            self.i += len;
            return Some(op);
        }
        let end = rest.iter().position(|b| !b.is_ascii_alphabetic()).unwrap_or(rest.len());
        let op = Op::from_word(&self.text[self.i..self.i + end])?;
        if rest.get(end).is_some_and(|b| is_ident(*b)) {
            return None;
        }
        self.i += end;
        Some(op)
    }

    fn operand(&mut self, op: Op, op_off: usize) -> Result<Operand, SyntaxError> {
        if op == Op::Exists {
            return Ok(Operand::None);
        }
        self.ws();
        if op.takes_list() {
            if self.s.get(self.i) != Some(&b'(') {
                let found = self.describe_here();
                return Err(self.err(self.i, format!("`{}` takes a list `(a, b, …)`, found {found}", op.name())));
            }
            let open = self.i;
            self.i += 1;
            let mut items = Vec::new();
            self.ws();
            if self.s.get(self.i) == Some(&b')') {
                self.i += 1;
                return Ok(Operand::List(items, open as u32));
            }
            loop {
                self.ws();
                items.push(self.literal(true)?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b')') => {
                        self.i += 1;
                        return Ok(Operand::List(items, open as u32));
                    }
                    None => return Err(self.err(open, "unbalanced parentheses: this list's `(` is never closed")),
                    Some(_) => {
                        let found = self.describe_here();
                        return Err(self.err(self.i, format!("expected `,` or `)` in the list, found {found}")));
                    }
                }
            }
        }
        if self.s.get(self.i..self.i + 4) == Some(b"val(") {
            self.i += 4;
            self.ws();
            if !self.s.get(self.i).is_some_and(|b| is_ident_start(*b)) {
                return Err(self.err(self.i, "`val(` must name a field"));
            }
            let f = self.ident()?;
            self.ws();
            if self.s.get(self.i) != Some(&b')') {
                return Err(self.err(self.i, "expected `)` to close `val(`"));
            }
            self.i += 1;
            return Ok(Operand::Field(f));
        }
        if self.i >= self.s.len() || !matches!(self.s[self.i], b'"' | b'\'') && !is_bare(self.s[self.i]) {
            let found = self.describe_here();
            return Err(self.err(op_off, format!("`{}` needs a value, found {found}", op.name())));
        }
        Ok(Operand::Single(self.literal(false)?))
    }

    /// A quoted string or a bare word. Inside lists a bare word also stops at `,` and `)`.
    fn literal(&mut self, in_list: bool) -> Result<Literal, SyntaxError> {
        let off = self.i;
        match self.s.get(self.i) {
            Some(&q @ (b'"' | b'\'')) => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let Some(&b) = self.s.get(self.i) else {
                        return Err(self.err(off, "string is never closed"));
                    };
                    if b == q {
                        self.i += 1;
                        break;
                    }
                    if b == b'\\' {
                        let esc = self.s.get(self.i + 1).copied();
                        let (c, len) = match esc {
                            Some(b'\\') => ('\\', 2),
                            Some(b'"') => ('"', 2),
                            Some(b'\'') => ('\'', 2),
                            Some(b'n') => ('\n', 2),
                            Some(b't') => ('\t', 2),
                            Some(b'r') => ('\r', 2),
                            Some(b'x') => {
                                let hex = self.text.get(self.i + 2..self.i + 4).unwrap_or("");
                                match u8::from_str_radix(hex, 16) {
                                    Ok(v) if v.is_ascii() && v != 0 && hex.len() == 2 => (v as char, 4),
                                    _ => {
                                        return Err(self.err(
                                            self.i,
                                            "`\\x` needs two hex digits of an ASCII character other than NUL",
                                        ));
                                    }
                                }
                            }
                            // Anything else stays as written (e.g. `\.` for a glob).
                            _ => ('\\', 1),
                        };
                        out.push(c);
                        self.i += len;
                        continue;
                    }
                    let ch = self.text[self.i..].chars().next().expect("in bounds");
                    out.push(ch);
                    self.i += ch.len_utf8();
                }
                Ok(Literal { text: out, quoted: true, off: off as u32 })
            }
            _ => {
                while self.i < self.s.len() && is_bare(self.s[self.i]) {
                    if in_list && self.s[self.i] == b')' {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == off {
                    let found = self.describe_here();
                    return Err(self.err(off, format!("expected a value, found {found}")));
                }
                Ok(Literal { text: self.text[off..self.i].to_string(), quoted: false, off: off as u32 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, op: Op, v: &str) -> (String, Op, String) {
        (field.to_string(), op, v.to_string())
    }

    fn flat(a: &Ast) -> Vec<(String, Op, String)> {
        match a {
            Ast::And(x) | Ast::Or(x) => x.iter().flat_map(flat).collect(),
            Ast::Not(x) => flat(x),
            Ast::Macro { name, .. } => vec![(name.clone(), Op::Exists, "<macro>".into())],
            Ast::Cmp { field, op, value, .. } => vec![(
                field.name.clone() + &field.arg.as_ref().map(|a| format!("[{a}]")).unwrap_or_default(),
                *op,
                match value {
                    Operand::None => String::new(),
                    Operand::Single(l) => l.text.clone(),
                    Operand::List(items, _) => items.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join(","),
                    Operand::Field(f) => format!("val({})", f.name),
                },
            )],
        }
    }

    #[test]
    fn falco_documented_conditions_parse() {
        // From Falco's condition-syntax documentation.
        let a = parse("evt.type = execve and (proc.name = cat or proc.name = grep)").unwrap();
        assert!(matches!(&a, Ast::And(x) if matches!(x[1], Ast::Or(_))));
        assert_eq!(
            flat(&a),
            vec![cmp("evt.type", Op::Eq, "execve"), cmp("proc.name", Op::Eq, "cat"), cmp("proc.name", Op::Eq, "grep")]
        );
        let a = parse("evt.type in (open, openat) and evt.dir = < and evt.arg.flags contains O_TRUNC").unwrap();
        assert_eq!(
            flat(&a),
            vec![
                cmp("evt.type", Op::In, "open,openat"),
                cmp("evt.dir", Op::Eq, "<"),
                cmp("evt.arg.flags", Op::Contains, "O_TRUNC")
            ]
        );
        let a = parse("fd.name pmatch (/var/run, /var/spool, /etc, /boot)").unwrap();
        assert_eq!(flat(&a), vec![cmp("fd.name", Op::PMatch, "/var/run,/var/spool,/etc,/boot")]);
        let a = parse("fd.name glob '/home/*/.ssh/*' and k8s.pod.name exists").unwrap();
        assert_eq!(flat(&a), vec![cmp("fd.name", Op::Glob, "/home/*/.ssh/*"), cmp("k8s.pod.name", Op::Exists, "")]);
        let a = parse("proc.cmdline contains \"-jar\" and not proc.name=bash").unwrap();
        assert_eq!(flat(&a), vec![cmp("proc.cmdline", Op::Contains, "-jar"), cmp("proc.name", Op::Eq, "bash")]);
        let a = parse("fd.num>=0 and proc.aname[2]!=sshd and proc.name = val(proc.pname)").unwrap();
        assert_eq!(
            flat(&a),
            vec![
                cmp("fd.num", Op::Ge, "0"),
                cmp("proc.aname[2]", Op::Ne, "sshd"),
                cmp("proc.name", Op::Eq, "val(proc.pname)")
            ]
        );
    }

    #[test]
    fn precedence_not_and_or() {
        // not binds tighter than and, and tighter than or.
        let a = parse("a or b and not c").unwrap();
        let Ast::Or(x) = a else { panic!("{a:?}") };
        assert!(matches!(&x[0], Ast::Macro { name, .. } if name == "a"));
        let Ast::And(y) = &x[1] else { panic!() };
        assert!(matches!(&y[1], Ast::Not(_)));
        assert!(matches!(parse("not not a").unwrap(), Ast::Not(inner) if matches!(*inner, Ast::Not(_))));
        // Keywords are whole words.
        assert!(matches!(parse("android or nothing").unwrap(), Ast::Or(x) if x.len() == 2));
    }

    #[test]
    fn macros_lists_and_quoting() {
        let a = parse("spawned_process and proc.name in (shell_binaries, 'my shell', \"x\\\"y\")").unwrap();
        let Ast::And(x) = a else { panic!() };
        assert!(matches!(&x[0], Ast::Macro { name, off: 0 } if name == "spawned_process"));
        let Ast::Cmp { value: Operand::List(items, _), .. } = &x[1] else { panic!() };
        assert_eq!(
            items.iter().map(|l| (l.text.as_str(), l.quoted)).collect::<Vec<_>>(),
            [("shell_binaries", false), ("my shell", true), ("x\"y", true)]
        );
        assert!(
            matches!(parse("proc.name in ()").unwrap(), Ast::Cmp { value: Operand::List(v, _), .. } if v.is_empty())
        );
        assert_eq!(flat(&parse("fd.name = \"\\x41\\tb\"").unwrap())[0].2, "A\tb");
    }

    #[test]
    fn errors_point_at_the_culprit() {
        let e = parse("(proc.name = a and (b)").unwrap_err();
        assert_eq!(e.off, 0);
        assert!(e.message.contains("never closed"), "{e:?}");
        let e = parse("proc.name = a)").unwrap_err();
        assert_eq!(e.off, 13);
        assert!(e.message.contains("without a matching"), "{e:?}");
        let e = parse("proc.name = a and").unwrap_err();
        assert_eq!(e.off, 17);
        let e = parse("proc.name =").unwrap_err();
        assert!(e.message.contains("needs a value"), "{e:?}");
        let e = parse("proc.name in bash").unwrap_err();
        assert_eq!(e.off, 13);
        let e = parse("tolower(proc.name) = bash").unwrap_err();
        assert!(e.message.contains("transformers"), "{e:?}");
        let e = parse("proc.name = 'abc").unwrap_err();
        assert_eq!(e.off, 12);
        let e = parse("proc.name in (a b)").unwrap_err();
        assert!(e.message.contains("expected `,` or `)`"), "{e:?}");
        assert!(parse("   ").unwrap_err().message.contains("empty"));
        assert!(parse("a b").unwrap_err().message.contains("expected `and`"));
        let deep = "(".repeat(1000) + "a" + &")".repeat(1000);
        assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
        let e = parse("= a").unwrap_err();
        assert_eq!(e.off, 0);
    }
}
