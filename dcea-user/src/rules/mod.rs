//! Behaviour rules in Falco's language: YAML files of `rule`, `macro` and `list` items
//! (with `append`/`override`/`exceptions`), compiled once into per-event-type indexes and
//! evaluated over any [`EventView`] without allocating. Alerts come out in Falco's JSON shape
//! ([`crate::output::Alert`]).
//!
//! ```text
//! let rules = RuleSet::load(&LoadOptions::default())?;   // embedded defaults + /etc/dcea/rules.d
//! for rule in rules.matching(&event) {                    // zero allocations
//!     sink.write(&rule.alert(&event, &AlertMeta { time_ns, hostname }))?;
//! }
//! ```
//!
//! The language, the fields, the differences from Falco and the default ruleset are
//! described in docs/rules.md.

pub mod cmd;
mod compile;
pub mod condition;
mod eval;
pub mod event;
pub mod fields;
mod load;
mod output;
pub mod synthetic;
pub mod yaml;

#[cfg(test)]
mod tests;

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

pub use event::{EventView, EvtType, SimpleEvent, TypeSet, Value};
pub use fields::{FieldId, FieldRef, FlagKind};
pub use yaml::Pos;

use crate::output::{Alert, Priority, SOURCE, rfc3339_nanos};

/// Names of the default rules. They are stable: tests, dashboards and exceptions refer to them.
pub mod names {
    pub const SHELL_IN_CONTAINER: &str = "Shell spawned in a container";
    pub const CREDENTIAL_FILE_IN_CONTAINER: &str = "Credential file opened in a container";
    pub const SSH_KEYS_IN_CONTAINER: &str = "SSH keys accessed in a container";
    pub const FILE_BELOW_DEV: &str = "Non-device file created below /dev";
    pub const HOST_DEVICE_MOUNTED: &str = "Host block device mounted in a container";
    pub const PSEUDO_FS_MOUNTED: &str = "Kernel pseudo-filesystem mounted in a container";
    pub const HOST_PATH_BIND_MOUNTED: &str = "Host path bind-mounted in a container";
    pub const RELEASE_AGENT_WRITTEN: &str = "Cgroup release_agent written from a container";
    pub const CORE_PATTERN_WRITTEN: &str = "Kernel core_pattern written";
    pub const KERNEL_PARAMETER_WRITTEN: &str = "Kernel parameter written from a container";
    pub const RUNTIME_SOCKET_CONNECTED: &str = "Container runtime socket connected from a container";
    pub const KERNEL_MODULE_LOADED: &str = "Kernel module loaded from a container";
    pub const PTRACE_OUTSIDE_CONTAINER: &str = "Process outside the container traced";
    pub const BPF_FROM_CONTAINER: &str = "BPF syscall from a container";
    pub const NAMESPACE_CREATED: &str = "User or mount namespace created in a container";
    pub const DEVICE_NODE_CREATED: &str = "Device node created in a container";
    pub const CHROOT_HOST_FS: &str = "Chroot into a host filesystem from a container";
    pub const DRIFT_EXECUTED: &str = "Binary not in the container image executed";
    pub const HOST_FILE_WRITTEN: &str = "Host file written from a container";
    pub const BINFMT_REGISTERED: &str = "Binary format handler registered from a container";
    pub const BPF_TAKEOVER: &str = "Kernel BPF objects taken hold of from a container";
    pub const AGENT_SIGNALLED: &str = "dcea agent signalled from a container";
    pub const AGENT_TRACED: &str = "dcea agent traced from a container";
    pub const AGENT_FILES_WRITTEN: &str = "dcea agent files written from a container";
    pub const MODIFIED_IMAGE_FILE: &str = "Modified image file run in a container";
    pub const LIBRARY_NOT_IN_IMAGE: &str = "Shared library not in the container image loaded";
    pub const FILELESS_CODE: &str = "Fileless code run in a container";
    pub const MEMORY_WRITTEN_OUTSIDE: &str = "Memory of a process outside the container written";
    pub const MEMORY_WRITTEN_INSIDE: &str = "Process memory written inside a container";

