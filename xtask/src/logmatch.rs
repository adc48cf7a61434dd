//! Reading the serial log: strip the prefixes Xen and the rig put on guest lines, then look for
//! expected lines. Pure functions, so the rules are unit-tested without QEMU.
//!
//! An expected line is a [`Pattern`]. Most match when a log line, once its prefixes are stripped,
//! *starts with* their text: `report: gic v3` matches
//! `(XEN) DOM1: report: gic v3 distributor 0x3001000+0x10000`. Some match their text *anywhere*
//! in the stripped line: `FAR_EL1 0x0000000010000000` matches
//! `ELR_EL1 0x00000000400039bc  FAR_EL1 0x0000000010000000  SPSR_EL1 0x600003c5 ...`.

use std::borrow::Cow;
use std::fmt;

/// Prefixes the rig's Dom0 scripts put on lines copied from the guest's console logs and from
/// xl's log of the guest (`qemu/dom0/lib.sh`).
pub const RIG_PREFIXES: &[&str] = &["guest-console: ", "guest-vuart: ", "xl-log: "];

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

/// Splits one line read from the serial console where a Xen line began in the middle of it.
///
/// Xen prints its own lines and other domains' whole lines (`(XEN) ...`, `(d1) ...`) at once,
/// but Dom0's console output reaches the serial port as it is written: Linux sends a line's text
/// and its `\r\n` in separate writes, so a Xen line can land between them and share Dom0's
/// line, as in `rig: init-dom0less done after 1400 ms(XEN) DOM1: selftest: evtchn loopback ok`.
/// Each part starts at `(XEN) ` or at a domain tag `(dN) ` (one that follows `(XEN) ` stays with
/// it); the first part is what came before.
pub fn split_xen_lines(line: &str) -> Vec<&str> {
    let mut starts = vec![0];
    for (index, _) in line.char_indices().skip(1) {
        let rest = &line[index..];
        let xen = rest.starts_with("(XEN) ");
        let tag = rest.starts_with("(d")
            && strip_domain_tag(rest).is_some()
            && !line[..index].ends_with("(XEN) ");
        if xen || tag {
            starts.push(index);
        }
    }
    starts.push(line.len());
    starts
        .windows(2)
        .map(|bounds| &line[bounds[0]..bounds[1]])
        .collect()
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

/// Where in a stripped log line a [`Pattern`]'s text must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// At the start of the line.
    Start,
    /// Anywhere in the line.
    Anywhere,
}

/// One expected line: a text and where it must appear in a stripped log line.
///
/// `const` constructors let scenario tables be plain data; owned texts (built at run time, such
/// as `report: gic v3`) use [`Pattern::start_owned`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: Cow<'static, str>,
    position: Position,
}

impl Pattern {
    /// Matches stripped lines that start with `text`.
    pub const fn start(text: &'static str) -> Self {
        Self {
            text: Cow::Borrowed(text),
            position: Position::Start,
        }
    }

    /// Matches stripped lines that contain `text` anywhere.
    pub const fn anywhere(text: &'static str) -> Self {
        Self {
            text: Cow::Borrowed(text),
            position: Position::Anywhere,
        }
    }

    /// Matches stripped lines that start with `text`, built at run time.
    pub fn start_owned(text: String) -> Self {
        Self {
            text: Cow::Owned(text),
            position: Position::Start,
        }
    }

    /// True if the already stripped line `text` shows this pattern.
    pub fn matches(&self, text: &str) -> bool {
        match self.position {
            Position::Start => text.starts_with(self.text.as_ref()),
            Position::Anywhere => text.contains(self.text.as_ref()),
        }
    }
}

impl fmt::Display for Pattern {
    /// `` `text` `` for a line start, `` `…text…` `` for text anywhere in a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Position::Start => write!(f, "`{}`", self.text),
            Position::Anywhere => write!(f, "`…{}…`", self.text),
        }
    }
}

/// Tracks which expected lines a stream of log lines has shown so far.
#[derive(Debug, Clone)]
pub struct Expectations {
    expected: Vec<Pattern>,
    found: Vec<bool>,
}

impl Expectations {
    /// Starts with nothing found.
    pub fn new(expected: Vec<Pattern>) -> Self {
        let found = vec![false; expected.len()];
        Self { expected, found }
    }

    /// Looks at one log line; returns true if it matched an expected line not seen before.
    pub fn feed(&mut self, line: &str) -> bool {
        let text = strip_prefixes(line);
        let mut matched = false;
        for (expected, found) in self.expected.iter().zip(self.found.iter_mut()) {
            if !*found && expected.matches(text) {
                *found = true;
                matched = true;
            }
        }
        matched
    }

