//! Stub library target: the programs live in the `dcea-ebpf` binary built for bpfel.
#![no_std]
