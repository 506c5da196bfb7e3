//! Definitions → compiled rules: macros resolved (once each, shared), lists expanded, fields
//! resolved to ids, operators checked against field types, values parsed into the form the
//! evaluator wants, exceptions turned into `and not (…)`.

use std::{collections::HashMap, sync::Arc};

use super::{
    Rule, builtin_name,
    condition::{self, Ast, Op, Operand},
    eval::{Check, Expr, Glob, NumOp, PathSet, StrSet, Test},
    event::TypeSet,
    fields::{self, FieldError, FieldId, FieldType, Resolved},
    load::{ExceptionDef, Raw, RuleDef, Span, Store, comp_of, split_field},
    output,
};

/// Conditions larger than this after macro expansion are refused: evaluating them would
/// cost the agent more than any rule is worth.
pub const MAX_EXPANDED_SIZE: usize = 100_000;
/// Macro references nest at most this deep (deeper is almost surely a generated file).
pub const MAX_MACRO_DEPTH: usize = 64;

enum Fail {
    New {
        span: Span,
        message: String,
        unknown_field: bool,
    },
    /// Already reported (inside a macro).
    Reported,
}

fn fail(span: Span, message: impl Into<String>) -> Fail {
    Fail::New { span, message: message.into(), unknown_field: false }
}

#[derive(Clone)]
enum MacroState {
    Pending,
    InProgress,
    Done(Arc<Expr>),
    Failed,
}

/// A literal with where it was written.
#[derive(Clone)]
struct Lit {
    text: String,
    quoted: bool,
    span: Span,
}

#[derive(Clone)]
enum Rhs {
    None,
    One(Lit),
    List(Vec<Lit>),
    Field(String, Option<String>, Span),
}

pub(crate) struct Compiler<'s> {
    store: &'s mut Store,
    macro_asts: Vec<Option<Ast>>,
    macro_state: Vec<MacroState>,
    macro_used: Vec<bool>,
    list_used: Vec<bool>,
    list_cache: HashMap<usize, Arc<Vec<String>>>,
}

