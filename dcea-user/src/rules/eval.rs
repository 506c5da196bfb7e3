//! Compiled conditions and their evaluation. Everything a comparison needs (sets, globs, path
//! prefixes, flag masks) is built at compile time; evaluating reads field values borrowed from
//! the event and allocates nothing.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{
    event::{EventView, EvtType, TypeSet, Value},
    fields::{Access, FieldRef, FlagKind, FlagSpec, MAX_GENERATION, O_ACCMODE, S_IFMT},
};

/// Macros up to this many nodes are inlined into each rule's per-type expression; larger
/// ones stay shared, so specialisation cannot blow up memory.
const INLINE_MACRO_SIZE: usize = 64;

#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Const(bool),
    /// `evt.type` test against a set.
    Types(TypeSet),
    Check(Check),
    And(Box<[Expr]>),
    Or(Box<[Expr]>),
    Not(Box<Expr>),
    /// A compiled macro, shared by every rule that uses it.
    Macro(Arc<Expr>),
}

#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub field: FieldRef,
    /// `proc.aname` without `[N]`: true when any ancestor satisfies the test.
    pub any_generation: bool,
    /// `!=`: the test's result inverted — but a missing value stays false, as in Falco.
    pub negate: bool,
    pub test: Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl NumOp {
    fn apply(self, a: i64, b: i64) -> bool {
        match self {
            NumOp::Eq => a == b,
            NumOp::Lt => a < b,
            NumOp::Le => a <= b,
            NumOp::Gt => a > b,
            NumOp::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    Exists,
    StrEq(Box<str>),
    StrIn(StrSet),
    Contains(Box<str>),
    /// ASCII case-insensitive; the needle is stored lower-cased.
    IContains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Glob(Glob),
    PMatch(PathSet),
    Num(NumOp, i64),
    NumIn(Box<[i64]>),
    Bool(bool),
    FlagsContain(FlagSpec),
    FlagsEq(FlagSpec),
    /// A field that is a string for some events and a number for others: the test for
    /// each variant (None: that variant never matches).
    Either(Option<Box<Test>>, Option<Box<Test>>),
    /// `val(other)`: compare with another field of the same event.
    Field(NumOp, FieldRef),
}

/// String set for `in`: a short list is scanned, a long one hashed.
#[derive(Debug, Clone)]
pub(crate) enum StrSet {
    Small(Box<[Box<str>]>),
    Hashed(HashSet<Box<str>>),
}

impl StrSet {
    pub fn new(items: Vec<String>) -> StrSet {
        if items.len() <= 8 {
            StrSet::Small(items.into_iter().map(String::into_boxed_str).collect())
        } else {
            StrSet::Hashed(items.into_iter().map(String::into_boxed_str).collect())
        }
    }
    fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(v) => v.iter().any(|x| &**x == s),
            StrSet::Hashed(h) => h.contains(s),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Glob (fnmatch without FNM_PATHNAME: `*` crosses `/`, as Falco's glob does)

#[derive(Debug, Clone, PartialEq, Eq)]
enum GTok {
    Lit(char),
    Any,
    Star,
    Class { negated: bool, ranges: Box<[(char, char)]> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob(Box<[GTok]>);

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if toks.last() != Some(&GTok::Star) {
                        toks.push(GTok::Star);
                    }
                    i += 1;
                }
                '?' => {
                    toks.push(GTok::Any);
                    i += 1;
                }
                '[' => match Glob::class(&chars[i + 1..]) {
                    Some((tok, used)) => {
                        toks.push(tok);
                        i += 1 + used;
                    }
                    None => {
                        toks.push(GTok::Lit('['));
                        i += 1;
                    }
                },
                c => {
                    toks.push(GTok::Lit(c));
                    i += 1;
                }
            }
        }
        Glob(toks.into_boxed_slice())
    }

    /// `[...]` after the `[`: the token and how many chars it used (incl. the `]`).
    fn class(chars: &[char]) -> Option<(GTok, usize)> {
        let mut i = 0;
        let negated = matches!(chars.first(), Some('!' | '^'));
        if negated {
            i += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        while i < chars.len() {
            let c = chars[i];
            if c == ']' && !first {
                return Some((GTok::Class { negated, ranges: ranges.into_boxed_slice() }, i + 1));
            }
            first = false;
            if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
                ranges.push((c, chars[i + 2]));
                i += 3;
            } else {
                ranges.push((c, c));
                i += 1;
            }
        }
        None
    }

    fn tok_matches(t: &GTok, c: char) -> bool {
        match t {
            GTok::Lit(l) => *l == c,
            GTok::Any => true,
            GTok::Class { negated, ranges } => ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negated,
            GTok::Star => false,
        }
    }

    /// Iterative matching with one backtrack point per `*`: linear in practice, never
    /// exponential, no allocation.
    pub fn matches(&self, s: &str) -> bool {
        let p = &self.0;
        let (mut pi, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        loop {
            if pi < p.len() {
                if p[pi] == GTok::Star {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                if let Some(c) = s[si..].chars().next()
                    && Glob::tok_matches(&p[pi], c)
                {
                    pi += 1;
                    si += c.len_utf8();
                    continue;
                }
            } else if si == s.len() {
                return true;
            }
            match star {
                Some((sp, ss)) => match s[ss..].chars().next() {
                    Some(c) => {
                        let next = ss + c.len_utf8();
                        star = Some((sp, next));
                        pi = sp + 1;
                        si = next;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pmatch: path prefixes by whole components, components may be globs

#[derive(Debug, Clone)]
enum Comp {
    Lit(Box<str>),
    Glob(Glob),
}

/// pmatch prefixes: literal ones compared as strings, ones with glob components walked
/// component by component.
#[derive(Debug, Clone)]
pub(crate) struct PathSet {
    literal: Box<[Box<str>]>,
    globbed: Box<[Box<[Comp]>]>,
}

impl PathSet {
    pub fn new(prefixes: &[String]) -> PathSet {
        let mut literal = Vec::new();
        let mut globbed = Vec::new();
        for p in prefixes {
            let comps: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
            if comps.iter().any(|c| c.contains(['*', '?', '['])) {
                globbed.push(
                    comps
                        .iter()
                        .map(|c| {
                            if c.contains(['*', '?', '[']) { Comp::Glob(Glob::new(c)) } else { Comp::Lit((*c).into()) }
                        })
                        .collect(),
                );
            } else {
                // Normalised: `/a//b/` → `/a/b`; `/` stays `/` (matches every absolute path).
                literal.push(format!("/{}", comps.join("/")).into_boxed_str());
            }
        }
        PathSet { literal: literal.into(), globbed: globbed.into() }
    }

    fn matches(&self, path: &str) -> bool {
        let literal = self.literal.iter().any(|p| {
            if &**p == "/" {
                return path.starts_with('/');
            }
            path.starts_with(&**p) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
        });
        literal
            || self.globbed.iter().any(|prefix| {
                let mut comps = path.split('/').filter(|c| !c.is_empty());
                prefix.iter().all(|want| match comps.next() {
                    Some(c) => match want {
                        Comp::Lit(l) => &**l == c,
                        Comp::Glob(g) => g.matches(c),
                    },
                    None => false,
                })
            })
    }
}

fn icontains(hay: &str, needle_lower: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle_lower.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len()).any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

fn flags_contain(spec: &FlagSpec, bits: u64, kind: FlagKind) -> Option<bool> {
    if spec.kind.is_some_and(|k| k != kind) {
        return None;
    }
    let access_ok = match spec.access {
        None => true,
        Some(Access::Read) => bits & O_ACCMODE != 1,
        Some(Access::Write) => bits & O_ACCMODE != 0,
        Some(Access::ReadWrite) => bits & O_ACCMODE >= 2,
    };
    let type_ok = spec.file_type.is_none_or(|t| bits & S_IFMT == t);
    Some(access_ok && type_ok && bits & spec.bits == spec.bits)
}

fn flags_eq(spec: &FlagSpec, bits: u64, kind: FlagKind) -> Option<bool> {
    if spec.kind.is_some_and(|k| k != kind) {
        return None;
    }
    Some(match (spec.kind, spec.access) {
        (Some(FlagKind::Open), access) => {
            let acc = match access {
                None | Some(Access::Read) => 0,
                Some(Access::Write) => 1,
                Some(Access::ReadWrite) => 2,
            };
            bits & O_ACCMODE == acc && bits & !O_ACCMODE == spec.bits
        }
        _ => bits == spec.bits | spec.file_type.unwrap_or(0),
    })
}

impl Test {
    /// None: the value cannot be compared (absent, or of another kind): the check is false.
    fn eval<E: EventView + ?Sized>(&self, v: Value<'_>, ev: &E) -> Option<bool> {
        Some(match (self, v) {
            (_, Value::None) => return None,
            (Test::Exists, _) => true,
            (Test::StrEq(x), Value::Str(s)) => &**x == s,
            (Test::StrIn(set), Value::Str(s)) => set.contains(s),
            (Test::Contains(x), Value::Str(s)) => s.contains(&**x),
            (Test::IContains(x), Value::Str(s)) => icontains(s, x),
            (Test::StartsWith(x), Value::Str(s)) => s.starts_with(&**x),
            (Test::EndsWith(x), Value::Str(s)) => s.ends_with(&**x),
            (Test::Glob(g), Value::Str(s)) => g.matches(s),
            (Test::PMatch(p), Value::Str(s)) => p.matches(s),
            (Test::Num(op, x), Value::Num(n)) => op.apply(n, *x),
            (Test::NumIn(xs), Value::Num(n)) => xs.contains(&n),
            (Test::Bool(x), Value::Bool(b)) => *x == b,
            (Test::FlagsContain(spec), Value::Flags(bits, kind)) => return flags_contain(spec, bits, kind),
            (Test::FlagsEq(spec), Value::Flags(bits, kind)) => return flags_eq(spec, bits, kind),
            (Test::Either(Some(s), _), Value::Str(_)) => return s.eval(v, ev),
            (Test::Either(_, Some(n)), Value::Num(_)) => return n.eval(v, ev),
            (Test::Field(op, other), v) => match (v, ev.field(*other)) {
                (Value::Str(a), Value::Str(b)) if *op == NumOp::Eq => a == b,
                (Value::Num(a), Value::Num(b)) => op.apply(a, b),
                (Value::Bool(a), Value::Bool(b)) if *op == NumOp::Eq => a == b,
                (Value::Flags(a, _), Value::Flags(b, _)) if *op == NumOp::Eq => a == b,
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl Check {
    fn eval<E: EventView + ?Sized>(&self, ev: &E) -> bool {
        if self.any_generation {
            for generation in 1..=MAX_GENERATION {
                let v = ev.field(FieldRef { id: self.field.id, arg: generation });
                if v == Value::None {
                    return false;
                }
                if self.test.eval(v, ev).is_some_and(|r| r != self.negate) {
                    return true;
                }
            }
            return false;
        }
        self.test.eval(ev.field(self.field), ev).is_some_and(|r| r != self.negate)
    }
}

impl Expr {
    pub fn eval<E: EventView + ?Sized>(&self, ev: &E) -> bool {
        match self {
            Expr::Const(b) => *b,
            Expr::Types(set) => set.contains(ev.evt_type()),
            Expr::Check(c) => c.eval(ev),
            Expr::And(items) => items.iter().all(|e| e.eval(ev)),
            Expr::Or(items) => items.iter().any(|e| e.eval(ev)),
            Expr::Not(e) => !e.eval(ev),
            Expr::Macro(e) => e.eval(ev),
        }
    }

    /// (may, must): the event types for which the expression can be true, and those for which
    /// it is true whatever the fields. `may` decides which per-type index lists a rule joins.
    pub fn types(&self) -> (TypeSet, TypeSet) {
        match self {
            Expr::Const(true) => (TypeSet::ALL, TypeSet::ALL),
            Expr::Const(false) => (TypeSet::EMPTY, TypeSet::EMPTY),
            Expr::Types(s) => (*s, *s),
            Expr::Check(_) => (TypeSet::ALL, TypeSet::EMPTY),
            Expr::And(items) => items.iter().fold((TypeSet::ALL, TypeSet::ALL), |(may, must), e| {
                let (m, u) = e.types();
                (may.intersect(m), must.intersect(u))
            }),
            Expr::Or(items) => items.iter().fold((TypeSet::EMPTY, TypeSet::EMPTY), |(may, must), e| {
                let (m, u) = e.types();
                (may.union(m), must.union(u))
            }),
            Expr::Not(e) => {
                let (may, must) = e.types();
                (must.complement(), may.complement())
            }
            Expr::Macro(e) => e.types(),
        }
    }

    /// The expression as it evaluates for events of type `t`: `evt.type` tests become
    /// constants and fold away, small macros are inlined, nested and/or are flattened. The
    /// per-type index holds these, so the hot path skips what the event type already decides.
    pub fn specialize(&self, t: EvtType, memo: &mut HashMap<(usize, EvtType), Arc<Expr>>) -> Expr {
        match self {
            Expr::Const(b) => Expr::Const(*b),
            Expr::Types(s) => Expr::Const(s.contains(t)),
            Expr::Check(c) => Expr::Check(c.clone()),
            Expr::Not(e) => match e.specialize(t, memo) {
                Expr::Const(b) => Expr::Const(!b),
                Expr::Not(inner) => *inner,
                e => Expr::Not(Box::new(e)),
            },
            Expr::Macro(m) => {
                if m.expanded_size() <= INLINE_MACRO_SIZE {
                    return m.specialize(t, memo);
                }
                let key = (Arc::as_ptr(m) as usize, t);
                if let Some(done) = memo.get(&key) {
                    return Expr::Macro(done.clone());
                }
                match m.specialize(t, memo) {
                    Expr::Const(b) => Expr::Const(b),
                    e => {
                        let e = Arc::new(e);
                        memo.insert(key, e.clone());
                        Expr::Macro(e)
                    }
                }
            }
            Expr::And(items) | Expr::Or(items) => {
                let is_and = matches!(self, Expr::And(_));
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    match item.specialize(t, memo) {
                        // `true` in an and / `false` in an or changes nothing.
                        Expr::Const(b) if b == is_and => {}
                        Expr::Const(b) => return Expr::Const(b),
                        Expr::And(inner) if is_and => out.extend(inner.into_vec()),
                        Expr::Or(inner) if !is_and => out.extend(inner.into_vec()),
                        e => out.push(e),
                    }
                }
                match out.len() {
                    0 => Expr::Const(is_and),
                    1 => out.pop().expect("one"),
                    _ if is_and => Expr::And(out.into()),
                    _ => Expr::Or(out.into()),
                }
            }
        }
    }

    /// Nodes after macro expansion (saturating), to refuse conditions too large to evaluate.
    pub fn expanded_size(&self) -> usize {
        match self {
            Expr::Const(_) | Expr::Types(_) | Expr::Check(_) => 1,
            Expr::And(items) | Expr::Or(items) => {
                items.iter().fold(1usize, |acc, e| acc.saturating_add(e.expanded_size()))
            }
            Expr::Not(e) => e.expanded_size().saturating_add(1),
            Expr::Macro(e) => e.expanded_size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_semantics() {
        let g = Glob::new("/home/*/.ssh/*");
        assert!(g.matches("/home/alice/.ssh/id_rsa"));
        assert!(g.matches("/home/a/b/.ssh/x"), "`*` crosses `/` like Falco's glob");
        assert!(!g.matches("/root/.ssh/id_rsa"));
        assert!(Glob::new("*.sock").matches("/run/docker.sock"));
        assert!(Glob::new("/dev/sd[a-z]").matches("/dev/sdb"));
        assert!(!Glob::new("/dev/sd[!a-c]").matches("/dev/sdb"));
        assert!(Glob::new("/dev/sd[!a-c]").matches("/dev/sdd"));
        assert!(Glob::new("a?c").matches("aéc"));
        assert!(Glob::new("[]]").matches("]"));
        assert!(Glob::new("[").matches("["));
        assert!(Glob::new("").matches(""));
        assert!(!Glob::new("").matches("x"));
        assert!(Glob::new("**a**b**").matches("xxaxxbxx"));
        // A pathological pattern stays fast (one backtrack point: no exponential blow-up).
        let s = "a".repeat(10_000);
        let pattern = "a*".repeat(50) + "b";
        assert!(!Glob::new(&pattern).matches(&s));
    }

    #[test]
    fn pmatch_semantics() {
        let p = PathSet::new(&["/tmp/hello".into(), "/var/*/x".into()]);
        assert!(p.matches("/tmp/hello"));
        assert!(p.matches("/tmp/hello/world"));
        assert!(!p.matches("/tmp/hello_world"));
        assert!(!p.matches("/tmp"));
        assert!(p.matches("/var/run/x/y"));
        assert!(!p.matches("/var/run/y"));
    }

    #[test]
    fn icontains_is_ascii_case_insensitive() {
        assert!(icontains("/usr/bin/BASH", "bash"));
        assert!(!icontains("/usr/bin/zsh", "bash"));
        assert!(icontains("x", ""));
    }

    #[test]
    fn open_flag_access_modes() {
        let spec = |s: &str| super::super::fields::parse_flags(s, false).unwrap();
        let (rd, wr, rw) = (0u64, 1u64, 2u64);
        let creat = libc::O_CREAT as u64;
        let k = FlagKind::Open;
        assert_eq!(flags_contain(&spec("O_WRONLY"), wr | creat, k), Some(true));
        assert_eq!(flags_contain(&spec("O_WRONLY"), rw, k), Some(true), "O_RDWR writes too");
        assert_eq!(flags_contain(&spec("O_WRONLY"), rd, k), Some(false));
        assert_eq!(flags_contain(&spec("O_RDONLY"), rd, k), Some(true));
        assert_eq!(flags_contain(&spec("O_RDONLY"), wr, k), Some(false));
        assert_eq!(flags_contain(&spec("O_RDWR"), wr, k), Some(false));
        assert_eq!(flags_contain(&spec("O_CREAT"), wr | creat, k), Some(true));
        assert_eq!(flags_contain(&spec("O_CREAT"), wr, k), Some(false));
        assert_eq!(flags_eq(&spec("O_RDONLY"), rd, k), Some(true));
        assert_eq!(flags_eq(&spec("O_RDONLY"), rd | creat, k), Some(false));
        assert_eq!(flags_eq(&spec("O_WRONLY|O_CREAT"), wr | creat, k), Some(true));
        assert_eq!(flags_contain(&spec("MS_BIND"), 4096, k), None, "mount flags on an open event");
        let mode = super::super::fields::parse_flags("S_IFCHR", true).unwrap();
        assert_eq!(flags_contain(&mode, 0o020666, FlagKind::Mode), Some(true));
        assert_eq!(flags_contain(&mode, 0o060666, FlagKind::Mode), Some(false), "S_IFBLK shares S_IFCHR's bit");
    }
}
