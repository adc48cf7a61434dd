//! What the reader does with the events it reads: each device's events gathered into reports
//! (up to and including its `SYN_REPORT`), the end key's release noted per device, and in the
//! end every report put in timestamp order, reports of different devices with one timestamp
//! marked as such.

use crate::codes::EV_KEY;
use crate::output::Event;
use crate::raw::Stamped;

/// A report of one device with the timestamp evdev gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedReport {
    /// Seconds.
    pub seconds: i64,
    /// Microseconds.
    pub microseconds: i64,
    /// The device's index among those read.
    pub device: usize,
    /// Its events.
    pub events: Vec<Event>,
}

/// Reports with one timestamp, in the order they were read per device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The reports.
    pub reports: Vec<TimedReport>,
    /// More than one device has reports in the run: their order between devices is unknown.
    pub same_time: bool,
}

/// Gathers the events of `devices` devices.
#[derive(Clone, Debug)]
pub struct Collector {
    end_key: u16,
    pending: Vec<Vec<Event>>,
    ended: Vec<bool>,
    reports: Vec<TimedReport>,
    events: usize,
}

impl Collector {
    /// A collector for `devices` devices, ending on the release of `end_key`.
    pub fn new(devices: usize, end_key: u16) -> Collector {
        Collector {
            end_key,
            pending: vec![Vec::new(); devices],
            ended: vec![false; devices],
            reports: Vec::new(),
            events: 0,
        }
    }

    /// One event read from `device`.
    pub fn take(&mut self, device: usize, stamped: Stamped) {
        let Some(pending) = self.pending.get_mut(device) else {
            return;
        };
        self.events += 1;
        pending.push(stamped.event);
        if !stamped.event.ends_report() {
            return;
        }
        let events = std::mem::take(pending);
        if events
            .iter()
            .any(|event| *event == Event::new(EV_KEY, self.end_key, 0))
        {
            self.ended[device] = true;
        }
        self.reports.push(TimedReport {
            seconds: stamped.seconds,
            microseconds: stamped.microseconds,
            device,
            events,
        });
    }

    /// Whether `device` has reported the end key's release.
    pub fn ended(&self, device: usize) -> bool {
        self.ended.get(device).copied().unwrap_or(false)
    }

    /// Events taken so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Reports so far.
    pub fn reports(&self) -> usize {
        self.reports.len()
    }

    /// The reports in timestamp order (a device's own in the order read), as runs of one
    /// timestamp; and per device the events after its last report.
    pub fn finish(self) -> (Vec<Run>, Vec<(usize, Vec<Event>)>) {
        let mut reports = self.reports;
        reports.sort_by_key(|report| (report.seconds, report.microseconds));
        let mut runs: Vec<Run> = Vec::new();
        for report in reports {
            match runs.last_mut() {
                Some(run)
                    if run.reports[0].seconds == report.seconds
                        && run.reports[0].microseconds == report.microseconds =>
                {
                    run.same_time |= run.reports.iter().any(|r| r.device != report.device);
                    run.reports.push(report);
                }
                _ => runs.push(Run {
                    reports: vec![report],
                    same_time: false,
                }),
            }
        }
        let incomplete = self
            .pending
            .into_iter()
            .enumerate()
            .filter(|(_, events)| !events.is_empty())
            .collect();
        (runs, incomplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::*;

    fn at(seconds: i64, microseconds: i64, event: Event) -> Stamped {
        Stamped {
            seconds,
            microseconds,
            event,
        }
    }

    #[test]
    fn reports_end_at_syn_report_and_are_ordered_by_time() {
        let mut collector = Collector::new(3, KEY_ESC);
        let key = |value| Event::new(EV_KEY, KEY_ESC, value);
        // Device 1 read first, though device 0's reports are older.
        collector.take(1, at(1, 500, Event::new(EV_REL, REL_X, 4)));
        collector.take(1, at(1, 500, Event::report()));
        collector.take(0, at(1, 100, key(1)));
        collector.take(0, at(1, 100, Event::report()));
        collector.take(0, at(1, 500, key(0)));
        collector.take(0, at(1, 500, Event::report()));
        collector.take(2, at(2, 0, Event::new(EV_ABS, ABS_X, 1)));
        assert!(collector.ended(0) && !collector.ended(1) && !collector.ended(7));
        assert_eq!((collector.events(), collector.reports()), (7, 3));
        let (runs, incomplete) = collector.finish();
        assert_eq!(runs.len(), 2);
        assert!(!runs[0].same_time);
        assert_eq!(runs[0].reports[0].events, [key(1), Event::report()]);
        // Devices 1 and 0 at 1.000500: one run, order between them unknown.
        assert!(runs[1].same_time);
        assert_eq!(
            runs[1].reports.iter().map(|r| r.device).collect::<Vec<_>>(),
            [1, 0]
        );
        assert_eq!(incomplete, [(2, vec![Event::new(EV_ABS, ABS_X, 1)])]);
    }

    #[test]
    fn one_device_with_one_timestamp_twice_is_no_unknown_order() {
        let mut collector = Collector::new(1, KEY_ESC);
        for value in [1, 0] {
            collector.take(0, at(5, 5, Event::new(EV_KEY, 30, value)));
            collector.take(0, at(5, 5, Event::report()));
        }
        let (runs, _) = collector.finish();
        assert_eq!(runs.len(), 1);
        assert!(!runs[0].same_time);
        assert_eq!(runs[0].reports.len(), 2);
        // The end key is KEY_ESC, not KEY_A.
        let mut collector = Collector::new(1, KEY_ESC);
        collector.take(0, at(5, 5, Event::new(EV_KEY, 30, 0)));
        collector.take(0, at(5, 5, Event::report()));
        assert!(!collector.ended(0));
    }
}
