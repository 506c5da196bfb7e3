//! Namespace trust: what the host's namespaces are, what a transition means, and the trust
//! table of every container process with its checks (periodic passes and re-checks).

pub mod checker;
pub mod cli;
pub mod db;
mod host;
pub mod procfs;
mod verdict;
pub mod worker;

pub use checker::{PassStats, TrustChecker, Violation};
pub use db::{DEFAULT_STATE_DIR, TrustFile, TrustStore};
pub use host::HostNamespaces;
pub use verdict::{Verdict, classify};
pub use worker::{TrustHandle, TrustWorker};
