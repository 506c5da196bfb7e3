//! Runtime integrity (the hardening paper's measurement module): the programs and shared
//! libraries a container runs, judged against its image at exec and at every executable file
//! mapping ([`judge`]), and the code in its processes' memory checked against the files it
//! was mapped from by a periodic pass ([`pass`]).
//!
//! The image reference is what `dcea measure image --save` recorded for the container's
//! image when there is one; otherwise it is built lazily, one path at a time, from the
//! overlay's image layers (never copied), and kept under the state directory by image id
//! ([`baseline`]). Files are hashed at most once per (dev, inode, ctime, size) ([`hash`]).

pub mod baseline;
pub mod cli;
pub mod findings;
pub mod hash;
pub mod judge;
pub mod layers;
pub mod mapping;
pub mod memory;
pub mod pass;
pub mod smaps;

pub use judge::{FileIntegrity, FileQuery, Integrity, Verdict};
