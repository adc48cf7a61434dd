//! `vdispl-grant-offer <domid> <seed> [<seconds>]`: grants one page of Dom0's own, filled with
//! the shared test pattern of `seed`, read-only to domain `domid` (0: Dom0 itself) through
//! `/dev/xen/gntalloc`, prints `rig: Dom0 grants <gref> (seed <seed>) to domain <domid> for
//! <seconds> s`, keeps the page for that long (default 30 s), then exits, which ends the grant.
//! Killing it ends the grant as well. Errors: a `rig: Dom0 cannot grant ...` line, exit 2.

use dom0_tools::eprintln_line;
use dom0_tools::gntalloc::GrantedPage;
use dom0_tools::gntdev::GRANT_SIZE;
use dom0_tools::grant_offer::{self, USAGE};
use drivers::test_pattern;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let offer = match grant_offer::parse_args(std::env::args().skip(1)) {
        Ok(offer) => offer,
        Err(message) => {
            eprintln_line!("vdispl-grant-offer: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut page = match GrantedPage::grant_read_only(offer.domid) {
        Ok(page) => page,
        Err(error) => {
            eprintln_line!("{}", offer.failure(&error));
            return ExitCode::from(2);
        }
    };
    let mut pattern = vec![0u8; GRANT_SIZE];
    test_pattern::fill(&mut pattern, offer.seed);
    page.write(&pattern);
    println!("{}", offer.granted(page.gref()));
    // Scripts read the line from a file or a pipe: make sure it is out before the wait.
    let _ = std::io::stdout().flush();
    std::thread::sleep(offer.hold);
    ExitCode::SUCCESS
}
