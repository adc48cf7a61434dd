//! `vdispl-grant-check <domid> <gref> <seed>`: maps one page that domain `domid` granted
//! read-only to Dom0 (grant reference `gref`) through `/dev/xen/gntdev`, compares its 4096 bytes
//! with the shared test pattern of `seed`, and unmaps it before exiting.
//!
//! Prints `rig: grant <gref> of domain <domid> matches the pattern (4096 bytes)` (exit 0),
//! `rig: grant <gref> of domain <domid> differs from the pattern at byte <n> (...)` (exit 1), or
//! `rig: grant <gref> of domain <domid>: cannot <step>: <error>` (exit 2; bad arguments too).

use dom0_tools::eprintln_line;
use dom0_tools::gntdev::{self, Gntdev, GrantRef};
use dom0_tools::grant_check::{self, Request, Verdict, EXIT_ERROR, USAGE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let request = match grant_check::parse_args(std::env::args().skip(1)) {
        Ok(request) => request,
        Err(message) => {
            eprintln_line!("vdispl-grant-check: {message}\n{USAGE}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match check(&request) {
        Ok(verdict) => {
            println!("{}", request.report(&verdict));
            verdict.exit_code()
        }
        Err(error) => {
            eprintln_line!("{}", request.failure(&error));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Maps, copies, unmaps (so that the guest can end its grant), then judges the copy.
fn check(request: &Request) -> Result<Verdict, gntdev::Error> {
    let device = Gntdev::open()?;
    let mapping = device.map_read_only(GrantRef {
        domid: request.domid,
        gref: request.gref,
    })?;
    let page = mapping.copy();
    mapping.unmap()?;
    Ok(grant_check::judge(&page, request.seed))
}
