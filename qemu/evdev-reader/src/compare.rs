//! Holds what the reader printed against the reports [`crate::kbdfront`] expects.
//!
//! Each vkbd device has its own ring, taken off by the frontend in order, so the order of the
//! reports of one vkbd device's input devices is known and checked exactly (every report's
//! device, types, codes and values, and their order); between vkbd devices there is no order
//! to check (the backend fills the rings on their own timers, and the frontend serves them
//! as their interrupts come). Where the reader says reports of different devices carry one
//! timestamp, their order between those devices is unknown, so within such a run only each
//! device's own order is held.

use crate::codes::{EV_SYN, SYN_DROPPED};
use crate::kbdfront::Ring;
use crate::output::{phys_of, ReaderLog, Report};
use std::collections::BTreeSet;

/// What matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// Reports.
    pub reports: usize,
    /// Events in them, `SYN_REPORT`s included.
    pub events: usize,
    /// Devices.
    pub devices: usize,
    /// Runs of reports the reader found with one timestamp.
    pub same_time: usize,
}

/// Holds `log` against `expected`: what matched, or every difference found (at most one per
/// vkbd device's sequence, the first).
pub fn check(expected: &[Ring], log: &ReaderLog) -> Result<Matched, Vec<String>> {
    let mut failures: Vec<String> = log
        .failures
        .iter()
        .map(|reason| format!("the reader failed: {reason}"))
        .collect();
    if !log.ready {
        failures.push("the reader never said it was ready".to_string());
    }
    let wanted: BTreeSet<&str> = expected
        .iter()
        .flat_map(|ring| ring.devices.iter().map(String::as_str))
        .collect();
    let opened: BTreeSet<&str> = log.devices.iter().map(String::as_str).collect();
    for missing in wanted.difference(&opened) {
        failures.push(format!("xen-kbdfront created no `{missing}`"));
    }
    for extra in opened.difference(&wanted) {
        failures.push(format!("the reader found a device not expected: `{extra}`"));
    }
    if log.devices.len() != opened.len() {
        failures.push(format!(
            "the reader opened {} devices, {} of them with different labels",
            log.devices.len(),
            opened.len()
        ));
    }
    for report in &log.incomplete {
        failures.push(format!(
            "events without their SYN_REPORT at the end: `{report}`"
        ));
    }
    for report in &log.reports {
        if report
            .events
            .iter()
            .any(|event| event.kind == EV_SYN && event.code == SYN_DROPPED)
        {
            failures.push(format!(
                "the reader lost events (SYN_DROPPED) on {}",
                report.device
            ));
        }
        let phys = phys_of(&report.device);
        if !expected.iter().any(|ring| Some(ring.phys.as_str()) == phys) {
            failures.push(format!("a report of an unexpected device: `{report}`"));
        }
    }
    let mut matched = Matched {
        devices: opened.intersection(&wanted).count(),
        same_time: log.same_time.len(),
        ..Matched::default()
    };
    for ring in expected {
        match check_ring(ring, log) {
            Ok(()) => {
                matched.reports += ring.reports.len();
                matched.events += ring.reports.iter().map(|r| r.events.len()).sum::<usize>();
            }
            Err(failure) => failures.push(failure),
        }
    }
    if !log.powering_off {
        failures.push("the reader did not get to powering off".to_string());
    }
    if failures.is_empty() {
        Ok(matched)
    } else {
        Err(failures)
    }
}

/// One vkbd device's reports, in the reader's order, with its runs of one timestamp.
fn actual_of<'a>(ring: &Ring, log: &'a ReaderLog) -> (Vec<&'a Report>, Vec<(usize, usize)>) {
    let mut reports = Vec::new();
    let mut local = Vec::new();
    for (index, report) in log.reports.iter().enumerate() {
        if phys_of(&report.device) == Some(ring.phys.as_str()) {
            local.push(index);
            reports.push(report);
        }
    }
    let runs = log
        .same_time
        .iter()
        .filter_map(|range| {
            let start = local.iter().position(|&index| range.contains(&index))?;
            let count = local[start..]
                .iter()
                .take_while(|&&index| range.contains(&index))
                .count();
            (count > 1).then_some((start, count))
        })
        .collect();
    (reports, runs)
}

/// The reports of each device, in order.
fn by_device<'a>(reports: impl IntoIterator<Item = &'a Report>) -> Vec<(&'a str, Vec<&'a Report>)> {
    let mut devices: Vec<(&str, Vec<&Report>)> = Vec::new();
    for report in reports {
        match devices
            .iter_mut()
            .find(|(device, _)| *device == report.device)
        {
            Some((_, list)) => list.push(report),
            None => devices.push((&report.device, vec![report])),
        }
    }
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
}

