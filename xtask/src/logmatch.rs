//! Reading the serial log: strip the prefixes Xen and the rig put on guest lines, then look for
//! expected lines. Pure functions, so the rules are unit-tested without QEMU.
//!
//! An expected line matches when a log line, once its prefixes are stripped, *starts with* it:
//! `report: gic v3` matches `(XEN) DOM1: report: gic v3 distributor 0x3001000+0x10000`.

/// Prefixes the rig's Dom0 scripts put on lines copied from the guest's console logs
/// (`qemu/dom0/lib.sh`).
pub const RIG_PREFIXES: &[&str] = &["guest-console: ", "guest-vuart: "];

/// Removes, repeatedly, the prefixes that come before a guest's own text on the serial console:
/// carriage returns, Xen's `(XEN) `, a domain tag `(d1) ` or `DOM1: ` (Xen's vpl011 and
/// console_io output), and the rig's [`RIG_PREFIXES`].
pub fn strip_prefixes(line: &str) -> &str {
    let mut line = line.trim_end_matches(['\r', '\n']);
    loop {
        let before = line.len();
        line = line.trim_start_matches('\r');
        if let Some(rest) = line.strip_prefix("(XEN) ") {
            line = rest;
        }
        if let Some(rest) = strip_domain_tag(line) {
            line = rest;
        }
        for prefix in RIG_PREFIXES {
            if let Some(rest) = line.strip_prefix(prefix) {
                line = rest;
            }
        }
        if line.len() == before {
            return line;
        }
    }
}

/// Strips `(dN) ` or `DOMN: ` where N is a decimal domain id.
fn strip_domain_tag(line: &str) -> Option<&str> {
    let (digits_and_rest, close) = if let Some(rest) = line.strip_prefix("(d") {
        (rest, ") ")
    } else if let Some(rest) = line.strip_prefix("DOM") {
        (rest, ": ")
    } else {
        return None;
    };
    let digits = digits_and_rest
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits == 0 {
        return None;
    }
    digits_and_rest[digits..].strip_prefix(close)
}

/// Tracks which expected lines a stream of log lines has shown so far.
#[derive(Debug, Clone)]
pub struct Expectations {
    expected: Vec<String>,
    found: Vec<bool>,
}

impl Expectations {
    /// Starts with nothing found.
    pub fn new(expected: Vec<String>) -> Self {
        let found = vec![false; expected.len()];
        Self { expected, found }
    }

    /// Looks at one log line; returns true if it matched an expected line not seen before.
    pub fn feed(&mut self, line: &str) -> bool {
        let text = strip_prefixes(line);
        let mut matched = false;
        for (expected, found) in self.expected.iter().zip(self.found.iter_mut()) {
            if !*found && text.starts_with(expected.as_str()) {
                *found = true;
                matched = true;
            }
        }
        matched
    }

    /// True once every expected line was seen.
    pub fn complete(&self) -> bool {
        self.found.iter().all(|&found| found)
    }

    /// The expected lines not seen yet, in their original order.
    pub fn missing(&self) -> Vec<&str> {
        self.expected
            .iter()
            .zip(&self.found)
            .filter(|(_, &found)| !found)
            .map(|(expected, _)| expected.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The expected lines that no line of `log` shows, in their original order.
    fn missing_lines(log: &str, expected: &[String]) -> Vec<String> {
        let mut expectations = Expectations::new(expected.to_vec());
        for line in log.lines() {
            expectations.feed(line);
        }
        expectations
            .missing()
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn xen_and_domain_prefixes_are_stripped() {
        assert_eq!(strip_prefixes("(XEN) DOM1: report: end\r"), "report: end");
        assert_eq!(strip_prefixes("(d1) report: end"), "report: end");
        assert_eq!(strip_prefixes("(XEN) (d12) report: end"), "report: end");
        assert_eq!(
            strip_prefixes("\r(XEN) Xen version 4.17"),
            "Xen version 4.17"
        );
        assert_eq!(
            strip_prefixes("guest-console: vdispl-os: powering off"),
            "vdispl-os: powering off"
        );
        assert_eq!(
            strip_prefixes("guest-vuart: (d1) report: end"),
            "report: end"
        );
    }

    #[test]
    fn look_alikes_are_kept() {
        assert_eq!(strip_prefixes("(dx) report"), "(dx) report");
        assert_eq!(strip_prefixes("DOMAIN: x"), "DOMAIN: x");
        assert_eq!(strip_prefixes("(d) x"), "(d) x");
        assert_eq!(strip_prefixes("  report: end"), "  report: end");
    }

    #[test]
    fn expected_lines_match_by_prefix_in_any_order() {
        let log = "(XEN) Xen version 4.17.7\n\
                   (XEN) DOM1: report: gic v3 distributor 0x3001000+0x10000\r\n\
                   (XEN) DOM1: report: xen-version 4.17.7\n\
                   rig: guest vdispl-os gone after 812 ms\n";
        let expected = lines(&[
            "report: xen-version 4.17",
            "report: gic v3",
            "rig: guest vdispl-os gone after ",
        ]);
        assert!(missing_lines(log, &expected).is_empty());
    }

    #[test]
    fn missing_lines_are_reported_in_order() {
        let log = "(d1) report: gic v2 distributor 0x3001000+0x1000\n";
        let expected = lines(&["report: gic v3", "report: gic v2", "report: end"]);
        assert_eq!(
            missing_lines(log, &expected),
            ["report: gic v3", "report: end"]
        );
    }

    #[test]
    fn a_match_must_start_the_line() {
        let expected = lines(&["report: end"]);
        assert_eq!(
            missing_lines("Dom0 says: report: end\n", &expected),
            ["report: end"]
        );
    }

    #[test]
    fn incremental_feeding_tracks_progress() {
        let mut expectations = Expectations::new(lines(&["a", "b"]));
        assert!(!expectations.feed("x"));
        assert!(expectations.feed("(XEN) a"));
        assert!(!expectations.feed("(XEN) a"));
        assert!(!expectations.complete());
        assert!(expectations.feed("DOM3: b"));
        assert!(expectations.complete());
    }
}