    pub const ALL: [&str; 29] = [
        SHELL_IN_CONTAINER,
        CREDENTIAL_FILE_IN_CONTAINER,
        SSH_KEYS_IN_CONTAINER,
        FILE_BELOW_DEV,
        HOST_DEVICE_MOUNTED,
        PSEUDO_FS_MOUNTED,
        HOST_PATH_BIND_MOUNTED,
        RELEASE_AGENT_WRITTEN,
        CORE_PATTERN_WRITTEN,
        KERNEL_PARAMETER_WRITTEN,
        RUNTIME_SOCKET_CONNECTED,
        KERNEL_MODULE_LOADED,
        PTRACE_OUTSIDE_CONTAINER,
        BPF_FROM_CONTAINER,
        NAMESPACE_CREATED,
        DEVICE_NODE_CREATED,
        CHROOT_HOST_FS,
        BINFMT_REGISTERED,
        DRIFT_EXECUTED,
        HOST_FILE_WRITTEN,
        BPF_TAKEOVER,
        AGENT_SIGNALLED,
        AGENT_TRACED,
        AGENT_FILES_WRITTEN,
        MODIFIED_IMAGE_FILE,
        LIBRARY_NOT_IN_IMAGE,
        FILELESS_CODE,
        MEMORY_WRITTEN_OUTSIDE,
        MEMORY_WRITTEN_INSIDE,
    ];
}

/// Where operators put their own rules.
pub const DEFAULT_RULES_DIR: &str = "/etc/dcea/rules.d";

/// The embedded default ruleset (file name, text).
pub const BUILTIN_FILES: &[(&str, &str)] = &[("dcea_rules.yaml", include_str!("default/dcea_rules.yaml"))];

/// How embedded files are named in errors and listings.
pub fn builtin_name(file: &str) -> String {
    format!("<builtin>/{file}")
}

/// A rules file's name (as errors show it) and text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// An error or warning with the place it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Rules that could not be loaded: every error found (not just the first), and the warnings.
#[derive(Debug, Clone)]
pub struct RulesError {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid rules ({} error{})", self.errors.len(), if self.errors.len() == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesError {}

/// Which rules files to load, in order: the embedded defaults, then `*.yaml`/`*.yml` of
/// `rules_dir` in lexical order, then `files`. Later files override earlier ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    pub default_rules: bool,
    /// A missing directory is fine (no local rules); an unreadable one is an error.
    pub rules_dir: Option<PathBuf>,
    pub files: Vec<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { default_rules: true, rules_dir: Some(PathBuf::from(DEFAULT_RULES_DIR)), files: Vec::new() }
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub desc: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// What `--enforce` does when the rule fires (YAML `action:`).
    pub action: crate::enforce::Action,
    /// The kernel guard that takes the action at the hook (YAML `guard:`); without one the
    /// action runs from user space, after the fact.
    pub guard: Option<dcea_common::Guard>,
    /// The file (and line) that defined the rule.
    pub file: String,
    pub line: u32,
    /// Event types the rule can match (the index it sits in).
    pub types: TypeSet,
    pub(crate) expr: eval::Expr,
    /// The rule's exceptions on `container.*` fields alone: the containers they name are
    /// spared by the rule's kernel guard under --enforce.
    pub(crate) container_exempt: Option<eval::Expr>,
    pub(crate) output: output::Template,
}

/// What an alert needs besides the event.
#[derive(Debug, Clone, Copy)]
pub struct AlertMeta<'a> {
    /// Wall-clock time of the event, ns since the epoch.
    pub time_ns: u64,
    pub hostname: &'a str,
}

impl Rule {
    /// Evaluate the condition (disabled rules too: the index is what skips them).
    pub fn matches<E: EventView + ?Sized>(&self, ev: &E) -> bool {
        self.types.contains(ev.evt_type()) && self.expr.eval(ev)
    }

