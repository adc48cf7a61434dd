//! The reader's lines, as the reader prints them and as the host reads them back.
//!
//! ```text
//! evdev: started
//! evdev: module /lib/modules/evdev.ko loaded
//! evdev: device /dev/input/event0: Xen Virtual Keyboard (xenbus/device/vkbd/0)
//! evdev: ready: 5 devices open; reading until key 1 is released on each of the 2 devices that have it
//! evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 1 30 1
//! evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 0 0 0
//! evdev: same time: the next 2 reports carry one timestamp (12.345678 s); their order between devices is unknown
//! evdev: summary: 41 events in 17 reports; ...
//! evdev: failed: <what failed>
//! evdev: powering off
//! ```
//!
//! A device is named by its label, `<name> (<phys>)` (`EVIOCGNAME`, `EVIOCGPHYS`): every
//! xen-kbdfront device of one vkbd device has the same phys (`xenbus/device/vkbd/<id>`), and
//! every vkbd device has devices of the same names. An event line is the label, then the type,
//! code and value in decimal. The reader prints whole reports (a device's events up to and
//! including its `EV_SYN SYN_REPORT`) ordered by their timestamps; reports of different devices
//! that carry the same timestamp are announced by a `same time` line, since nothing tells in
//! which order the kernel produced them.

use crate::codes;
use std::fmt;
use std::ops::Range;

/// What every line of the reader starts with.
pub const PREFIX: &str = "evdev: ";
/// The start of the line saying the reader is ready (every device open).
pub const READY: &str = "evdev: ready: ";
/// The start of a failure line.
pub const FAILED: &str = "evdev: failed: ";
/// The reader's last line before it powers the domain off.
pub const POWERING_OFF: &str = "evdev: powering off";

/// One evdev event (`struct input_event` without its timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    /// `EV_*`.
    pub kind: u16,
    /// The code within the type.
    pub code: u16,
    /// The value.
    pub value: i32,
}

impl Event {
    /// An event.
    pub const fn new(kind: u16, code: u16, value: i32) -> Event {
        Event { kind, code, value }
    }

    /// `EV_SYN SYN_REPORT 0`, the end of a report the driver asked for.
    pub const fn report() -> Event {
        Event::new(codes::EV_SYN, codes::SYN_REPORT, 0)
    }

    /// Whether this ends a report.
    pub fn ends_report(&self) -> bool {
        self.kind == codes::EV_SYN && self.code == codes::SYN_REPORT
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&codes::describe(self.kind, self.code, self.value))
    }
}

/// A device's events up to and including its `SYN_REPORT`: what the kernel hands its readers at
/// once, with one timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The device's label ([`device_label`]).
    pub device: String,
    /// The events, the last one ending the report.
    pub events: Vec<Event>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.device)?;
        for (index, event) in self.events.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{event}")?;
        }
        Ok(())
    }
}

/// `<name> (<phys>)`.
pub fn device_label(name: &str, phys: &str) -> String {
    format!("{name} ({phys})")
}

/// The phys of a label: the text in its last parentheses.
pub fn phys_of(label: &str) -> Option<&str> {
    let inner = label.strip_suffix(')')?;
    let (_, phys) = inner.rsplit_once(" (")?;
    Some(phys)
}

/// `evdev: <label> <type> <code> <value>`.
pub fn event_line(device: &str, event: &Event) -> String {
    format!(
        "{PREFIX}{device} {} {} {}",
        event.kind, event.code, event.value
    )
}

/// `evdev: device <node>: <label>`.
pub fn device_line(node: &str, label: &str) -> String {
    format!("{PREFIX}device {node}: {label}")
}

/// The ready line: how many devices are open, and what ends the reading.
pub fn ready_line(devices: usize, end_key: u16, ending: usize) -> String {
    format!(
        "{READY}{devices} devices open; reading until key {end_key} is released on each of the \
         {ending} devices that have it"
    )
}

/// The line before `count` reports that carry one timestamp.
pub fn same_time_line(count: usize, seconds: i64, microseconds: i64) -> String {
    format!(
        "{PREFIX}same time: the next {count} reports carry one timestamp ({seconds}.{microseconds:06} \
         s); their order between devices is unknown"
    )
}

/// A line the reader printed, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// An event of a device.
    Event {
        /// The device's label.
        device: String,
        /// The event.
        event: Event,
    },
    /// A device was opened.
    Device {
        /// Its node.
        node: String,
        /// Its label.
        label: String,
    },
    /// Every device is open.
    Ready,
    /// The next reports carry one timestamp.
    SameTime {
        /// How many.
        count: usize,
    },
    /// Something failed.
    Failed(String),
    /// The summary.
    Summary(String),
    /// The reader is powering the domain off.
    PoweringOff,
    /// Any other line of the reader (started, module loaded, ...).
    Other(String),
}

