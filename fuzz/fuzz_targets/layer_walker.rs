//! Arbitrary bytes as an image layer: the walker must return a result or a clear error for
//! any input (truncated or hostile gzip/zstd/tar, traversal, links, bombs) — never panic,
//! never allocate without bound.
#![no_main]

use dcea_user::scan::image::{
    fs::FsView,
    layer::{Budget, Limits, WalkOptions, walk},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_expanded_bytes: 64 << 20,
        max_entries: 10_000,
        max_ratio: 200,
        ratio_floor: 1 << 20,
        max_capture: 1 << 20,
    };
    let budget = Budget::default();
    let opts = WalkOptions { blob_digest: true, diff_id: true, file_digests: true };
    let mut input = data;
    if let Ok(delta) = walk("fuzz", &mut input, opts, &limits, &budget, &|_| true) {
        let mut view = FsView::default();
        let _ = view.apply(0, &delta);
        // A second application exercises whiteouts against a populated view.
        let _ = view.apply(1, &delta);
    }
});
