//! Xen guest interfaces (xen/include/public).

pub mod console;
pub mod displif;
pub mod edid;
pub mod error;
pub mod evtchn;
pub mod gnttab;
pub mod hypercall;
pub mod kbdif;
pub mod ring;
pub mod shared_info;
pub mod vdispl;
pub mod vkbd;
pub mod xenbus;
pub mod xenstore;