impl Line {
    /// Reads one line (the reader's text, without any prefix the log adds); `None` for a line
    /// that is not the reader's.
    pub fn parse(text: &str) -> Option<Line> {
        let rest = text.trim_end().strip_prefix(PREFIX)?;
        if let Some(reason) = rest.strip_prefix("failed: ") {
            return Some(Line::Failed(reason.to_string()));
        }
        if rest.starts_with("ready: ") {
            return Some(Line::Ready);
        }
        if let Some(summary) = rest.strip_prefix("summary: ") {
            return Some(Line::Summary(summary.to_string()));
        }
        if rest == "powering off" {
            return Some(Line::PoweringOff);
        }
        if let Some(same) = rest.strip_prefix("same time: the next ") {
            let count = same.split_whitespace().next()?.parse().ok()?;
            return Some(Line::SameTime { count });
        }
        if let Some(device) = rest.strip_prefix("device ") {
            let (node, label) = device.split_once(": ")?;
            return Some(Line::Device {
                node: node.to_string(),
                label: label.to_string(),
            });
        }
        let mut words = rest.rsplitn(4, ' ');
        let parsed = (|| {
            let value = words.next()?.parse().ok()?;
            let code = words.next()?.parse().ok()?;
            let kind = words.next()?.parse().ok()?;
            let device = words.next().filter(|device| phys_of(device).is_some())?;
            Some(Line::Event {
                device: device.to_string(),
                event: Event::new(kind, code, value),
            })
        })();
        Some(parsed.unwrap_or_else(|| Line::Other(rest.to_string())))
    }
}

/// Everything the reader printed, read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderLog {
    /// The labels of the devices it opened, in order.
    pub devices: Vec<String>,
    /// It said it was ready.
    pub ready: bool,
    /// Its reports, in the order it printed them.
    pub reports: Vec<Report>,
    /// Runs of [`ReaderLog::reports`] that carry one timestamp.
    pub same_time: Vec<Range<usize>>,
    /// Events after a device's last report end (none when the reader stopped cleanly).
    pub incomplete: Vec<Report>,
    /// Its failure lines.
    pub failures: Vec<String>,
    /// Its summary line.
    pub summary: Option<String>,
    /// It said it was powering off.
    pub powering_off: bool,
    /// Events, per device, not yet ended by a `SYN_REPORT`.
    pending: Vec<Report>,
    /// A `same time` line announced this many reports, from this one.
    pending_same: Option<(usize, usize)>,
}

