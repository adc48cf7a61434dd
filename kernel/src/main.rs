//! The vdispl-os guest binary: boot glue between `arch` and the kernel
//! library, global state, console, heap, logging and the panic handler.
//!
//! On the host this file builds to a stub so that `cargo build` and
//! `cargo test` at the workspace root work; the guest is built for
//! `aarch64-unknown-none` by `cargo xtask build`.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vdispl-os runs as a Xen guest: build it with `cargo xtask build`");
    std::process::exit(2);
}
