//! Guest-only code: everything that touches the CPU, Xen or global state.

mod console;
mod control;
mod display;
mod heap;
mod init;
mod irq;
mod logger;
mod mmu;
mod pages;
mod panic;
mod selftest;
mod services;
mod shared_info;
mod store;
mod sync;
mod time;
mod xen;
