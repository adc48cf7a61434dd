//! The Linux input peer's evdev reader, as a library: the reader's line format and options,
//! the evdev reports Linux's xen-kbdfront gives for an input event script (computed on the
//! host, apart from the reader), and the check of one against the other. The binary
//! (`src/main.rs`) is the DomU's `/init`.

#![forbid(unsafe_code)]

pub mod cmdline;
pub mod codes;
pub mod collect;
pub mod compare;
pub mod kbdfront;
pub mod output;
pub mod raw;
