//! The vdispl-os kernel as a library: everything that does not touch the CPU
//! directly, so that host tests (and golden frames, later) run the very code
//! the guest runs.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod app;
pub mod memory;
pub mod platform;
pub mod report;
pub mod scenes;
