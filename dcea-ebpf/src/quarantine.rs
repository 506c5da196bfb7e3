//! Network quarantine: cgroup programs on one container's cgroup v2 directory.
//!
//! Everything is refused or dropped except loopback traffic inside the container's own network
//! namespace (`lo` is ifindex 1 in every namespace; 127.0.0.0/8, ::1 and ::ffff:127.x count as
//! loopback so the address and the device checks agree), and, with `--allow-dns`, port 53.
//! connect/sendmsg return 0 (the caller gets EPERM); skb programs return 0 (the packet is
//! dropped), so a connection established before the quarantine stops passing data.
//!
//! Tiny and loop-free on purpose: these must verify on 5.10, 6.1 and 6.12.

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::Array,
    programs::{SkBuffContext, SockAddrContext},
};
use dcea_common::programs::quarantine::{ALLOW_DNS, DNS_PORT};

/// Slot 0: this quarantine's flags ([`ALLOW_DNS`]), written by the agent before attaching.
#[map]
static DCEA_QUARANTINE_FLAGS: Array<u32> = Array::with_max_entries(1, 0);

const PASS: i32 = 1;
const REFUSE: i32 = 0;
const LOOPBACK_IFINDEX: u32 = 1;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[inline(always)]
fn dns_allowed() -> bool {
    DCEA_QUARANTINE_FLAGS.get(0).is_some_and(|f| *f & ALLOW_DNS != 0)
}

/// An IPv4 address as the kernel stores it (network order in a `u32`).
#[inline(always)]
fn loopback4(addr_be: u32) -> bool {
    u32::from_be(addr_be) >> 24 == 127
}

/// An IPv6 address as four network-order words: ::1, or ::ffff:127.x.y.z.
#[inline(always)]
fn loopback6(w: [u32; 4]) -> bool {
    w[0] == 0
        && w[1] == 0
        && ((w[2] == 0 && u32::from_be(w[3]) == 1) || (u32::from_be(w[2]) == 0xffff && loopback4(w[3])))
}

#[inline(always)]
fn sock_addr_verdict(port_be: u32, loopback: bool) -> i32 {
    if loopback || (u16::from_be(port_be as u16) == DNS_PORT && dns_allowed()) { PASS } else { REFUSE }
}

#[cgroup_sock_addr(connect4)]
pub fn quarantine_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the context of a sock_addr program; user_ip4/user_port are readable for inet4.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    sock_addr_verdict(port, loopback4(ip))
}

#[cgroup_sock_addr(sendmsg4)]
pub fn quarantine_sendmsg4(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    sock_addr_verdict(port, loopback4(ip))
}

#[inline(always)]
fn ip6(ctx: &SockAddrContext) -> ([u32; 4], u32) {
    // SAFETY: user_ip6 is readable word by word for inet6 programs.
    unsafe {
        let a = &*ctx.sock_addr;
        ([a.user_ip6[0], a.user_ip6[1], a.user_ip6[2], a.user_ip6[3]], a.user_port)
    }
}

#[cgroup_sock_addr(connect6)]
pub fn quarantine_connect6(ctx: SockAddrContext) -> i32 {
    let (w, port) = ip6(&ctx);
    sock_addr_verdict(port, loopback6(w))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn quarantine_sendmsg6(ctx: SockAddrContext) -> i32 {
    let (w, port) = ip6(&ctx);
    sock_addr_verdict(port, loopback6(w))
}

/// A packet of the container's sockets: pass on `lo`, between loopback addresses, or to/from
/// port 53 with `--allow-dns`; drop the rest. `skb->data` is the network header here.
#[inline(always)]
fn skb_verdict(ctx: &SkBuffContext) -> i32 {
    // SAFETY: the __sk_buff of a cgroup_skb program; ifindex and protocol are readable.
    let (ifindex, protocol) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).protocol) };
    if ifindex == LOOPBACK_IFINDEX {
        return PASS;
    }
    let proto = u16::from_be(protocol as u16) as u32;
    let (loopback, l4, l4_off) = if proto == ETH_P_IP {
        let (Ok(vihl), Ok(l4), Ok(src), Ok(dst)) =
            (ctx.load::<u8>(0), ctx.load::<u8>(9), ctx.load::<u32>(12), ctx.load::<u32>(16))
        else {
            return REFUSE;
        };
        (loopback4(src) && loopback4(dst), l4, ((vihl & 0x0f) as usize) * 4)
    } else if proto == ETH_P_IPV6 {
        let (Ok(l4), Ok(s), Ok(d)) = (ctx.load::<u8>(6), ctx.load::<[u32; 4]>(8), ctx.load::<[u32; 4]>(24)) else {
            return REFUSE;
        };
        (loopback6(s) && loopback6(d), l4, 40)
    } else {
        return REFUSE;
    };
    if loopback {
        return PASS;
    }
    if (l4 == IPPROTO_TCP || l4 == IPPROTO_UDP) && dns_allowed() {
        // Source and destination ports, network order, at the start of the TCP/UDP header.
        if let Ok(ports) = ctx.load::<u32>(l4_off & 0x3c) {
            let ports = u32::from_be(ports);
            if (ports >> 16) as u16 == DNS_PORT || ports as u16 == DNS_PORT {
                return PASS;
            }
        }
    }
    REFUSE
}

#[cgroup_skb(ingress)]
pub fn quarantine_ingress(ctx: SkBuffContext) -> i32 {
    skb_verdict(&ctx)
}

#[cgroup_skb(egress)]
pub fn quarantine_egress(ctx: SkBuffContext) -> i32 {
    skb_verdict(&ctx)
}