impl<'s> Compiler<'s> {
    pub fn new(store: &'s mut Store) -> Compiler<'s> {
        let n_macros = store.macros.items.len();
        let n_lists = store.lists.items.len();
        let mut c = Compiler {
            store,
            macro_asts: Vec::with_capacity(n_macros),
            macro_state: vec![MacroState::Pending; n_macros],
            macro_used: vec![false; n_macros],
            list_used: vec![false; n_lists],
            list_cache: HashMap::new(),
        };
        // Every macro's syntax is checked, used or not.
        for i in 0..n_macros {
            let text = c.store.macros.items[i].cond;
            let ast = match condition::parse(c.store.text(text)) {
                Ok(ast) => Some(ast),
                Err(e) => {
                    let name = c.store.macros.items[i].name.clone();
                    c.store.error(Span::Text { text, off: e.off }, format!("macro `{name}`: {}", e.message));
                    c.macro_state[i] = MacroState::Failed;
                    None
                }
            };
            c.macro_asts.push(ast);
        }
        c
    }

    /// Compile every rule; rules with errors are reported and left out.
    pub fn compile_all(mut self) -> Vec<Rule> {
        let defs: Vec<RuleDef> = self.store.rules.items.clone();
        let mut out = Vec::with_capacity(defs.len());
        for def in &defs {
            if let Some((source, span)) = &def.source
                && source != "syscall"
            {
                self.store
                    .warn(*span, format!("rule `{}`: source `{source}` is not evaluated by dcea; skipped", def.name));
                continue;
            }
            match self.rule(def) {
                Ok(rule) => out.push(rule),
                Err(Fail::Reported) => {}
                Err(Fail::New { span, message, unknown_field }) => {
                    let msg = format!("rule `{}`: {message}", def.name);
                    if unknown_field && def.skip_if_unknown_filter {
                        self.store.warn(span, format!("{msg}; skipped (skip-if-unknown-filter)"));
                    } else {
                        self.store.error(span, msg);
                    }
                }
            }
        }
        for (i, used) in self.macro_used.clone().into_iter().enumerate() {
            let m = &self.store.macros.items[i];
            let (span, name) = (m.span, m.name.clone());
            if !used && !self.is_builtin(span) {
                self.store.warn(span, format!("macro `{name}` is never used"));
            }
        }
        for (i, used) in self.list_used.clone().into_iter().enumerate() {
            let l = &self.store.lists.items[i];
            let (span, name) = (l.span, l.name.clone());
            if !used && !self.is_builtin(span) {
                self.store.warn(span, format!("list `{name}` is never used"));
            }
        }
        out
    }

    fn is_builtin(&self, span: Span) -> bool {
        self.store.resolve(span).0.starts_with(&builtin_name(""))
    }

    fn rule(&mut self, def: &RuleDef) -> Result<Rule, Fail> {
        let text = def.cond;
        let ast =
            condition::parse(self.store.text(text)).map_err(|e| fail(Span::Text { text, off: e.off }, e.message))?;
        let cond = self.ast(&ast, text, 0)?;
        let mut excepts = Vec::new();
        // Exceptions on container fields alone name whole containers: the kernel's guard
        // must spare those containers too (see Rule::exempts_container).
        let mut container_excepts = Vec::new();
        for x in &def.exceptions {
            if let Some(e) = self.exception(x)? {
                if names_container_only(x) {
                    container_excepts.push(e.clone());
                }
                excepts.push(e);
            }
        }
        let container_exempt = match container_excepts.len() {
            0 => None,
            1 => container_excepts.pop(),
            _ => Some(Expr::Or(container_excepts.into_boxed_slice())),
        };
        let expr = if excepts.is_empty() {
            cond
        } else {
            let not = Expr::Not(Box::new(if excepts.len() == 1 {
                excepts.pop().expect("one")
            } else {
                Expr::Or(excepts.into_boxed_slice())
            }));
            Expr::And(vec![cond, not].into_boxed_slice())
        };
        let size = expr.expanded_size();
        if size > MAX_EXPANDED_SIZE {
            return Err(fail(
                Span::Text { text, off: 0 },
                format!("condition expands to {size} checks after macros (limit {MAX_EXPANDED_SIZE})"),
            ));
        }
        let (types, _) = expr.types();
        if def.enabled && types.is_empty() {
            self.store.warn(
                def.span,
                format!("rule `{}` can never match: its condition needs event types dcea does not deliver", def.name),
            );
        } else if def.enabled && types.is_all() && def.warn_evttypes {
            self.store.warn(
                def.span,
                format!(
                    "rule `{}` names no evt.type, so it is evaluated for every event (add evt.type for speed)",
                    def.name
                ),
            );
        }
        let out_text = def.output;
        let (template, problems) = output::Template::parse(self.store.text(out_text).trim_end());
        for (off, message) in problems {
            self.store
                .warn(Span::Text { text: out_text, off: off as u32 }, format!("rule `{}` output: {message}", def.name));
        }
        let (file, pos) = self.store.resolve(def.span);
        Ok(Rule {
            name: def.name.clone(),
            desc: def.desc.trim().to_string(),
            priority: def.priority,
            tags: def.tags.clone(),
            enabled: def.enabled,
            action: def.action,
            guard: def.guard,
            file,
            line: pos.map(|p| p.line).unwrap_or(0),
            types,
            expr,
            container_exempt,
            output: template,
        })
    }

    fn ast(&mut self, ast: &Ast, text: u32, depth: usize) -> Result<Expr, Fail> {
        let span = |off: u32| Span::Text { text, off };
        Ok(match ast {
            Ast::And(items) => {
                Expr::And(items.iter().map(|a| self.ast(a, text, depth)).collect::<Result<Vec<_>, _>>()?.into())
            }
            Ast::Or(items) => {
                Expr::Or(items.iter().map(|a| self.ast(a, text, depth)).collect::<Result<Vec<_>, _>>()?.into())
            }
            Ast::Not(inner) => Expr::Not(Box::new(self.ast(inner, text, depth)?)),
            Ast::Macro { name, off } => self.macro_ref(name, span(*off), depth)?,
            Ast::Cmp { field, op, op_off, value } => {
                let rhs = match value {
                    Operand::None => Rhs::None,
                    Operand::Single(l) => Rhs::One(Lit { text: l.text.clone(), quoted: l.quoted, span: span(l.off) }),
                    Operand::List(items, _) => Rhs::List(
                        items
                            .iter()
                            .map(|l| Lit { text: l.text.clone(), quoted: l.quoted, span: span(l.off) })
                            .collect(),
                    ),
                    Operand::Field(f) => Rhs::Field(f.name.clone(), f.arg.clone(), span(f.off)),
                };
                self.check(&field.name, field.arg.as_deref(), span(field.off), *op, span(*op_off), rhs)?
            }
        })
    }

    fn macro_ref(&mut self, name: &str, span: Span, depth: usize) -> Result<Expr, Fail> {
        let Some(&idx) = self.store.macros.by_name.get(name) else {
            if fields::resolve(name, None).is_ok() {
                return Err(fail(
                    span,
                    format!("field `{name}` needs an operator (e.g. `{name} = value` or `{name} exists`)"),
                ));
            }
            if self.store.lists.by_name.contains_key(name) {
                return Err(fail(
                    span,
                    format!("`{name}` is a list; use it as a value list, e.g. `proc.name in ({name})`"),
                ));
            }
            let hint = self
                .store
                .macros
                .items
                .iter()
                .map(|m| (fields::edit_distance(name, &m.name), &m.name))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, m)| format!(" (did you mean `{m}`?)"))
                .unwrap_or_default();
            let what = if name.contains('.') { "unknown field or undefined macro" } else { "undefined macro" };
            return Err(Fail::New {
                span,
                message: format!("{what} `{name}`{hint}"),
                unknown_field: name.contains('.'),
            });
        };
        self.macro_used[idx] = true;
        if depth >= MAX_MACRO_DEPTH {
            return Err(fail(span, format!("macros nested deeper than {MAX_MACRO_DEPTH} levels at `{name}`")));
        }
        match self.macro_state[idx].clone() {
            MacroState::Done(e) => Ok(Expr::Macro(e)),
            MacroState::Failed => Err(Fail::Reported),
            MacroState::InProgress => {
                Err(fail(span, format!("macro cycle: `{name}` uses itself (directly or through other macros)")))
            }
            MacroState::Pending => {
                self.macro_state[idx] = MacroState::InProgress;
                let ast = self.macro_asts[idx].clone().expect("pending macros parsed");
                let text = self.store.macros.items[idx].cond;
                match self.ast(&ast, text, depth + 1) {
                    Ok(e) => {
                        let e = Arc::new(e);
                        self.macro_state[idx] = MacroState::Done(e.clone());
                        Ok(Expr::Macro(e))
                    }
                    Err(Fail::Reported) => {
                        self.macro_state[idx] = MacroState::Failed;
                        Err(Fail::Reported)
                    }
                    Err(Fail::New { span: inner, message, .. }) => {
                        self.macro_state[idx] = MacroState::Failed;
                        self.store.error(inner, format!("macro `{name}`: {message}"));
                        Err(Fail::Reported)
                    }
                }
            }
        }
    }

    /// A list's items with nested list names expanded (cycles refused).
    fn list_items(&mut self, idx: usize, stack: &mut Vec<usize>, span: Span) -> Result<Arc<Vec<String>>, Fail> {
        if let Some(v) = self.list_cache.get(&idx) {
            return Ok(v.clone());
        }
        if stack.contains(&idx) {
            let name = &self.store.lists.items[idx].name;
            return Err(fail(span, format!("list cycle: `{name}` contains itself (directly or through other lists)")));
        }
        stack.push(idx);
        let items = self.store.lists.items[idx].items.clone();
        let mut out = Vec::with_capacity(items.len());
        for (item, item_span) in items {
            match self.store.lists.by_name.get(&item).copied() {
                Some(inner) => {
                    self.list_used[inner] = true;
                    out.extend(self.list_items(inner, stack, item_span)?.iter().cloned());
                }
                None => out.push(unquote(&item).to_string()),
            }
        }
        stack.pop();
        let out = Arc::new(out);
        self.list_cache.insert(idx, out.clone());
        Ok(out)
    }

    /// Values of a list operand: unquoted names of lists expand to their items.
    fn values(&mut self, items: Vec<Lit>) -> Result<Vec<(String, Span)>, Fail> {
        let mut out = Vec::with_capacity(items.len());
        for l in items {
            if !l.quoted
                && let Some(&idx) = self.store.lists.by_name.get(&l.text)
            {
                self.list_used[idx] = true;
                let expanded = self.list_items(idx, &mut Vec::new(), l.span)?;
                out.extend(expanded.iter().map(|s| (s.clone(), l.span)));
                continue;
            }
            if !l.quoted
                && l.text.contains('_')
                && let Some(list) = self
                    .store
                    .lists
                    .items
                    .iter()
                    .find(|d| fields::edit_distance(&l.text, &d.name) <= 2)
                    .map(|d| d.name.clone())
            {
                self.store.warn(
                    l.span,
                    format!(
                        "`{}` is not a list, so it is compared as a string (did you mean the list `{list}`?)",
                        l.text
                    ),
                );
            }
            out.push((l.text, l.span));
        }
        Ok(out)
    }

    fn check(
        &mut self,
        name: &str,
        arg: Option<&str>,
        fspan: Span,
        op: Op,
        ospan: Span,
        rhs: Rhs,
    ) -> Result<Expr, Fail> {
        let Resolved { field, ty, any_generation } = fields::resolve(name, arg).map_err(|e| Fail::New {
            span: fspan,
            message: e.to_string(),
            unknown_field: matches!(e, FieldError::Unknown(_)),
        })?;
        if matches!(op, Op::Intersects | Op::BContains | Op::BStartsWith | Op::IGlob | Op::Regex) {
            return Err(fail(ospan, format!("operator `{}` is not supported by dcea", op.name())));
        }
        let bad_op = |ty: FieldType| {
            fail(ospan, format!("operator `{}` does not apply to `{name}` (a {} field)", op.name(), ty.name()))
        };
        match field.id {
            FieldId::EvtTime => {
                return Err(fail(fspan, "`evt.time` is for outputs; compare `evt.rawtime` (ns since the epoch)"));
            }
            FieldId::EvtDir => {
                // dcea delivers syscall exits only: `evt.dir = <` always holds.
                let v = match &rhs {
                    Rhs::One(l) => l.text.as_str(),
                    _ => return Err(bad_op(FieldType::Str)),
                };
                let is_exit = match v {
                    "<" => true,
                    ">" => false,
                    _ => return Err(fail(fspan, "`evt.dir` is `<` (exit) or `>` (entry)")),
                };
                return match op {
                    Op::Eq => Ok(Expr::Const(is_exit)),
                    Op::Ne => Ok(Expr::Const(!is_exit)),
                    _ => Err(bad_op(FieldType::Str)),
                };
            }
            _ => {}
        }
        if op == Op::Exists {
            return Ok(Expr::Check(Check { field, any_generation, negate: false, test: Test::Exists }));
        }
        if let Rhs::Field(other, other_arg, span) = rhs {
            return self.field_cmp(field, ty, any_generation, op, ospan, &other, other_arg.as_deref(), span, name);
        }
        let negate = op == Op::Ne;
        let test = match ty {
            FieldType::EvtType => {
                let names: Vec<(String, Span)> = match (op, rhs) {
                    (Op::Eq | Op::Ne, Rhs::One(l)) => vec![(l.text, l.span)],
                    (Op::In, Rhs::List(items)) => self.values(items)?,
                    _ => return Err(bad_op(ty)),
                };
                let set = names.iter().fold(TypeSet::EMPTY, |acc, (n, _)| acc.union(TypeSet::of_name(n)));
                let e = Expr::Types(set);
                return Ok(if negate { Expr::Not(Box::new(e)) } else { e });
            }
            FieldType::Str => self.str_test(op, rhs, ty, name, ospan)?,
            FieldType::Num | FieldType::Enum(_) => self.num_test(op, rhs, ty, name, ospan)?,
            FieldType::Bool => match (op, rhs) {
                (Op::Eq | Op::Ne, Rhs::One(l)) => match l.text.to_ascii_lowercase().as_str() {
                    "true" => Test::Bool(true),
                    "false" => Test::Bool(false),
                    _ => return Err(fail(l.span, format!("`{name}` is true or false, not `{}`", l.text))),
                },
                _ => return Err(bad_op(ty)),
            },
            FieldType::Flags | FieldType::Mode => {
                let Rhs::One(l) = rhs else { return Err(bad_op(ty)) };
                let spec = fields::parse_flags(&l.text, ty == FieldType::Mode).map_err(|m| fail(l.span, m))?;
                match op {
                    Op::Contains => Test::FlagsContain(spec),
                    Op::Eq | Op::Ne => Test::FlagsEq(spec),
                    _ => return Err(bad_op(ty)),
                }
            }
            FieldType::StrOrNum => {
                let numeric = match &rhs {
                    Rhs::One(l) => fields::parse_number(&l.text).is_some(),
                    Rhs::List(items) => {
                        !items.is_empty() && items.iter().all(|l| fields::parse_number(&l.text).is_some())
                    }
                    _ => false,
                };
                let ordering = matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge);
                let num = if numeric && (ordering || matches!(op, Op::Eq | Op::Ne | Op::In)) {
                    Some(Box::new(self.num_test(op, rhs.clone(), FieldType::Num, name, ospan)?))
                } else if ordering {
                    return Err(fail(ospan, format!("`{}` on `{name}` needs a number", op.name())));
                } else {
                    None
                };
                let text = if ordering {
                    None
                } else {
                    Some(Box::new(self.str_test(op, rhs, FieldType::Str, name, ospan)?))
                };
                Test::Either(text, num)
            }
        };
        Ok(Expr::Check(Check { field, any_generation, negate, test }))
    }

    fn str_test(&mut self, op: Op, rhs: Rhs, ty: FieldType, name: &str, ospan: Span) -> Result<Test, Fail> {
        let one = |rhs: Rhs| match rhs {
            Rhs::One(l) => Ok(l.text),
            _ => Err(fail(ospan, format!("`{}` takes one value", op.name()))),
        };
        Ok(match op {
            Op::Eq | Op::Ne => Test::StrEq(one(rhs)?.into()),
            Op::Contains => Test::Contains(one(rhs)?.into()),
            Op::IContains => Test::IContains(one(rhs)?.to_ascii_lowercase().into()),
            Op::StartsWith => Test::StartsWith(one(rhs)?.into()),
            Op::EndsWith => Test::EndsWith(one(rhs)?.into()),
            Op::Glob => Test::Glob(Glob::new(&one(rhs)?)),
            Op::In | Op::PMatch => {
                let Rhs::List(items) = rhs else { return Err(fail(ospan, "expected a list")) };
                let values: Vec<String> = self.values(items)?.into_iter().map(|(s, _)| s).collect();
                if op == Op::In { Test::StrIn(StrSet::new(values)) } else { Test::PMatch(PathSet::new(&values)) }
            }
            _ => {
                return Err(fail(
                    ospan,
                    format!("operator `{}` does not apply to `{name}` (a {} field)", op.name(), ty.name()),
                ));
            }
        })
    }

    fn num_test(&mut self, op: Op, rhs: Rhs, ty: FieldType, name: &str, ospan: Span) -> Result<Test, Fail> {
        let parse = |text: &str, span: Span| -> Result<i64, Fail> {
            if let FieldType::Enum(table) = ty
                && let Some((_, v)) = table.iter().find(|(n, _)| *n == text)
            {
                return Ok(*v);
            }
            fields::parse_number(text).ok_or_else(|| {
                let hint = match ty {
                    FieldType::Enum(table) => format!(
                        " or one of {}, …",
                        table.iter().take(4).map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ),
                    _ => String::new(),
                };
                fail(span, format!("`{text}` is not a number (`{name}` is a number field; use a number{hint})"))
            })
        };
        let numop = match op {
            Op::Eq | Op::Ne => NumOp::Eq,
            Op::Lt => NumOp::Lt,
            Op::Le => NumOp::Le,
            Op::Gt => NumOp::Gt,
            Op::Ge => NumOp::Ge,
            Op::In => {
                let Rhs::List(items) = rhs else { return Err(fail(ospan, "expected a list")) };
                let mut nums = Vec::new();
                for (v, span) in self.values(items)? {
                    nums.push(parse(&v, span)?);
                }
                return Ok(Test::NumIn(nums.into()));
            }
            _ => {
                return Err(fail(
                    ospan,
                    format!("operator `{}` does not apply to `{name}` (a {} field)", op.name(), ty.name()),
                ));
            }
        };
        let Rhs::One(l) = rhs else { return Err(fail(ospan, format!("`{}` takes one value", op.name()))) };
        Ok(Test::Num(numop, parse(&l.text, l.span)?))
    }

    #[allow(clippy::too_many_arguments)]
    fn field_cmp(
        &mut self,
        field: fields::FieldRef,
        ty: FieldType,
        any_generation: bool,
        op: Op,
        ospan: Span,
        other: &str,
        other_arg: Option<&str>,
        span: Span,
        name: &str,
    ) -> Result<Expr, Fail> {
        let o = fields::resolve(other, other_arg).map_err(|e| Fail::New {
            span,
            message: e.to_string(),
            unknown_field: matches!(e, FieldError::Unknown(_)),
        })?;
        if o.any_generation {
            return Err(fail(span, format!("`val({other})` needs a generation, e.g. `val({other}[1])`")));
        }
        let class = |t: FieldType| match t {
            FieldType::Num | FieldType::Enum(_) => 1,
            FieldType::Str | FieldType::StrOrNum => 0,
            FieldType::Bool => 2,
            FieldType::Flags | FieldType::Mode => 3,
            FieldType::EvtType => 4,
        };
        if class(ty) != class(o.ty) || class(ty) == 4 {
            return Err(fail(
                span,
                format!("`{name}` ({}) and `{other}` ({}) cannot be compared", ty.name(), o.ty.name()),
            ));
        }
        let numop = match op {
            Op::Eq | Op::Ne => NumOp::Eq,
            Op::Lt if class(ty) == 1 => NumOp::Lt,
            Op::Le if class(ty) == 1 => NumOp::Le,
            Op::Gt if class(ty) == 1 => NumOp::Gt,
            Op::Ge if class(ty) == 1 => NumOp::Ge,
            _ => return Err(fail(ospan, format!("operator `{}` does not take `val(…)` here", op.name()))),
        };
        Ok(Expr::Check(Check { field, any_generation, negate: op == Op::Ne, test: Test::Field(numop, o.field) }))
    }

    /// One exception → the condition it excludes, or None when it has no values yet.
    fn exception(&mut self, x: &ExceptionDef) -> Result<Option<Expr>, Fail> {
        if x.values.is_empty() {
            return Ok(None);
        }
        let Some(fields) = &x.fields else {
            return Err(fail(x.span, format!("exception `{}` has values but no `fields`", x.name)));
        };
        let scalar = |r: &Raw, what: &str| -> Result<(String, Span), Fail> {
            match r {
                Raw::Scalar(s, span) => Ok((s.clone(), *span)),
                Raw::Seq(_, span) => {
                    Err(fail(*span, format!("exception `{}`: {what} must be a single value here", x.name)))
                }
            }
        };
        let comp = |c: &str, span: Span| -> Result<Op, Fail> {
            comp_of(c).ok_or_else(|| fail(span, format!("exception `{}`: unknown comparison `{c}`", x.name)))
        };
        let lits = |r: &Raw| -> Vec<Lit> {
            match r {
                Raw::Scalar(s, span) => vec![Lit { text: s.clone(), quoted: false, span: *span }],
                Raw::Seq(items, _) => items
                    .iter()
                    .flat_map(|i| match i {
                        Raw::Scalar(s, span) => vec![Lit { text: s.clone(), quoted: false, span: *span }],
                        Raw::Seq(_, span) => vec![Lit { text: String::new(), quoted: true, span: *span }],
                    })
                    .collect(),
            }
        };
        let mut alternatives = Vec::new();
        match fields {
            Raw::Scalar(f, fspan) => {
                // Single field: values is a flat list, comps a single operator (default `in`).
                let op = match &x.comps {
                    None => Op::In,
                    Some(c) => {
                        let (c, span) = scalar(c, "comps")?;
                        comp(&c, span)?
                    }
                };
                let ospan = x.comps.as_ref().map(Raw::span).unwrap_or(x.span);
                let (fname, farg) = split_field(f);
                let all: Vec<Lit> = x.values.iter().flat_map(lits).collect();
                if op.takes_list() {
                    alternatives.push(self.check(fname, farg, *fspan, op, ospan, Rhs::List(all))?);
                } else {
                    for l in all {
                        alternatives.push(self.check(fname, farg, *fspan, op, ospan, Rhs::One(l))?);
                    }
                }
            }
            Raw::Seq(fs, _) => {
                let mut fields = Vec::with_capacity(fs.len());
                for f in fs {
                    fields.push(scalar(f, "each of `fields`")?);
                }
                let comps: Vec<(Op, Span)> = match &x.comps {
                    None => fields.iter().map(|(_, s)| (Op::Eq, *s)).collect(),
                    Some(Raw::Seq(cs, span)) => {
                        if cs.len() != fields.len() {
                            return Err(fail(
                                *span,
                                format!("exception `{}`: {} comps for {} fields", x.name, cs.len(), fields.len()),
                            ));
                        }
                        let mut out = Vec::new();
                        for c in cs {
                            let (c, span) = scalar(c, "each of `comps`")?;
                            out.push((comp(&c, span)?, span));
                        }
                        out
                    }
                    Some(Raw::Scalar(_, span)) => {
                        return Err(fail(
                            *span,
                            format!("exception `{}`: `fields` is a list, so `comps` must be too", x.name),
                        ));
                    }
                };
                for tuple in &x.values {
                    let Raw::Seq(vals, vspan) = tuple else {
                        return Err(fail(
                            tuple.span(),
                            format!("exception `{}`: each value is a list matching `fields`", x.name),
                        ));
                    };
                    if vals.len() != fields.len() {
                        return Err(fail(
                            *vspan,
                            format!(
                                "exception `{}`: value has {} items for {} fields",
                                x.name,
                                vals.len(),
                                fields.len()
                            ),
                        ));
                    }
                    let mut conj = Vec::with_capacity(fields.len());
                    for (((f, fspan), (op, ospan)), v) in fields.iter().zip(&comps).zip(vals) {
                        let (fname, farg) = split_field(f);
                        let rhs = if op.takes_list() {
                            Rhs::List(lits(v))
                        } else {
                            let (s, span) = scalar(v, "a value compared with a single-value operator")?;
                            Rhs::One(Lit { text: s, quoted: false, span })
                        };
                        conj.push(self.check(fname, farg, *fspan, *op, *ospan, rhs)?);
                    }
                    alternatives.push(Expr::And(conj.into()));
                }
            }
        }
        Ok(Some(if alternatives.len() == 1 { alternatives.pop().expect("one") } else { Expr::Or(alternatives.into()) }))
    }
}

/// A list item written with its own quotes (`'"/bin/sh -c"'`) is the string inside them.
fn unquote(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] { &s[1..s.len() - 1] } else { s }
}

/// Whether every field of an exception is a `container.*` field (it names containers, not
/// events).
fn names_container_only(x: &ExceptionDef) -> bool {
    let container = |r: &Raw| matches!(r, Raw::Scalar(f, _) if f.starts_with("container."));
    match &x.fields {
        Some(Raw::Seq(fs, _)) => !fs.is_empty() && fs.iter().all(container),
        Some(f) => container(f),
        None => false,
    }
}
