//! Arbitrary bytes as a CRI runtime's answer (ListContainers, ListPodSandbox, ContainerStatus
//! with verbose info, PodSandboxStatus, Version, events; the verbose info JSON on its own):
//! decoding and mapping to alert metadata must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dcea_user::container::cri::untrusted::decode_and_map(data);
});
