//! `vdispl-grant-check <domid> <gref> <seed>`: what it reads from its arguments, how it judges
//! the page, and every line it prints. The device access is in `gntdev`; this is plain logic.
//!
//! The guest fills a page with `drivers::test_pattern::fill(page, seed)`, grants it read-only to
//! Dom0 and publishes `"<gref> <seed>"` in xenstore (`qemu/dom0/scenarios/services.sh`); this
//! program maps that grant and compares.

use drivers::test_pattern;
use std::fmt;
use std::process::ExitCode;

/// How to call the program.
pub const USAGE: &str = "usage: vdispl-grant-check <domid> <gref> <seed>  (decimal numbers)";

/// DOMID_FIRST_RESERVED (`xen.h`): domain ids from here on are not real domains.
pub const DOMID_FIRST_RESERVED: u32 = 0x7ff0;

/// The exit status when the page matches the pattern.
pub const EXIT_MATCHES: u8 = 0;
/// The exit status when the page differs from the pattern.
pub const EXIT_DIFFERS: u8 = 1;
/// The exit status when the check could not be made (arguments, gntdev).
pub const EXIT_ERROR: u8 = 2;

/// What to check: one grant of one domain, against the pattern of one seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The granting domain.
    pub domid: u32,
    /// Its grant reference.
    pub gref: u32,
    /// The pattern's seed.
    pub seed: u32,
}

/// Reads `<domid> <gref> <seed>` (the arguments after the program name).
pub fn parse_args<I>(args: I) -> Result<Request, String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let args: Vec<I::Item> = args.into_iter().collect();
    let [domid, gref, seed] = args.as_slice() else {
        return Err(format!("expected 3 arguments, got {}", args.len()));
    };
    let domid = number("domid", domid.as_ref())?;
    if domid >= DOMID_FIRST_RESERVED {
        return Err(format!(
            "domid {domid} is reserved (real domains are below {DOMID_FIRST_RESERVED})"
        ));
    }
    Ok(Request {
        domid,
        gref: number("gref", gref.as_ref())?,
        seed: number("seed", seed.as_ref())?,
    })
}

/// A decimal u32, or an error naming the argument.
fn number(name: &str, text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{name} `{text}` is not a decimal number"));
    }
    text.parse()
        .map_err(|_| format!("{name} `{text}` does not fit in 32 bits"))
}

/// How the page compares with the pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every byte is the pattern's.
    Matches {
        /// Bytes compared.
        length: usize,
    },
    /// The first byte that is not.
    Differs {
        /// Its offset in the page.
        offset: usize,
        /// What the page holds there.
        found: u8,
        /// What the pattern says.
        expected: u8,
    },
}

impl Verdict {
    /// The program's exit status for this verdict.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Verdict::Matches { .. } => EXIT_MATCHES,
            Verdict::Differs { .. } => EXIT_DIFFERS,
        })
    }
}

/// Compares `page` with the pattern of `seed`.
pub fn judge(page: &[u8], seed: u32) -> Verdict {
    match test_pattern::first_mismatch(page, seed) {
        None => Verdict::Matches { length: page.len() },
        Some(offset) => Verdict::Differs {
            offset,
            found: page[offset],
            expected: test_pattern::pattern_byte(seed, offset),
        },
    }
}

impl Request {
    /// The line printed for a verdict (`rig: ` lines are what `cargo xtask test` reads).
    pub fn report(&self, verdict: &Verdict) -> String {
        let Request { domid, gref, .. } = self;
        match verdict {
            Verdict::Matches { length } => {
                format!("rig: grant {gref} of domain {domid} matches the pattern ({length} bytes)")
            }
            Verdict::Differs {
                offset,
                found,
                expected,
            } => format!(
                "rig: grant {gref} of domain {domid} differs from the pattern at byte {offset} \
                 (found {found:#04x}, expected {expected:#04x})"
            ),
        }
    }

    /// The line printed when the check could not be made.
    pub fn failure(&self, error: &dyn fmt::Display) -> String {
        format!("rig: grant {} of domain {}: {error}", self.gref, self.domid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_three_decimal_numbers() {
        assert_eq!(
            parse_args(["1", "8", "305419896"]),
            Ok(Request {
                domid: 1,
                gref: 8,
                seed: 305_419_896
            })
        );
        assert_eq!(
            parse_args(["1", "8"]).unwrap_err(),
            "expected 3 arguments, got 2"
        );
        assert_eq!(
            parse_args(["1", "0x8", "1"]).unwrap_err(),
            "gref `0x8` is not a decimal number"
        );
        assert_eq!(
            parse_args(["1", "8", "-1"]).unwrap_err(),
            "seed `-1` is not a decimal number"
        );
        assert_eq!(
            parse_args(["1", "8", "4294967296"]).unwrap_err(),
            "seed `4294967296` does not fit in 32 bits"
        );
        assert_eq!(
            parse_args(["", "8", "1"]).unwrap_err(),
            "domid `` is not a decimal number"
        );
        assert!(parse_args(["32752", "8", "1"])
            .unwrap_err()
            .contains("reserved"));
        assert!(parse_args(["32751", "8", "1"]).is_ok());
    }

    #[test]
    fn the_guest_pattern_matches_and_a_changed_byte_is_found() {
        let mut page = vec![0u8; 4096];
        test_pattern::fill(&mut page, 42);
        assert_eq!(judge(&page, 42), Verdict::Matches { length: 4096 });
        page[4095] ^= 0x80;
        assert_eq!(
            judge(&page, 42),
            Verdict::Differs {
                offset: 4095,
                found: test_pattern::pattern_byte(42, 4095) ^ 0x80,
                expected: test_pattern::pattern_byte(42, 4095),
            }
        );
        assert!(matches!(
            judge(&[0u8; 4096], 42),
            Verdict::Differs { found: 0, .. }
        ));
    }

    #[test]
    fn lines_are_the_ones_the_scenario_expects() {
        let request = Request {
            domid: 3,
            gref: 9,
            seed: 7,
        };
        assert_eq!(
            request.report(&Verdict::Matches { length: 4096 }),
            "rig: grant 9 of domain 3 matches the pattern (4096 bytes)"
        );
        assert_eq!(
            request.report(&Verdict::Differs {
                offset: 12,
                found: 0,
                expected: 0xab
            }),
            "rig: grant 9 of domain 3 differs from the pattern at byte 12 \
             (found 0x00, expected 0xab)"
        );
        assert_eq!(
            request.failure(&"cannot map the grant (mmap PROT_READ MAP_SHARED): EINVAL"),
            "rig: grant 9 of domain 3: cannot map the grant (mmap PROT_READ MAP_SHARED): EINVAL"
        );
        assert_eq!(
            Verdict::Matches { length: 1 }.exit_code(),
            ExitCode::from(EXIT_MATCHES)
        );
    }
}
