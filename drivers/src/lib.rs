//! Device drivers and Xen guest protocols for vdispl-os.
//!
//! Everything here is `no_std` and free of `unsafe` except where a driver
//! touches hardware registers. Protocol code reaches Xen only through the
//! [`xen::hypercall::Hypervisor`] trait and shared pages handed in by the
//! caller, so host tests run it against fakes.

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod framebuffer;
pub mod gic;
pub mod irq;
pub mod test_pattern;
pub mod uart;
pub mod xen;
