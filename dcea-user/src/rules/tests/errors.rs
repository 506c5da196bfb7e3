//! Malformed rules: each error names file:line:column of the culprit.

use super::{errors, load};

/// The single error of loading `text` as a.yaml.
#[track_caller]
fn error(text: &str) -> String {
    let e = errors(&[text]);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().expect("one")
}

fn rule(cond: &str) -> String {
    format!("- rule: r\n  desc: d\n  condition: {cond}\n  output: o\n  priority: INFO\n")
}

#[test]
fn bad_yaml() {
    let e = error("- rule: r\n  desc: [unclosed\n  priority: INFO\n");
    assert!(e.starts_with("a.yaml:3:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    let e = error("- rule: r\n\tdesc: tab\n");
    assert!(e.starts_with("a.yaml:1:9: invalid YAML") && e.contains("tab"), "{e}");
    let e = error("rule: not-a-list\n");
    assert_eq!(e, "a.yaml:1:1: a rules file is a list of `- rule:`, `- macro:` and `- list:` items, found a mapping");
    let e = error("- just a string\n");
    assert!(e.starts_with("a.yaml:1:3: expected a `- rule:`"), "{e}");
}

#[test]
fn unknown_field_in_condition() {
    assert_eq!(
        error(&rule("evt.type = execve and proc.nmae = bash")),
        "a.yaml:3:36: rule `r`: unknown field `proc.nmae` (did you mean `proc.name`?); `dcea rules fields` lists the fields dcea provides"
    );
    // In a folded multi-line condition the column is still exact.
    let text = "- rule: r\n  desc: d\n  condition: >\n    evt.type = execve\n      and fd.nme = x\n  output: o\n  priority: INFO\n";
    let e = error(text);
    assert!(e.starts_with("a.yaml:5:11: rule `r`: unknown field `fd.nme`"), "{e}");
}

#[test]
fn unknown_key() {
    let e = error("- rule: r\n  desc: d\n  conditon: evt.type = execve\n  output: o\n  priority: INFO\n");
    assert!(e.starts_with("a.yaml:3:3: unknown key `conditon` in a rule (did you mean `condition`?)"), "{e}");
    let e = error("- list: l\n  itemz: [a]\n");
    assert!(e.starts_with("a.yaml:2:3: unknown key `itemz` in a list"), "{e}");
    let e = error("- rule: r\n  desc: d\n  desc: e\n");
    assert_eq!(e, "a.yaml:3:3: duplicate key `desc`");
}

#[test]
fn unbalanced_parentheses() {
    assert_eq!(
        error(&rule("(evt.type = execve and (proc.name = a)")),
        "a.yaml:3:14: rule `r`: unbalanced parentheses: this `(` is never closed"
    );
    assert_eq!(
        error(&rule("evt.type = execve and proc.name = a)")),
        "a.yaml:3:49: rule `r`: unbalanced parentheses: `)` without a matching `(`"
    );
    assert_eq!(
        error(&rule("evt.type in (execve, open")),
        "a.yaml:3:26: rule `r`: unbalanced parentheses: this list's `(` is never closed"
    );
}

#[test]
fn undefined_macro() {
    assert_eq!(
        error(
            &(rule("spawned_proces and proc.name = a") + "- macro: spawned_process\n  condition: evt.type = execve\n")
        ),
        "a.yaml:3:14: rule `r`: undefined macro `spawned_proces` (did you mean `spawned_process`?)"
    );
    let e = error(&rule("evt.type = execve and proc.name"));
    assert!(e.starts_with("a.yaml:3:36: rule `r`: field `proc.name` needs an operator"), "{e}");
}

#[test]
fn macro_cycle() {
    let text = "\
- macro: a
  condition: evt.type = execve and b
- macro: b
  condition: proc.name = x or a
";
    let e = error(&(text.to_string() + &rule("a")));
    assert_eq!(e, "a.yaml:4:31: macro `b`: macro cycle: `a` uses itself (directly or through other macros)");
    let e = error(&("- macro: self\n  condition: (self)\n".to_string() + &rule("self")));
    assert!(e.starts_with("a.yaml:2:15: macro `self`: macro cycle"), "{e}");
}

#[test]
fn undefined_and_cyclic_lists() {
    assert_eq!(
        error("- list: shell_binaries\n  items: [zsh]\n  append: true\n"),
        "a.yaml:1:9: list `shell_binaries` is appended to or overridden but was never defined before"
    );
    assert_eq!(
        error("- list: l\n  items: [zsh]\n  override:\n    items: append\n"),
        "a.yaml:1:9: list `l` is appended to or overridden but was never defined before"
    );
    let text = "- list: a\n  items: [x, b]\n- list: b\n  items: [a]\n";
    let e = error(&(text.to_string() + &rule("evt.type = execve and proc.name in (a)")));
    assert!(e.contains("list cycle"), "{e}");
    assert!(e.starts_with("a.yaml:"), "{e}");
    let e = error(&rule("evt.type = execve and (shells)"));
    assert!(e.contains("undefined macro `shells`"), "{e}");
    let e = error(&("- list: shells\n  items: [sh]\n".to_string() + &rule("evt.type = execve and shells")));
    assert!(e.contains("`shells` is a list; use it as a value list"), "{e}");
}

#[test]
fn wrong_operator_for_field_type() {
    assert_eq!(
        error(&rule("evt.type = execve and proc.pid contains 1")),
        "a.yaml:3:45: rule `r`: operator `contains` does not apply to `proc.pid` (a number field)"
    );
    assert_eq!(
        error(&rule("evt.type = execve and proc.name > 3")),
        "a.yaml:3:46: rule `r`: operator `>` does not apply to `proc.name` (a string field)"
    );
    let e = error(&rule("evt.type = execve and evt.is_open_write startswith t"));
    assert!(e.contains("operator `startswith` does not apply to `evt.is_open_write` (a bool field)"), "{e}");
    let e = error(&rule("evt.type startswith exec"));
    assert!(e.contains("does not apply to `evt.type`"), "{e}");
    let e = error(&rule("evt.type = execve and proc.pid = abc"));
    assert_eq!(e, "a.yaml:3:47: rule `r`: `abc` is not a number (`proc.pid` is a number field; use a number)");
    let e = error(&rule("evt.type = openat and evt.arg.flags contains O_WRONGLY"));
    assert!(e.starts_with("a.yaml:3:59: rule `r`: unknown flag `O_WRONGLY`"), "{e}");
    let e = error(&rule("evt.type = execve and proc.name regex '.*'"));
    assert!(e.contains("operator `regex` is not supported"), "{e}");
    let e = error(&rule("evt.type = execve and proc.name = val(proc.pid)"));
    assert!(e.contains("cannot be compared"), "{e}");
}

#[test]
fn bad_priority() {
    let e = error("- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: SEVERE\n");
    assert!(e.starts_with("a.yaml:5:13: invalid priority `SEVERE`: one of emergency, alert"), "{e}");
}

#[test]
fn structural_errors() {
    assert_eq!(
        error("- rule: r\n  desc: d\n  condition: evt.type = execve\n"),
        "a.yaml:1:3: rule `r` is missing output, priority"
    );
    let e = error("- rule: r\n  condition: and x\n  append: true\n");
    assert_eq!(e, "a.yaml:1:9: rule `r` has `append: true` but was never defined before");
    let e = error(&(rule("evt.type = execve") + "- rule: r\n  priority: ERROR\n  append: true\n"));
    assert!(e.starts_with("a.yaml:7:3: `append: true` appends only condition and exceptions"), "{e}");
    let e = error(&(rule("evt.type = execve") + "- rule: r\n  priority: ERROR\n  override:\n    priority: append\n"));
    assert!(e.starts_with("a.yaml:9:5: `priority` cannot be appended"), "{e}");
    let e = error(
        &(rule("evt.type = execve") + "- rule: r\n  priority: ERROR\n  desc: x\n  override:\n    priority: replace\n"),
    );
    assert_eq!(e, "a.yaml:8:3: `desc` is not listed in `override`");
    let e = error(&(rule("evt.type = execve") + "- rule: r\n  override:\n    desc: replace\n"));
    assert_eq!(e, "a.yaml:8:5: override names `desc` but the item does not define it");
    let e = error("- rule: r\n  enabled: maybe\n");
    assert_eq!(e, "a.yaml:2:12: `enabled` must be true or false");
    let e = error("- rule: r\n  macro: m\n");
    assert!(e.contains("not rule and macro"), "{e}");
    let e = error("- macro: m\n  condition: (a\n");
    assert_eq!(e, "a.yaml:2:14: macro `m`: unbalanced parentheses: this `(` is never closed");
}

#[test]
fn exception_shape_errors() {
    let base = "- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n  exceptions:\n";
    let e = error(&format!(
        "{base}    - name: x\n      fields: [proc.name, fd.name]\n      comps: [=]\n      values: [[a, b]]\n"
    ));
    assert_eq!(e, "a.yaml:9:14: rule `r`: exception `x`: 1 comps for 2 fields");
    let e = error(&format!("{base}    - name: x\n      fields: [proc.name, fd.name]\n      values: [[a]]\n"));
    assert_eq!(e, "a.yaml:9:16: rule `r`: exception `x`: value has 1 items for 2 fields");
    let e = error(&format!("{base}    - name: x\n      fields: [proc.nam]\n      values: [[a]]\n"));
    assert!(e.starts_with("a.yaml:8:16: rule `r`: unknown field `proc.nam`"), "{e}");
    let e = error(&format!(
        "{base}    - name: x\n      fields: [proc.pid]\n      comps: [contains]\n      values: [[1]]\n"
    ));
    assert!(e.starts_with("a.yaml:9:15: rule `r`: operator `contains` does not apply to `proc.pid`"), "{e}");
    let e =
        error(&format!("{base}    - name: x\n      fields: [proc.name]\n      comps: [like]\n      values: [[a]]\n"));
    assert!(e.contains("unknown comparison `like`"), "{e}");
}

#[test]
fn every_error_is_reported_across_files() {
    let e = errors(&[&rule("proc.nme = a"), "- rule: s\n  priority: LOUD\n", "- list: l\n  items: {a: b}\n"]);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].starts_with("b.yaml:2:13: invalid priority"), "{e:#?}");
    assert!(e[1].starts_with("c.yaml:2:10: `items` must be a list"), "{e:#?}");
    assert!(e[2].starts_with("a.yaml:3:14: rule `r`: unknown field `proc.nme`"), "{e:#?}");
    // Warnings travel with the error for the operator's context.
    let err = load(&["- foo: bar\n", &rule("proc.nme = a")]).unwrap_err();
    assert_eq!(err.warnings.len(), 1);
}