    /// Whether an exception of the rule names the container of `ev` as a whole (its image,
    /// name, labels): then the rule never fires for that container, and its guard must not act
    /// on it in the kernel either.
    pub fn exempts_container<E: EventView + ?Sized>(&self, ev: &E) -> bool {
        self.container_exempt.as_ref().is_some_and(|e| e.eval(ev))
    }

    /// The output line and the fields it references, rendered from the event.
    pub fn render<E: EventView + ?Sized>(
        &self,
        ev: &E,
        time_ns: u64,
    ) -> (String, std::collections::BTreeMap<String, serde_json::Value>) {
        self.output.render(ev, time_ns)
    }

    /// A Falco-shaped alert for an event this rule matched. `output_fields` holds every field
    /// the output template references; callers may add more (container, k8s metadata).
    pub fn alert<E: EventView + ?Sized>(&self, ev: &E, meta: &AlertMeta<'_>) -> Alert {
        let (output, output_fields) = self.render(ev, meta.time_ns);
        Alert {
            time: rfc3339_nanos(meta.time_ns),
            rule: self.name.clone(),
            priority: self.priority,
            output,
            output_fields,
            source: SOURCE,
            tags: self.tags.clone(),
            hostname: meta.hostname.to_string(),
        }
    }
}

/// A loaded ruleset: every rule (enabled or not) and, per event type, the enabled rules that
/// can match it, in definition order.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Per event type: (rule index, the rule's condition specialised for that type).
    index: Vec<Box<[(u32, eval::Expr)]>>,
    warnings: Vec<Diagnostic>,
    files: Vec<String>,
    macros: usize,
    lists: usize,
}

impl RuleSet {
    /// Read and compile the rules `opts` names. Every error is collected; warnings (unused
    /// macros, unknown top-level items, rules without evt.type…) come with the result.
    pub fn load(opts: &LoadOptions) -> Result<RuleSet, RulesError> {
        RuleSet::from_sources(read_sources(opts)?)
    }

    /// The embedded defaults alone.
    pub fn builtin() -> Result<RuleSet, RulesError> {
        RuleSet::load(&LoadOptions { default_rules: true, rules_dir: None, files: Vec::new() })
    }

    /// Compile rules from texts already in memory (later sources override earlier ones).
    pub fn from_sources(sources: Vec<Source>) -> Result<RuleSet, RulesError> {
        let mut store = load::Store::default();
        for s in sources {
            store.add_file(s);
        }
        let rules = compile::Compiler::new(&mut store).compile_all();
        if !store.errors.is_empty() {
            return Err(RulesError { errors: store.errors, warnings: store.warnings });
        }
        let mut index: Vec<Vec<(u32, eval::Expr)>> = (0..EvtType::COUNT).map(|_| Vec::new()).collect();
        let mut memo = std::collections::HashMap::new();
        for (i, rule) in rules.iter().enumerate().filter(|(_, r)| r.enabled) {
            for t in rule.types.iter() {
                match rule.expr.specialize(t, &mut memo) {
                    eval::Expr::Const(false) => {}
                    e => index[t as usize].push((i as u32, e)),
                }
            }
        }
        Ok(RuleSet {
            index: index.into_iter().map(Vec::into_boxed_slice).collect(),
            warnings: store.warnings,
            files: store.sources.into_iter().map(|s| s.name).collect(),
            macros: store.macros.items.len(),
            lists: store.lists.items.len(),
            rules,
        })
    }

