//! Namespace trust: what the host's namespaces are, and what a transition means.

mod host;
mod verdict;

pub use host::HostNamespaces;
pub use verdict::{Verdict, classify};
