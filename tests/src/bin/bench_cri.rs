//! Benchmark: CRI metadata. (1) Lookup latency from the cache with 1,000 pods in it; (2) the
//! live bytes of 1,000 pods (one container each) built from synthetic CRI answers shaped like
//! containerd's (verbose info with an OCI spec, ~14 KiB each), as the worker keeps them (its
//! listing) and as alerts read them (the published map); (3) with a private containerd (the
//! test harness), the time from a lookup miss of a just-started container until the cache
//! has it, and one full listing. Build with --release for numbers worth reporting:
//!
//!     cargo run --release -p dcea-tests --bin bench_cri -- [PODS]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use dcea_user::container::{
    Runtime,
    cri::{
        CriCache, Listing,
        model::{ContainerFacts, Pod, verbose_of},
        spec::SpecSummary,
    },
};
use k8s_cri::v1 as api;

/// Live heap bytes.
struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn testdata(name: &str) -> String {
    let p = dcea_tests::workspace_root().join("dcea-user/src/container/cri/testdata").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Pod i and its container, from the recorded containerd answers with new ids and names.
fn synthetic(i: usize) -> (api::PodSandboxStatus, api::ContainerStatusResponse) {
    let mut pod: api::PodSandboxStatusResponse =
        serde_json::from_str(&testdata("containerd-pod-sandbox-status.json")).unwrap();
    let mut status: api::ContainerStatusResponse =
        serde_json::from_str(&testdata("containerd-container-status.json")).unwrap();
    let pod_id = format!("{i:064x}");
    let ctr_id = format!("{:064x}", i + 1_000_000);
    let mut p = pod.status.take().unwrap();
    p.id = pod_id.clone();
    let md = p.metadata.as_mut().unwrap();
    md.name = format!("web-{i}-7d9f8c");
    md.uid = format!("{i:08x}-1111-4222-8333-444455556666");
    p.labels.insert("app.kubernetes.io/name".into(), format!("web-{}", i % 50));
    p.labels.insert("pod-template-hash".into(), "7d9f8c".into());
    let s = status.status.as_mut().unwrap();
    s.id = ctr_id;
    s.labels.insert("io.kubernetes.pod.name".into(), md.name.clone());
    (p, status)
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn main() {
    let pods: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    // (2) Memory: answers decoded as tonic would hand them over, then kept as the worker keeps them.
    let answers: Vec<_> = (0..pods).map(synthetic).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let mut listing = Listing::new(Runtime::Containerd);
    for (p, s) in &answers {
        let pod = Pod::from_status(p);
        listing.pods.insert(pod.id.clone(), Arc::new(pod));
        let mut facts = ContainerFacts::from_status(s.status.as_ref().unwrap());
        facts.sandbox_id = Some(p.id.clone());
        // As the monitor keeps it: only the namespace part of the spec.
        let mut v = verbose_of(s);
        if let Some(v) = v.as_mut() {
            v.spec = v.spec.take().map(|s| SpecSummary { host_namespaces: s.host_namespaces, ..Default::default() });
        }
        listing.containers.insert(facts.id.clone(), (facts, v));
    }
    let after_listing = LIVE.load(Ordering::Relaxed);
    let metas = listing.metas();
    let after_map = LIVE.load(Ordering::Relaxed);
    let answer_bytes: usize = answers.iter().map(|(_, s)| s.info.values().map(String::len).sum::<usize>()).sum();
    println!(
        "memory, {pods} pods (1 container each; {:.1} MiB of verbose info received): worker listing {:.2} MiB, alert map {:.2} MiB, {:.1} KiB per pod in all",
        answer_bytes as f64 / 1048576.0,
        (after_listing - before) as f64 / 1048576.0,
        (after_map - after_listing) as f64 / 1048576.0,
        (after_map - before) as f64 / 1024.0 / pods as f64
    );

    // (1) Lookup latency from the cache (a source whose socket is absent: no worker traffic).
    let cache = CriCache::start(vec!["/nonexistent/dcea-bench-cri.sock".into()]);
    cache.wait_ready(Duration::from_secs(2));
    let ids: Vec<String> = metas.keys().cloned().collect();
    for m in metas.values() {
        cache.insert((**m).clone());
    }
    let rounds = 200_000;
    let t = Instant::now();
    let mut hits = 0;
    for i in 0..rounds {
        hits += usize::from(cache.lookup(&ids[i % ids.len()]).is_some());
    }
    let hit_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    assert_eq!(hits, rounds);
    let unknown: Vec<String> = (0..10_000).map(|i| format!("{:064x}", i + 9_000_000)).collect();
    let t = Instant::now();
    for id in &unknown {
        assert!(cache.lookup(id).is_none());
    }
    let miss_ns = t.elapsed().as_nanos() as f64 / unknown.len() as f64;
    let t = Instant::now();
    for id in &unknown {
        assert!(cache.lookup(id).is_none());
    }
    let miss_again_ns = t.elapsed().as_nanos() as f64 / unknown.len() as f64;
    println!(
        "lookup with {} containers cached: hit {hit_ns:.0} ns, miss {miss_ns:.0} ns (first miss of an id: queues a refresh), repeated miss {miss_again_ns:.0} ns",
        cache.len()
    );
    drop(metas);

    // (3) A real containerd: miss → cached, and one full listing.
    let Some(mut cri) = dcea_tests::containerd::Containerd::start("bench_cri") else { return };
    let live = CriCache::start(vec![cri.socket.clone()]);
    live.wait_ready(Duration::from_secs(10));
    let pod = cri.run_pod("bench", Default::default());
    let mut fill_ms = Vec::new();
    for i in 0..10 {
        let id = cri.run_command(&pod, &format!("c{i}"), &["/bin/sleep", "300"]);
        let t = Instant::now();
        while live.lookup(&id).is_none() {
            assert!(t.elapsed() < Duration::from_secs(10), "never cached");
            std::thread::sleep(Duration::from_micros(200));
        }
        fill_ms.push(t.elapsed().as_micros() as u64);
    }
    let t = Instant::now();
    let listed = dcea_user::container::cri::fetch(std::slice::from_ref(&cri.socket));
    let list_ms = t.elapsed().as_secs_f64() * 1000.0;
    let n = listed.first().and_then(|(_, l)| l.as_ref().ok()).map_or(0, |l| l.containers.len());
    println!(
        "containerd 1.6: miss → cached after StartContainer: median {:.1} ms, max {:.1} ms (10 containers); full listing with verbose status of {n} containers: {list_ms:.1} ms",
        percentile(&mut fill_ms.clone(), 0.5) as f64 / 1000.0,
        percentile(&mut fill_ms, 1.0) as f64 / 1000.0,
    );
    cri.stop_pod(&pod);
}