    /// True if some expected line (seen already or not) matches the stripped line `text`.
    pub fn expects(&self, text: &str) -> bool {
        self.expected.iter().any(|expected| expected.matches(text))
    }

    /// True once every expected line was seen.
    pub fn complete(&self) -> bool {
        self.found.iter().all(|&found| found)
    }

    /// The expected lines not seen yet, in their original order.
    pub fn missing(&self) -> Vec<&Pattern> {
        self.expected
            .iter()
            .zip(&self.found)
            .filter(|(_, &found)| !found)
            .map(|(expected, _)| expected)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(list: &[&'static str]) -> Vec<Pattern> {
        list.iter().map(|s| Pattern::start(s)).collect()
    }

    /// The texts of the expected lines that no line of `log` shows, in their original order.
    fn missing_lines(log: &str, expected: &[Pattern]) -> Vec<String> {
        let mut expectations = Expectations::new(expected.to_vec());
        for line in log.lines() {
            expectations.feed(line);
        }
        expectations
            .missing()
            .into_iter()
            .map(|pattern| pattern.text.to_string())
            .collect()
    }

    #[test]
    fn a_xen_line_inside_a_dom0_line_is_split_off() {
        assert_eq!(
            split_xen_lines(
                "rig: init-dom0less done after 1400 ms(XEN) DOM1: selftest: evtchn loopback ok"
            ),
            [
                "rig: init-dom0less done after 1400 ms",
                "(XEN) DOM1: selftest: evtchn loopback ok"
            ]
        );
        assert_eq!(
            split_xen_lines("Name   ID(d1) selftest: timer ok\r"),
            ["Name   ID", "(d1) selftest: timer ok\r"]
        );
        assert_eq!(
            split_xen_lines("(XEN) (d1) report: end"),
            ["(XEN) (d1) report: end"]
        );
        // Not a domain tag: no digits, or no space after the parenthesis.
        assert_eq!(
            split_xen_lines("size (dx) and (d1)x"),
            ["size (dx) and (d1)x"]
        );
        assert_eq!(split_xen_lines(""), [""]);
        let mut expectations = Expectations::new(lines(&["selftest: evtchn loopback ok"]));
        for part in split_xen_lines("rig: done(XEN) DOM1: selftest: evtchn loopback ok (ports)") {
            expectations.feed(part);
        }
        assert!(expectations.complete());
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

    #[test]
    fn anywhere_patterns_match_inside_a_line() {
        let log = "(XEN) DOM1: ESR_EL1 0x96000006 (data abort at the current EL, ISS 0x6)\n\
                   (XEN) DOM1: ELR_EL1 0x00000000400039bc  FAR_EL1 0x0000000010000000  \
                   SPSR_EL1 0x600003c5  SP 0x00000000400419b0\n\
                   (XEN) DOM1: x28 0x0000000000000000  x29 0x0000000040041a00\n";
        let expected = vec![
            Pattern::start("ESR_EL1 "),
            Pattern::anywhere("data abort at the current EL"),
            Pattern::anywhere("FAR_EL1 0x0000000010000000"),
            Pattern::start("x28 "),
            Pattern::anywhere("FAR_EL1 0x0000000000000000"),
        ];
        assert_eq!(
            missing_lines(log, &expected),
            ["FAR_EL1 0x0000000000000000"]
        );
    }

    #[test]
    fn anywhere_patterns_look_past_the_stripped_prefixes_only() {
        // The text must be in the guest's own text, not in the prefixes the rig strips.
        let pattern = Pattern::anywhere("DOM1");
        assert!(!pattern.matches(strip_prefixes("(XEN) DOM1: report: end")));
        assert!(pattern.matches(strip_prefixes("(XEN) DOM1: created DOM1")));
    }

    #[test]
    fn expects_tells_whether_a_line_is_wanted() {
        let mut expectations = Expectations::new(vec![
            Pattern::start("vdispl-os: panic at "),
            Pattern::anywhere("crash requested by the bootargs"),
        ]);
        let line =
            "vdispl-os: panic at kernel/src/guest/init.rs:209: crash requested by the bootargs";
        assert!(expectations.expects(line));
        assert!(expectations.feed(line));
        assert!(expectations.expects(line), "still expected once seen");
        assert!(expectations.complete());
        assert!(!expectations.expects("vdispl-os: unexpected Synchronous exception"));
    }

    #[test]
    fn patterns_display_where_they_match() {
        assert_eq!(Pattern::start("report: end").to_string(), "`report: end`");
        assert_eq!(Pattern::anywhere("x28").to_string(), "`…x28…`");
        assert_eq!(
            Pattern::start_owned(format!("report: gic v{}", 3)),
            Pattern::start("report: gic v3")
        );
    }
}
