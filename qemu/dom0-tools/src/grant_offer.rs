//! `vdispl-grant-offer <domid> <seed> [<seconds>]`: its arguments and lines. Dom0 grants one
//! page of its own, filled with the shared test pattern of `seed`, read-only to `domid`, and
//! keeps it for `seconds`: a stand-in for the guest's side of the grant test, so that
//! `vdispl-grant-check` can be tried with Dom0 alone (`domid` 0: Dom0 maps its own grant).

use crate::grant_check::DOMID_FIRST_RESERVED;
use std::fmt;
use std::time::Duration;

/// How to call the program.
pub const USAGE: &str =
    "usage: vdispl-grant-offer <domid> <seed> [<seconds>]  (decimal numbers; seconds: 1-3600, default 30)";

/// How long the page stays granted unless told otherwise.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(30);

/// The longest hold accepted: every wait in the rig is bounded.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// What to grant, to whom, for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The domain given read-only access.
    pub domid: u16,
    /// The pattern's seed.
    pub seed: u32,
    /// How long the page stays granted before the program exits (which ends the grant).
    pub hold: Duration,
}

/// Reads `<domid> <seed> [<seconds>]` (the arguments after the program name).
pub fn parse_args<I>(args: I) -> Result<Offer, String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let args: Vec<I::Item> = args.into_iter().collect();
    let (domid, seed, seconds) = match args.as_slice() {
        [domid, seed] => (domid.as_ref(), seed.as_ref(), None),
        [domid, seed, seconds] => (domid.as_ref(), seed.as_ref(), Some(seconds.as_ref())),
        _ => return Err(format!("expected 2 or 3 arguments, got {}", args.len())),
    };
    let domid = decimal("domid", domid)?;
    if domid >= DOMID_FIRST_RESERVED {
        return Err(format!(
            "domid {domid} is reserved (real domains are below {DOMID_FIRST_RESERVED})"
        ));
    }
    let hold = match seconds {
        None => DEFAULT_HOLD,
        Some(text) => {
            let seconds = decimal("seconds", text)?;
            if seconds == 0 || u64::from(seconds) > MAX_HOLD.as_secs() {
                return Err(format!(
                    "seconds {seconds} is not between 1 and {}",
                    MAX_HOLD.as_secs()
                ));
            }
            Duration::from_secs(seconds.into())
        }
    };
    Ok(Offer {
        domid: u16::try_from(domid).map_err(|_| format!("domid {domid} does not fit"))?,
        seed: decimal("seed", seed)?,
        hold,
    })
}

/// A decimal u32, or an error naming the argument.
fn decimal(name: &str, text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{name} `{text}` is not a decimal number"));
    }
    text.parse()
        .map_err(|_| format!("{name} `{text}` does not fit in 32 bits"))
}

impl Offer {
    /// The line printed once the page is granted; scripts take the reference from it.
    pub fn granted(&self, gref: u32) -> String {
        format!(
            "rig: Dom0 grants {gref} (seed {}) to domain {} for {} s",
            self.seed,
            self.domid,
            self.hold.as_secs()
        )
    }

    /// The line printed when the page could not be granted.
    pub fn failure(&self, error: &dyn fmt::Display) -> String {
        format!(
            "rig: Dom0 cannot grant a page to domain {}: {error}",
            self.domid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_domid_seed_and_optional_seconds() {
        assert_eq!(
            parse_args(["0", "1234"]),
            Ok(Offer {
                domid: 0,
                seed: 1234,
                hold: DEFAULT_HOLD
            })
        );
        assert_eq!(
            parse_args(["3", "1", "5"]).unwrap().hold,
            Duration::from_secs(5)
        );
        assert_eq!(
            parse_args(["0"]).unwrap_err(),
            "expected 2 or 3 arguments, got 1"
        );
        assert!(parse_args(["0", "1", "0"])
            .unwrap_err()
            .contains("between 1 and 3600"));
        assert!(parse_args(["0", "1", "3601"])
            .unwrap_err()
            .contains("between 1 and 3600"));
        assert!(parse_args(["32752", "1"]).unwrap_err().contains("reserved"));
        assert_eq!(
            parse_args(["0", "0x10"]).unwrap_err(),
            "seed `0x10` is not a decimal number"
        );
    }

    #[test]
    fn lines_name_the_grant() {
        let offer = Offer {
            domid: 0,
            seed: 77,
            hold: Duration::from_secs(30),
        };
        assert_eq!(
            offer.granted(9),
            "rig: Dom0 grants 9 (seed 77) to domain 0 for 30 s"
        );
        assert_eq!(
            offer.failure(&"cannot open /dev/xen/gntalloc: No such file or directory"),
            "rig: Dom0 cannot grant a page to domain 0: cannot open /dev/xen/gntalloc: \
             No such file or directory"
        );
    }
}
