//! AArch64 support for the vdispl-os guest: boot entry and Image header, the
//! stage-1 identity map, exception vectors, hypervisor calls and CPU helpers.
//!
//! The assembly and system-register code only exists when building for the
//! bare-metal target; the page-table builder and the exception decoding are
//! plain Rust and are unit-tested on the host.

#![no_std]

pub mod cpu;
pub mod exception;
pub mod gicv3;
pub mod hvc;
pub mod mmu;
pub mod timer;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
core::arch::global_asm!(include_str!("boot.s"));
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
core::arch::global_asm!(include_str!("vectors.s"));
