//! The final filesystem of an image, built by applying layer changes in order with
//! overlayfs semantics: whiteouts and opaque directories hide only lower layers, a
//! non-directory replaces a directory with everything below it, later entries win.
//! Symlinks are followed inside the image root only.

use std::collections::{BTreeMap, HashSet};

use super::{
    error::{ImageError, Result},
    layer::{Change, LayerDelta, Node, NodeKind, join},
};

/// Links followed before a lookup is declared a loop (Linux's MAXSYMLINKS).
pub const MAX_SYMLINK_HOPS: usize = 40;

#[derive(Debug, Default)]
pub struct FsView {
    nodes: BTreeMap<String, Node>,
}

impl FsView {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path.trim_start_matches('/'))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    fn remove_below(&mut self, dir: &str) {
        if dir.is_empty() {
            self.nodes.clear();
            return;
        }
        let prefix = format!("{dir}/");
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
    }

    /// Applies one layer; returns warnings (duplicate entries, dangling hard links).
    pub fn apply(&mut self, layer: usize, delta: &LayerDelta) -> Vec<String> {
        let mut warnings = Vec::new();
        // Whiteouts only hide what lower layers put there, wherever they sit in the tar.
        for change in &delta.changes {
            match change {
                Change::Whiteout(path) => {
                    self.nodes.remove(path);
                    self.remove_below(path);
                }
                Change::Opaque(dir) => self.remove_below(dir),
                Change::Put(..) => {}
            }
        }
        let mut seen = HashSet::new();
        for change in &delta.changes {
            let Change::Put(path, node) = change else {
                continue;
            };
            let mut node = node.clone();
            node.layer = layer;
            if let NodeKind::Hardlink(target) = &node.kind {
                match self.nodes.get(target) {
                    Some(t) if t.kind == NodeKind::File => {
                        let t = t.clone();
                        node = Node { layer, ..t };
                    }
                    _ => {
                        warnings.push(format!(
                            "layer {layer}: hard link {path} -> {target} has no regular file target; skipped"
                        ));
                        continue;
                    }
                }
            }
            if node.kind != NodeKind::Dir && !seen.insert(path.clone()) {
                warnings.push(format!(
                    "layer {layer}: duplicate entry {path}; the later one wins, as when the layer is extracted"
                ));
            }
            self.put(path, node);
        }
        warnings
    }

    fn put(&mut self, path: &str, node: Node) {
        let layer = node.layer;
        // Parents must be directories: a lower non-directory at a parent path is replaced.
        let mut parent = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for c in &components[..components.len().saturating_sub(1)] {
            parent = join(&parent, c);
            match self.nodes.get(&parent) {
                Some(n) if n.kind == NodeKind::Dir => {}
                _ => {
                    self.nodes.insert(
                        parent.clone(),
                        Node { kind: NodeKind::Dir, size: 0, mode: 0o755, sha256: None, content: None, layer },
                    );
                }
            }
        }
        if node.kind != NodeKind::Dir {
            self.remove_below(path);
        }
        self.nodes.insert(path.to_string(), node);
    }

    /// Resolves `path` inside the image, following symlinks in every component.
    /// Ok(None): the path does not exist. A link climbing above the root is an error.
    pub fn resolve(&self, path: &str) -> Result<Option<String>> {
        let mut queue: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        let mut last_link: Option<(String, String)> = None;
        while let Some(c) = queue.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    if cur.pop().is_none() {
                        let (path, target) = last_link.unwrap_or_else(|| (path.to_string(), String::new()));
                        return Err(ImageError::SymlinkEscape { path, target });
                    }
                    continue;
                }
                _ => {}
            }
            cur.push(c);
            let here = cur.join("/");
            match self.nodes.get(&here).map(|n| &n.kind) {
                None => return Ok(None),
                Some(NodeKind::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(ImageError::SymlinkLoop { path: path.to_string(), hops: MAX_SYMLINK_HOPS });
                    }
                    cur.pop();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    last_link = Some((here, target.clone()));
                    queue.extend(target.split('/').rev().map(str::to_string));
                }
                Some(_) => {}
            }
        }
        Ok(Some(cur.join("/")))
    }

    /// The node at `path` after following symlinks.
    pub fn lookup(&self, path: &str) -> Result<Option<(String, &Node)>> {
        Ok(self.resolve(path)?.and_then(|p| self.nodes.get(&p).map(|n| (p.clone(), n))))
    }

    /// Captured contents of a regular file (symlinks followed).
    pub fn read(&self, path: &str) -> Result<Option<(String, &Node, &[u8])>> {
        Ok(match self.lookup(path)? {
            Some((p, n)) if n.kind == NodeKind::File => n.content.as_deref().map(|c| (p, n, c.as_slice())),
            _ => None,
        })
    }

    /// Direct children of a directory (symlinks to the directory followed).
    pub fn children(&self, dir: &str) -> Result<Vec<(String, &Node)>> {
        let Some(dir) = self.resolve(dir)? else {
            return Ok(Vec::new());
        };
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/') && k.len() > prefix.len())
            .map(|(k, n)| (k.clone(), n))
            .collect())
    }
}
