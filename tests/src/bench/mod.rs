//! Pieces the benchmarks share: the workload loops and a bpftrace peer run beside them.

pub mod allowlist;
pub mod bpftrace;
pub mod integrity;
pub mod loops;
pub mod quarantine;
