//! Everything a runtime can send, decoded and mapped the way the worker does, from raw bytes:
//! the fuzz target's entry (fuzz/fuzz_targets/cri_responses.rs) and the unit test that feeds it
//! garbage. The first byte picks the message; the rest is its protobuf encoding (what tonic
//! hands the worker), except for kind 5: the verbose `info` JSON as text.

use std::{collections::HashMap, sync::Arc};

use k8s_cri::v1 as api;
use prost::Message;

use super::{
    model::{ContainerFacts, Pod, container_meta, join, runtime_of, verbose_of},
    spec::parse_verbose_info,
};
use crate::container::{Runtime, metadata::add_container_fields};

/// Decode and map one answer; the number of containers it produced metadata for. Never
/// panics, whatever the bytes.
pub fn decode_and_map(data: &[u8]) -> usize {
    let Some((&kind, body)) = data.split_first() else { return 0 };
    let runtime = if kind & 0x80 != 0 { Runtime::CriO } else { Runtime::Containerd };
    let metas = match kind & 0x7f {
        0 => {
            let Ok(r) = api::ListContainersResponse::decode(body) else { return 0 };
            let all: Vec<_> = r.containers.iter().map(|c| (ContainerFacts::from_list(c), None)).collect();
            join(&all, &HashMap::new(), runtime)
        }
        1 => {
            let Ok(r) = api::ListPodSandboxResponse::decode(body) else { return 0 };
            let pods: HashMap<String, Arc<Pod>> =
                r.items.iter().map(|p| (p.id.clone(), Arc::new(Pod::from_list(p)))).collect();
            // Every pod's labels as a container's, to map the pods too.
            let all: Vec<_> = r
                .items
                .iter()
                .map(|p| {
                    let c = api::Container {
                        id: p.id.clone(),
                        pod_sandbox_id: p.id.clone(),
                        labels: p.labels.clone(),
                        ..Default::default()
                    };
                    (ContainerFacts::from_list(&c), None)
                })
                .collect();
            join(&all, &pods, runtime)
        }
        2 => {
            let Ok(r) = api::ContainerStatusResponse::decode(body) else { return 0 };
            let v = verbose_of(&r);
            let Some(s) = &r.status else { return 0 };
            let facts = ContainerFacts::from_status(s);
            [(facts.id.clone(), Arc::new(container_meta(&facts, None, v.as_ref(), runtime)))].into()
        }
        3 => {
            let Ok(r) = api::PodSandboxStatusResponse::decode(body) else { return 0 };
            let Some(s) = &r.status else { return 0 };
            let pod = Pod::from_status(s);
            let facts = ContainerFacts { id: "0".repeat(64), sandbox_id: Some(pod.id.clone()), ..Default::default() };
            let pods = [(pod.id.clone(), Arc::new(pod))].into();
            join(&[(facts, None)], &pods, runtime)
        }
        4 => {
            let Ok(r) = api::VersionResponse::decode(body) else { return 0 };
            return usize::from(runtime_of(&r).is_some());
        }
        5 => {
            let text = String::from_utf8_lossy(body);
            let v = parse_verbose_info(&text);
            return usize::from(v.is_some_and(|v| v.spec.is_some()));
        }
        _ => {
            let Ok(r) = api::ContainerEventResponse::decode(body) else { return 0 };
            let pod = r.pod_sandbox_status.as_ref().map(Pod::from_status);
            r.containers_statuses
                .iter()
                .map(|s| {
                    let f = ContainerFacts::from_status(s);
                    (f.id.clone(), Arc::new(container_meta(&f, pod.as_ref(), None, runtime)))
                })
                .collect()
        }
    };
    // The alert fields must serialize for whatever the runtime sent.
    for m in metas.values() {
        let c = crate::container::ContainerRef { id: m.id.clone(), runtime };
        let mut f = std::collections::BTreeMap::new();
        add_container_fields(&mut f, Some(&c), Some(m));
        let _ = serde_json::to_string(&f);
    }
    metas.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_kind(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn recorded_answers_map_and_garbage_does_not_panic() {
        let load = |n: &str| {
            std::fs::read_to_string(format!("{}/src/container/cri/testdata/{n}", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let list: api::ListContainersResponse = serde_json::from_str(&load("containerd-list-containers.json")).unwrap();
        assert_eq!(decode_and_map(&with_kind(0, &list.encode_to_vec())), 1);
        let status: api::ContainerStatusResponse =
            serde_json::from_str(&load("containerd-container-status.json")).unwrap();
        assert_eq!(decode_and_map(&with_kind(2, &status.encode_to_vec())), 1);
        assert_eq!(decode_and_map(&with_kind(5, status.info["info"].as_bytes())), 1);
        let version: api::VersionResponse = serde_json::from_str(&load("crio-version.json")).unwrap();
        assert_eq!(decode_and_map(&with_kind(0x84, &version.encode_to_vec())), 1);
        // Truncations and flipped bytes of a real answer, and plain junk.
        let bytes = status.encode_to_vec();
        for cut in (0..bytes.len()).step_by(97) {
            decode_and_map(&with_kind(2, &bytes[..cut]));
            let mut flipped = bytes.clone();
            flipped[cut] ^= 0xff;
            decode_and_map(&with_kind(2, &flipped));
        }
        for k in 0..8u8 {
            decode_and_map(&with_kind(k, b"\xff\xff\xff\xff\x0f garbage \x00"));
        }
        assert_eq!(decode_and_map(&[]), 0);
        // The fuzz target's seeds are these answers (DCEA_WRITE_CRI_SEEDS=fuzz/seeds/cri_responses).
        if let Some(dir) = std::env::var_os("DCEA_WRITE_CRI_SEEDS") {
            let dir = std::path::Path::new(&dir);
            let seeds = [
                ("list-containers", with_kind(0, &list.encode_to_vec())),
                ("container-status", with_kind(2, &bytes)),
                ("verbose-info", with_kind(5, status.info["info"].as_bytes())),
                ("crio-version", with_kind(0x84, &version.encode_to_vec())),
            ];
            for (name, data) in seeds {
                std::fs::write(dir.join(name), data).unwrap();
            }
        }
    }
}
