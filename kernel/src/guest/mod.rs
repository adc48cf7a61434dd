//! Guest-only code: everything that touches the CPU, Xen or global state.

mod console;
mod heap;
mod init;
mod logger;
mod mmu;
mod panic;
mod shared_info;
mod xen;
