//! The Linux peer's KMS client, as a library: the pixel formats Linux's xen-drm-front offers,
//! the test pattern the client draws (and `cargo xtask test` recomputes, pixel for pixel), and
//! the client's kernel command line options. The binary (`src/main.rs`) is the DomU's `/init`.

#![forbid(unsafe_code)]

pub mod cmdline;
pub mod errno;
pub mod format;
pub mod pattern;