fn check_ring(ring: &Ring, log: &ReaderLog) -> Result<(), String> {
    let (actual, runs) = actual_of(ring, log);
    let expected = &ring.reports;
    let phys = &ring.phys;
    let mut at = 0;
    while at < actual.len().min(expected.len()) {
        let run = runs
            .iter()
            .find(|(start, _)| *start == at)
            .map_or(1, |&(_, count)| count);
        let end = (at + run).min(actual.len()).min(expected.len());
        let same = if run == 1 {
            actual[at] == &expected[at]
        } else {
            by_device(actual[at..end].iter().copied()) == by_device(&expected[at..end])
        };
        if !same {
            let (got, wanted) = (actual[at], &expected[at]);
            let note = if run > 1 {
                format!(
                    " (in a run of {run} reports with one timestamp, whose order between \
                     devices is not held)"
                )
            } else {
                String::new()
            };
            return Err(format!(
                "{phys}: report {} of {}: expected `{wanted}`, the reader printed `{got}`{note}",
                at + 1,
                expected.len()
            ));
        }
        at = end;
    }
    if actual.len() < expected.len() {
        return Err(format!(
            "{phys}: the reader printed {} reports, {} expected; the first missing: `{}`",
            actual.len(),
            expected.len(),
            expected[actual.len()]
        ));
    }
    if actual.len() > expected.len() {
        return Err(format!(
            "{phys}: the reader printed {} reports, {} expected; the first not expected: `{}`",
            actual.len(),
            expected.len(),
            actual[expected.len()]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kbdfront::{self, VkbdConfig};
    use crate::output::{device_line, event_line, ready_line, same_time_line, POWERING_OFF};
    use drivers::xen::kbdif::script::Script;

    fn configs() -> Vec<VkbdConfig> {
        vec![
            VkbdConfig::parse(
                "backend-type=linux,unique-id=touch,feature-abs-pointer=1,width=100,height=100,\
                 multi-touch-num-contacts=2,multi-touch-width=100,multi-touch-height=100",
            )
            .unwrap(),
            VkbdConfig::parse("backend-type=linux,unique-id=mouse").unwrap(),
        ]
    }

    const SCRIPT: &str = "device touch\n\
        10 key KEY_A press\n\
        10 abs 5 6\n\
        10 touch 0 down 1 1\n\
        10 key KEY_A release\n\
        10 touch 0 sync\n\
        device mouse\n\
        10 rel 1 2\n\
        10 key BTN_LEFT press\n\
        device *\n\
        10 key KEY_ESC press\n\
        10 key KEY_ESC release\n";

    fn rings() -> Vec<Ring> {
        kbdfront::expected(&configs(), &Script::parse(SCRIPT).unwrap()).unwrap()
    }

    /// What a reader that got exactly `reports` (in this order) prints.
    fn printed(rings: &[Ring], reports: &[&Report], same_time: &[usize]) -> Vec<String> {
        let mut lines = Vec::new();
        for (index, device) in rings.iter().flat_map(|r| &r.devices).enumerate() {
            lines.push(device_line(&format!("/dev/input/event{index}"), device));
        }
        lines.push(ready_line(5, 1, 2));
        for (index, report) in reports.iter().enumerate() {
            if same_time.first() == Some(&index) {
                lines.push(same_time_line(same_time.len(), 3, 7));
            }
            for event in &report.events {
                lines.push(event_line(&report.device, event));
            }
        }
        lines.push("evdev: summary: ...".to_string());
        lines.push(POWERING_OFF.to_string());
        lines
    }

    fn read(lines: &[String]) -> ReaderLog {
        ReaderLog::read(lines.iter().map(String::as_str))
    }

    #[test]
    fn the_expected_sequence_in_any_interleaving_of_the_rings_matches() {
        let rings = rings();
        assert_eq!(rings[0].reports.len(), 6);
        assert_eq!(rings[1].reports.len(), 4);
        // Ring 1's reports first, then ring 0's: no order between rings is held.
        let reports: Vec<&Report> = rings[1].reports.iter().chain(&rings[0].reports).collect();
        let matched = check(&rings, &read(&printed(&rings, &reports, &[]))).unwrap();
        assert_eq!(
            matched,
            Matched {
                reports: 10,
                events: 27,
                devices: 5,
                same_time: 0
            }
        );
    }

    #[test]
    fn order_within_a_ring_is_held_unless_the_reports_carry_one_timestamp() {
        let rings = rings();
        // Ring 0: keyboard A down, pointer, keyboard A up, touch, keyboard ESC down, up.
        let mut reports: Vec<&Report> = rings[0].reports.iter().collect();
        reports.swap(1, 2);
        let failures = check(&rings[..1], &read(&printed(&rings[..1], &reports, &[]))).unwrap_err();
        assert_eq!(
            failures,
            [
                "xenbus/device/vkbd/0: report 2 of 6: expected `Xen Virtual Pointer \
                 (xenbus/device/vkbd/0): EV_ABS ABS_X 5, EV_ABS ABS_Y 6, EV_SYN SYN_REPORT 0`, \
                 the reader printed `Xen Virtual Keyboard (xenbus/device/vkbd/0): EV_KEY KEY_A 0, \
                 EV_SYN SYN_REPORT 0`"
            ]
        );
        // The same swap inside a run of one timestamp: different devices, order unknown.
        check(&rings[..1], &read(&printed(&rings[..1], &reports, &[1, 2]))).unwrap();
        // But a device's own order is held even there.
        let mut reports: Vec<&Report> = rings[0].reports.iter().collect();
        reports.swap(0, 2);
        let failures = check(
            &rings[..1],
            &read(&printed(&rings[..1], &reports, &[0, 1, 2])),
        )
        .unwrap_err();
        assert!(failures[0].contains("report 1 of 6") && failures[0].contains("one timestamp"));
    }

    #[test]
    fn missing_extra_and_changed_reports_are_named() {
        let rings = rings();
        let all: Vec<&Report> = rings.iter().flat_map(|ring| &ring.reports).collect();
        let fewer = &all[..all.len() - 1];
        let failures = check(&rings, &read(&printed(&rings, fewer, &[]))).unwrap_err();
        assert_eq!(
            failures,
            [
                "xenbus/device/vkbd/1: the reader printed 3 reports, 4 expected; the first \
                 missing: `Xen Virtual Keyboard (xenbus/device/vkbd/1): EV_KEY KEY_ESC 0, EV_SYN \
                 SYN_REPORT 0`"
            ]
        );
        let mut changed = rings[1].reports[0].clone();
        changed.events[1].value = 3;
        let mut reports = all.clone();
        reports[6] = &changed;
        let failures = check(&rings, &read(&printed(&rings, &reports, &[]))).unwrap_err();
        assert!(
            failures[0].starts_with("xenbus/device/vkbd/1: report 1 of 4: expected `")
                && failures[0].ends_with("EV_REL REL_Y 3, EV_SYN SYN_REPORT 0`"),
            "{failures:?}"
        );
        let mut lines = printed(&rings, &all, &[]);
        lines.insert(
            lines.len() - 2,
            event_line(
                "Xen Virtual Keyboard (xenbus/device/vkbd/0)",
                &crate::output::Event::new(1, 2, 1),
            ),
        );
        let failures = check(&rings, &read(&lines)).unwrap_err();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("events without their SYN_REPORT at the end: "));
    }

    #[test]
    fn devices_failures_and_lost_events_are_named() {
        let rings = rings();
        let all: Vec<&Report> = rings.iter().flat_map(|ring| &ring.reports).collect();
        let mut lines = printed(&rings, &all, &[]);
        // The multi-touch device was not found, the reader failed and did not power off.
        lines.retain(|line| !line.starts_with("evdev: device /dev/input/event2:"));
        lines.retain(|line| line != POWERING_OFF);
        lines.push("evdev: failed: read /dev/input/event1: EIO".to_string());
        let failures = check(&rings, &read(&lines)).unwrap_err();
        assert_eq!(
            failures,
            [
                "the reader failed: read /dev/input/event1: EIO",
                "xen-kbdfront created no `Xen Virtual Multi-touch (xenbus/device/vkbd/0)`",
                "the reader did not get to powering off",
            ]
        );
        let mut dropped = rings[1].reports[1].clone();
        dropped.events.insert(0, crate::output::Event::new(0, 3, 0));
        let mut reports = all.clone();
        reports[7] = &dropped;
        let failures = check(&rings, &read(&printed(&rings, &reports, &[]))).unwrap_err();
        assert_eq!(
            failures[0],
            "the reader lost events (SYN_DROPPED) on Xen Virtual Pointer (xenbus/device/vkbd/1)"
        );
    }
}
