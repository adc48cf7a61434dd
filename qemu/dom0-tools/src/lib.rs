//! Programs the rig runs in Dom0, next to the Xen tools: the display backend the guest talks to,
//! and Dom0's side of the guest's self-tests, through the Linux Xen devices (`/dev/xen/*`).
//! They print `rig: `, `vdispl-backend: ` and `frame ` lines that `cargo xtask` reads from the
//! serial log.
//!
//! - `vdispl-backend [--out DIR]`: the vdispl (para-virtual display) backend. Serves every
//!   frontend whose device has Dom0 as its backend, captures each flipped frame as a PNG file
//!   and a `frame conn=.. seq=.. crc32=..` line (`display_backend`, with `xenbus`, `evtchn`,
//!   `grant_map`, `frontend`, `lifecycle`, `capture`).
//! - `vkbd-backend --script FILE`: the kbdif (para-virtual keyboard, pointer and multi-touch)
//!   backend. Serves every `backend-type=linux` vkb device whose backend is Dom0 and plays the
//!   input event script FILE to each (`input_backend`, with `xenbus`, `evtchn`, `grant_map`,
//!   `lifecycle`; the script format is `drivers::xen::kbdif::script`).
//! - `vdispl-grant-check <domid> <gref> <seed>`: maps a page a domain granted to Dom0 and
//!   compares it with the shared test pattern (`grant_check`, `gntdev`).
//! - `vdispl-grant-offer <domid> <seed> [<seconds>]`: Dom0 grants a page of its own, filled
//!   with the pattern, to a domain (itself included), a stand-in for the guest's side of that
//!   test (`grant_offer`, `gntalloc`).
//!
//! - `vdispl-bench-time FILE TEXT TIMEOUT_MS -- COMMAND [ARG...]`: the milliseconds from
//!   COMMAND's exit until TEXT appears in FILE, for `cargo xtask bench` (`bench_time`).
//!
//! They are built for aarch64-unknown-linux-musl, statically linked, by `cargo xtask build`, and
//! installed into the Dom0 initramfs at `/usr/bin/`. Everything but the device access is plain
//! logic tested on the host; wire formats shared with the guest come from the `drivers` crate.

/// `eprintln!` whose whole line reaches standard error in one `write(2)`: std's `eprintln!`
/// writes each piece of the format separately, so lines of threads (and of processes sharing the
/// pipe, such as `2>&1 | tee` in the rig) interleave mid-line and the serial log's parsers miss
/// them.
#[macro_export]
macro_rules! eprintln_line {
    ($($arg:tt)*) => {
        $crate::write_stderr_line(::std::format!($($arg)*))
    };
}

/// Writes `line` and a newline to standard error in one call (see [`eprintln_line!`]).
pub fn write_stderr_line(mut line: String) {
    use std::io::Write;
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub mod be_alloc;
pub mod bench_time;
pub mod capture;
pub mod display_backend;
pub mod drop_report;
pub mod evtchn;
pub mod frame_copy;
pub mod frontend;
pub mod gntalloc;
pub mod gntdev;
pub mod grant_check;
pub mod grant_map;
pub mod grant_offer;
pub mod input_backend;
pub mod lifecycle;
pub mod xenbus;
