//! Xen guest interfaces (xen/include/public).

pub mod console;
pub mod error;
pub mod hypercall;
pub mod shared_info;