    /// Load again (SIGHUP). On error the current rules stay in force and the error says why.
    pub fn reload(&mut self, opts: &LoadOptions) -> Result<(), RulesError> {
        *self = RuleSet::load(opts)?;
        Ok(())
    }

    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// Every rule, enabled or not, in definition order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Change a rule's `--enforce` action (`--action RULE=ACTION`, config `action:`).
    pub fn set_action(&mut self, name: &str, action: crate::enforce::Action) -> Result<(), String> {
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("--action {name:?}: no such rule (`dcea rules list` names them)"))?;
        rule.action = action;
        Ok(())
    }

    /// The files loaded, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn macro_count(&self) -> usize {
        self.macros
    }

    pub fn list_count(&self) -> usize {
        self.lists
    }

    /// Enabled rules that can match events of type `t`.
    pub fn rules_for(&self, t: EvtType) -> impl Iterator<Item = &Rule> {
        self.index[t as usize].iter().map(|(i, _)| &self.rules[*i as usize])
    }

    /// Whether an enabled rule can match a unix connect to a socket that is not a runtime's:
    /// any connect rule but those guarded by `runtime-socket`, whose sockets the kernel
    /// recognises itself. Without one the kernel sends no record for other sockets.
    pub fn needs_every_unix_connect(&self) -> bool {
        self.rules_for(EvtType::Connect).any(|r| r.guard != Some(dcea_common::Guard::RuntimeSocket))
    }

    /// Enabled rules matching the event, in definition order, without allocating.
    pub fn matching<'a, E: EventView + ?Sized>(&'a self, ev: &'a E) -> impl Iterator<Item = &'a Rule> + 'a {
        self.index[ev.evt_type() as usize]
            .iter()
            .filter(move |(_, expr)| expr.eval(ev))
            .map(|(i, _)| &self.rules[*i as usize])
    }

    /// The first matching rule (Falco's default `rule_matching: first`).
    pub fn first_match<'a, E: EventView + ?Sized>(&'a self, ev: &'a E) -> Option<&'a Rule> {
        self.matching(ev).next()
    }
}

fn io_error(path: &Path, e: &io::Error) -> RulesError {
    RulesError {
        errors: vec![Diagnostic { file: path.display().to_string(), pos: None, message: format!("cannot read: {e}") }],
        warnings: Vec::new(),
    }
}

fn read_file(path: &Path) -> Result<Source, RulesError> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, &e))?;
    if meta.len() > load::MAX_FILE_BYTES as u64 {
        return Err(RulesError {
            errors: vec![Diagnostic {
                file: path.display().to_string(),
                pos: None,
                message: format!("larger than {} bytes", load::MAX_FILE_BYTES),
            }],
            warnings: Vec::new(),
        });
    }
    let bytes = fs::read(path).map_err(|e| io_error(path, &e))?;
    let text = String::from_utf8(bytes).map_err(|e| RulesError {
        errors: vec![Diagnostic {
            file: path.display().to_string(),
            pos: None,
            message: format!("not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        }],
        warnings: Vec::new(),
    })?;
    Ok(Source { name: path.display().to_string(), text })
}

/// The rules files of a directory: `*.yaml` and `*.yml`, hidden files skipped, lexical order.
pub fn rules_dir_files(dir: &Path) -> Result<Vec<PathBuf>, RulesError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, &e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, &e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        // Follows symlinks (ConfigMap mounts are symlinks); directories are not rules.
        if fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// The sources `opts` names, read in load order.
pub fn read_sources(opts: &LoadOptions) -> Result<Vec<Source>, RulesError> {
    let mut sources = Vec::new();
    if opts.default_rules {
        sources.extend(
            BUILTIN_FILES.iter().map(|(name, text)| Source { name: builtin_name(name), text: text.to_string() }),
        );
    }
    let mut paths = match &opts.rules_dir {
        Some(dir) => rules_dir_files(dir)?,
        None => Vec::new(),
    };
    paths.extend(opts.files.iter().cloned());
    let mut errors = Vec::new();
    for p in paths {
        match read_file(&p) {
            Ok(s) => sources.push(s),
            Err(e) => errors.extend(e.errors),
        }
    }
    if !errors.is_empty() {
        return Err(RulesError { errors, warnings: Vec::new() });
    }
    Ok(sources)
}