impl ReaderLog {
    /// Reads the reader's lines out of `lines` (other lines are skipped); events left without
    /// their `SYN_REPORT` at the end go to [`ReaderLog::incomplete`].
    pub fn read<'a>(lines: impl IntoIterator<Item = &'a str>) -> ReaderLog {
        let mut log = ReaderLog::default();
        for line in lines {
            if let Some(line) = Line::parse(line) {
                log.take(line);
            }
        }
        log.incomplete = std::mem::take(&mut log.pending);
        if let Some((start, _)) = log.pending_same.take() {
            if start < log.reports.len() {
                log.same_time.push(start..log.reports.len());
            }
        }
        log
    }

    fn take(&mut self, line: Line) {
        match line {
            Line::Event { device, event } => {
                let index = match self.pending.iter().position(|r| r.device == device) {
                    Some(index) => index,
                    None => {
                        self.pending.push(Report {
                            device,
                            events: Vec::new(),
                        });
                        self.pending.len() - 1
                    }
                };
                self.pending[index].events.push(event);
                if event.ends_report() {
                    let report = self.pending.remove(index);
                    self.reports.push(report);
                    if let Some((start, count)) = self.pending_same {
                        if self.reports.len() >= start + count {
                            self.same_time.push(start..start + count);
                            self.pending_same = None;
                        }
                    }
                }
            }
            Line::Device { label, .. } => self.devices.push(label),
            Line::Ready => self.ready = true,
            Line::SameTime { count } => {
                if let Some((start, _)) = self.pending_same.take() {
                    if start < self.reports.len() {
                        self.same_time.push(start..self.reports.len());
                    }
                }
                if count > 1 {
                    self.pending_same = Some((self.reports.len(), count));
                }
            }
            Line::Failed(reason) => self.failures.push(reason),
            Line::Summary(summary) => self.summary = Some(summary),
            Line::PoweringOff => self.powering_off = true,
            Line::Other(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::*;

    const KEYBOARD: &str = "Xen Virtual Keyboard (xenbus/device/vkbd/0)";
    const POINTER: &str = "Xen Virtual Pointer (xenbus/device/vkbd/0)";

    #[test]
    fn lines_read_back_as_printed() {
        let key = Event::new(EV_KEY, 30, 1);
        let line = event_line(KEYBOARD, &key);
        assert_eq!(
            line,
            "evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 1 30 1"
        );
        assert_eq!(
            Line::parse(&line),
            Some(Line::Event {
                device: KEYBOARD.to_string(),
                event: key
            })
        );
        let minus = event_line(POINTER, &Event::new(EV_REL, REL_WHEEL, -2));
        assert_eq!(
            Line::parse(&minus),
            Some(Line::Event {
                device: POINTER.to_string(),
                event: Event::new(EV_REL, REL_WHEEL, -2)
            })
        );
        assert_eq!(
            Line::parse(&device_line("/dev/input/event3", KEYBOARD)),
            Some(Line::Device {
                node: "/dev/input/event3".to_string(),
                label: KEYBOARD.to_string()
            })
        );
        assert_eq!(Line::parse(&ready_line(5, 1, 2)), Some(Line::Ready));
        assert_eq!(
            Line::parse(&same_time_line(3, 12, 45)),
            Some(Line::SameTime { count: 3 })
        );
        assert!(same_time_line(3, 12, 45).contains("(12.000045 s)"));
        assert_eq!(
            Line::parse("evdev: failed: open /dev/input/event0: ENOENT"),
            Some(Line::Failed("open /dev/input/event0: ENOENT".to_string()))
        );
        assert_eq!(Line::parse(POWERING_OFF), Some(Line::PoweringOff));
        assert_eq!(
            Line::parse("evdev: started"),
            Some(Line::Other("started".to_string()))
        );
        // Three numbers after something that is no label.
        assert_eq!(
            Line::parse("evdev: odd 1 2 3"),
            Some(Line::Other("odd 1 2 3".to_string()))
        );
        assert_eq!(Line::parse("[    1.0] input: Xen Virtual Keyboard"), None);
        assert_eq!(phys_of(KEYBOARD), Some("xenbus/device/vkbd/0"));
        assert_eq!(phys_of("Keyboard"), None);
    }

    #[test]
    fn reports_are_cut_at_their_syn_report_and_same_time_runs_kept() {
        let text = [
            "evdev: device /dev/input/event0: Xen Virtual Keyboard (xenbus/device/vkbd/0)",
            "evdev: device /dev/input/event1: Xen Virtual Pointer (xenbus/device/vkbd/0)",
            "evdev: ready: 2 devices open; reading until ...",
            "some kernel line",
            "evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 1 30 1",
            "evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 0 0 0",
            "evdev: same time: the next 2 reports carry one timestamp (1.000002 s); ...",
            "evdev: Xen Virtual Pointer (xenbus/device/vkbd/0) 1 272 1",
            "evdev: Xen Virtual Pointer (xenbus/device/vkbd/0) 0 0 0",
            "evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 1 30 0",
            "evdev: Xen Virtual Keyboard (xenbus/device/vkbd/0) 0 0 0",
            "evdev: Xen Virtual Pointer (xenbus/device/vkbd/0) 1 272 0",
            "evdev: summary: 4 reports",
            "evdev: powering off",
        ];
        let log = ReaderLog::read(text);
        assert_eq!(log.devices, [KEYBOARD, POINTER]);
        assert!(log.ready && log.powering_off);
        assert_eq!(log.reports.len(), 3);
        assert_eq!(
            log.reports[1],
            Report {
                device: POINTER.to_string(),
                events: vec![Event::new(EV_KEY, BTN_LEFT, 1), Event::report()]
            }
        );
        assert_eq!(log.same_time, vec![Range { start: 1, end: 3 }]);
        assert_eq!(
            log.incomplete,
            [Report {
                device: POINTER.to_string(),
                events: vec![Event::new(EV_KEY, BTN_LEFT, 0)]
            }]
        );
        assert_eq!(log.summary.as_deref(), Some("4 reports"));
        assert!(log.failures.is_empty());
        assert_eq!(
            log.reports[0].to_string(),
            "Xen Virtual Keyboard (xenbus/device/vkbd/0): EV_KEY KEY_A 1, EV_SYN SYN_REPORT 0"
        );
    }
}
