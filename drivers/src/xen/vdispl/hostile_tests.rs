//! The real frontend ([`frontend::run`]) against a backend that misbehaves
//! on purpose: each of the Dom0 backend's `--fault` modes, played by the
//! fake backend through the same fault injection ([`FaultState`]), hits
//! one connector of a two-connector device while the other flips. Only a
//! broken ring (`rsp-prod`) or a backend that leaves (`state-back`)
//! reconnects the device; the faulted connector is otherwise tried again
//! on its own ring, and an unknown event (`garbage-event`) is ignored. The
//! environment is [`FakeEnv`]: its clock moves only when the frontend
//! waits, so no test depends on wall-clock time.
//!
//! Besides the faults, a slow backend ([`BackendFaults`]'s delays): late
//! EVT_PG_FLIP events and late responses, which cost time but never the
//! connection.

use super::connector::HANG_NS;
use super::fake::BackendFaults;
use super::fake_env::{shown, FakeApp, FakeEnv};
use super::fault::{Fault, FaultMode, FaultState, FAULT_MODES};
use super::flip::FRAME_DONE_TIMEOUT_NS;
use super::frontend::{self, Outcome};
use super::recovery::MAX_CONNECTOR_RETRIES;
use crate::xen::displif::Request;
use log::Level;
use std::format;
use std::string::String;
use std::vec::Vec;

const MS: u64 = 1_000_000;
/// Frames each connector shows (unless a test says otherwise).
const FRAMES: u64 = 60;
/// The connectors of the device.
pub(super) const CONNECTORS: [(&str, &str); 2] = [("320x200", "DP-1"), ("160x100", "HDMI-A-1")];
/// Their names in messages.
const NAMES: [&str; 2] = ["conn=0 (DP-1)", "conn=1 (HDMI-A-1)"];

/// A finished run of the frontend.
pub(super) struct Run {
    pub env: FakeEnv,
    pub app: FakeApp,
    pub outcome: Outcome,
}

impl Run {
    /// The frontend's error lines.
    pub fn errors(&self) -> Vec<&str> {
        self.env.logged(Level::Error)
    }

    /// Its warnings.
    pub fn warnings(&self) -> Vec<&str> {
        self.env.logged(Level::Warn)
    }

    /// Its console lines containing `text`.
    pub fn lines_with(&self, text: &str) -> Vec<&str> {
        self.env
            .lines
            .iter()
            .filter(|line| line.contains(text))
            .map(String::as_str)
            .collect()
    }

    /// Why the device reconnected, each time.
    pub fn reconnections(&self) -> Vec<&str> {
        self.env
            .lines
            .iter()
            .filter_map(|line| line.strip_prefix("display device 0: "))
            .filter_map(|line| line.strip_suffix("; reconnecting"))
            .collect()
    }

    /// Connections the backend served.
    pub fn connections(&mut self) -> usize {
        self.env.world().served.len()
    }
}

/// Runs the frontend, `frames` frames per connector, against a backend with
/// `fault` and `faults`, configured further by `setup`, until it finishes.
pub(super) fn run_with(
    fault: Option<Fault>,
    faults: BackendFaults,
    frames: u64,
    setup: impl FnOnce(&mut FakeEnv),
) -> Run {
    run_at(fault, faults, frames, &[], setup)
}

/// [`run_with`], the connectors' buffers at `depths` (see
/// [`frontend::run`]).
pub(super) fn run_at(
    fault: Option<Fault>,
    faults: BackendFaults,
    frames: u64,
    depths: &[u32],
    setup: impl FnOnce(&mut FakeEnv),
) -> Run {
    let mut env = FakeEnv::new(&CONNECTORS);
    env.world().faults = faults;
    env.world().fault = fault.map(FaultState::new);
    setup(&mut env);
    let mut app = FakeApp {
        frames,
        ..FakeApp::default()
    };
    let outcome = frontend::run(&mut env, &mut app, depths);
    env.finish();
    // Every connection gave back everything it held.
    for line in env.lines.iter().filter(|line| line.contains(" closed: ")) {
        assert!(line.ends_with(", at baseline"), "{line}");
    }
    assert_eq!(env.open_channels(), 0);
    Run { env, app, outcome }
}

fn run(fault: Option<Fault>) -> Run {
    run_with(fault, BackendFaults::default(), FRAMES, |_| {})
}

/// Frame numbers 0 to `frames` - 1.
fn every(frames: u64) -> Vec<u64> {
    (0..frames).collect()
}

/// What the frontend says stopped a connector hit by `mode`.
fn reason(mode: FaultMode, id: u16) -> String {
    match mode {
        FaultMode::Status => String::from("PG_FLIP failed with status -5"),
        FaultMode::WrongId => format!(
            "PG_FLIP not completed: a response with the wrong id {} came instead of id {id}",
            id + 1,
        ),
        FaultMode::RspProd => String::from("ring: rsp_prod "),
        FaultMode::Silent => format!(
            "PG_FLIP not completed: the backend never answered id {id} within {} ms (the ring is \
             stuck)",
            HANG_NS / MS
        ),
        FaultMode::GarbageEvent | FaultMode::StateBack => {
            unreachable!("{} stops no connector", mode.name())
        }
    }
}

/// The end of a connector's error line when it is retried on its own ring.
fn retried_on_its_ring(retry: u32) -> String {
    format!(
        "; this connector stops; retry {retry} of {MAX_CONNECTOR_RETRIES} in 2000 ms, again on \
         its own ring"
    )
}

#[test]
fn without_a_fault_both_connectors_show_every_frame_on_one_connection() {
    let mut run = run(None);
    assert_eq!(run.outcome, Outcome { shutdown: None });
    assert_eq!(run.connections(), 1);
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert_eq!(shown(&run.app, 0), every(FRAMES));
    assert_eq!(shown(&run.app, 1), every(FRAMES));
    let served = &run.env.world().served[0];
    assert_eq!(served.flips_on(0), FRAMES as usize);
    assert_eq!(served.flips_on(1), FRAMES as usize);
    // Teardown: DISABLE on both rings, every framebuffer detached and
    // every display buffer destroyed on connector 0's.
    assert_eq!(served.left_over, (0, 0));
    assert_eq!(
        run.lines_with("display: all grants returned").len(),
        1,
        "{:?}",
        run.env.lines
    );
    assert!(run.lines_with("display: all grants returned (0 in use)")[0].contains("heap in use 0"));
    assert_eq!(run.lines_with("display: summary conn=").len(), 2);
    assert_eq!(
        run.lines_with("display: device 0 baseline: 0 grants in use, heap in use 0 bytes")
            .len(),
        1
    );
}

#[test]
fn each_fault_on_either_connector_is_named_and_outlived_and_only_a_broken_ring_reconnects() {
    for mode in FAULT_MODES {
        for faulted in [0, 1] {
            let context = format!("{} on connector {faulted}", mode.name());
            let mut run = run(Some(Fault {
                mode,
                connector: faulted,
                count: 1,
                after: 2,
            }));
            let other = 1 - faulted;
            let reconnects = matches!(mode, FaultMode::RspProd | FaultMode::StateBack);
            // Each connector showed every frame once, in order.
            assert_eq!(
                run.connections(),
                if reconnects { 2 } else { 1 },
                "{context}: {:?}",
                run.env.lines
            );
            assert_eq!(shown(&run.app, 0), every(FRAMES), "{context}");
            assert_eq!(shown(&run.app, 1), every(FRAMES), "{context}");
            let served = &run.env.world().served;
            assert_eq!(served[0].hits.len(), 1, "{context}");
            let (at, hit, _) = served[0].hits[0];
            assert_eq!((at, hit.mode), (faulted, mode), "{context}");
            let after_fault: Vec<Vec<Request>> = (0..2)
                .map(|index| served[0].requests_after_fault(index))
                .collect();
            let other_flips = served[0].flips_after_fault(other);
            let left_over = served[0].left_over;
            let name = NAMES[faulted];

            match mode {
                FaultMode::StateBack => {
                    // The device goes down: nothing more is sent to a
                    // backend that left, and no connector is blamed.
                    assert!(run.errors().is_empty(), "{context}: {:?}", run.errors());
                    assert_eq!(
                        run.reconnections(),
                        ["the backend went to InitWait"],
                        "{context}"
                    );
                    assert!(after_fault.iter().all(Vec::is_empty), "{context}");
                    continue;
                }
                FaultMode::GarbageEvent => {
                    // The unknown event is ignored with one line; the flip
                    // whose EVT_PG_FLIP it replaced is released, and the
                    // connector goes on.
                    assert!(run.errors().is_empty(), "{context}: {:?}", run.errors());
                    assert!(run.reconnections().is_empty(), "{context}");
                    let warnings = run.warnings();
                    let ignored: Vec<&&str> = warnings
                        .iter()
                        .filter(|line| line.contains("unknown type"))
                        .collect();
                    assert_eq!(
                        ignored,
                        [&format!(
                            "display {name}: ignored event id 2 of unknown type 0xee; later ones \
                             without a line"
                        )
                        .as_str()],
                        "{context}"
                    );
                    assert_eq!(releases(&run).len(), 1, "{context}: {warnings:?}");
                    assert!(other_flips >= 1, "{context}");
                    continue;
                }
                _ => {}
            }

            let why = reason(mode, hit.id);
            let errors = run.errors();
            assert_eq!(errors.len(), 1, "{context}: {errors:?}");
            assert!(
                errors[0].starts_with(&format!("display {name}: {why}")),
                "{context}: {errors:?}"
            );
            // Meanwhile the other connector kept flipping.
            assert!(other_flips >= 1, "{context}");
            if mode == FaultMode::RspProd {
                assert!(
                    errors[0].ends_with(&format!(
                        "; this connector stops; retry 1 of {MAX_CONNECTOR_RETRIES} in 2000 ms, \
                         reconnecting the device"
                    )),
                    "{context}: {errors:?}"
                );
                let reconnections = run.reconnections();
                assert_eq!(reconnections.len(), 1, "{context}");
                assert!(
                    reconnections[0].starts_with(&format!("{name} failed ({why}")),
                    "{context}: {reconnections:?}"
                );
                assert!(
                    reconnections[0].ends_with(&format!(
                        "); reconnecting the device to recover it (retry 1 of \
                         {MAX_CONNECTOR_RETRIES})"
                    )),
                    "{context}: {reconnections:?}"
                );
                // The broken ring got nothing more; the other got DISABLE at
                // teardown.
                assert!(
                    after_fault[faulted].is_empty(),
                    "{context}: {:?}",
                    after_fault[faulted]
                );
                let teardown: Vec<&Request> = after_fault[other]
                    .iter()
                    .filter(|request| !matches!(request, Request::PageFlip { .. }))
                    .collect();
                if faulted == 1 {
                    // Connector 0's ring undoes every buffer of both
                    // connectors.
                    assert_eq!(teardown.len(), 1 + 4 + 4, "{context}: {teardown:?}");
                    assert_eq!(teardown[0], &Request::DISABLE, "{context}");
                    assert_eq!(left_over, (0, 0), "{context}");
                } else {
                    // Connector 0's ring carries DBUF_* and FB_*: with it
                    // broken, the buffers are left to the backend, which
                    // drops them when the connection closes.
                    assert_eq!(teardown, [&Request::DISABLE], "{context}");
                    assert_eq!(left_over, (4, 4), "{context}");
                }
                continue;
            }
            // Not a broken ring: no reconnection; the connector is set up
            // again on its own ring (its buffers are still there: SET_CONFIG
            // first), then flips on.
            assert!(
                errors[0].ends_with(&retried_on_its_ring(1)),
                "{context}: {errors:?}"
            );
            assert!(run.reconnections().is_empty(), "{context}");
            let first = after_fault[faulted].first();
            assert!(
                matches!(first, Some(Request::SetConfig { .. })),
                "{context}: {:?}",
                after_fault[faulted]
            );
            assert_eq!(
                run.lines_with(&format!("display: {name} ")).len(),
                2,
                "{context}"
            );
            // Both summaries cover the one connection.
            assert_eq!(
                run.lines_with(&format!("frames={FRAMES} ")).len(),
                2,
                "{context}: {:?}",
                run.env.lines
            );
            // The whole connection is undone on connector 0's ring.
            assert_eq!(left_over, (0, 0), "{context}");
        }
    }
}

#[test]
fn a_fault_that_keeps_coming_stops_its_connector_after_5_retries_without_a_flip() {
    // Every flip of connector 1 fails; the others go on; the device is
    // never reconnected.
    let mut run = run(Some(Fault {
        mode: FaultMode::Status,
        connector: 1,
        count: u32::MAX,
        after: 0,
    }));
    let retries = MAX_CONNECTOR_RETRIES as usize;
    assert_eq!(run.connections(), 1);
    assert!(run.reconnections().is_empty());
    let mut expected: Vec<String> = (1..=MAX_CONNECTOR_RETRIES)
        .map(|retry| {
            format!(
                "display {}: PG_FLIP failed with status -5{}",
                NAMES[1],
                retried_on_its_ring(retry)
            )
        })
        .collect();
    expected.push(format!(
        "display {}: PG_FLIP failed with status -5; this connector stops ({retries} retries \
         without a flip)",
        NAMES[1]
    ));
    assert_eq!(run.errors(), expected);
    assert_eq!(shown(&run.app, 0), every(FRAMES));
    assert_eq!(shown(&run.app, 1), Vec::<u64>::new());
    let summary = run.lines_with("display: summary conn=1 ");
    assert_eq!(summary.len(), 1);
    assert!(
        summary[0].starts_with("display: summary conn=1 160x100 frames=0 fps=0.000 "),
        "{summary:?}"
    );
    assert!(
        summary[0].ends_with(" failed: PG_FLIP failed with status -5"),
        "{summary:?}"
    );
}

/// A backend whose answers on connector 1 are late by `response_delay_ns`
/// (PG_FLIP responses) and `event_delay_ns` (EVT_PG_FLIP after the
/// response), showing `frames` frames per connector.
fn slow_on_connector_1(response_delay_ns: u64, event_delay_ns: u64, frames: u64) -> Run {
    let faults = BackendFaults {
        response_delay_ns,
        event_delay_ns,
        delayed_connector: Some(1),
        ..BackendFaults::default()
    };
    run_with(None, faults, frames, |_| {})
}

/// The lines about flips released without their event.
fn releases(run: &Run) -> Vec<&str> {
    run.warnings()
        .into_iter()
        .filter(|line| line.contains("frame done timed out, releasing"))
        .collect()
}

#[test]
fn an_event_late_past_the_timeout_releases_the_flip_and_the_connection_stays() {
    // Each event comes 7 s after its response: more than twice the timeout,
    // so a late event arrives while a later flip to the same framebuffer
    // waits for its own.
    let frames = 6;
    let mut run = slow_on_connector_1(0, 7_000 * MS, frames);
    assert_eq!(run.connections(), 1, "{:?}", run.env.lines);
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert_eq!(shown(&run.app, 0), every(frames));
    assert_eq!(shown(&run.app, 1), every(frames));
    // Every flip of connector 1 was released, with a line naming it: none
    // was completed by an earlier flip's late event.
    let releases = releases(&run);
    assert_eq!(releases.len(), frames as usize, "{releases:?}");
    for line in releases {
        assert!(
            line.starts_with(&format!(
                "display {}: frame done timed out, releasing (PG_FLIP id ",
                NAMES[1]
            )),
            "{line}"
        );
        assert!(line.ends_with(" ms later)"), "{line}");
    }
}

#[test]
fn an_event_late_within_the_timeout_is_waited_for() {
    let frames = 4;
    let mut run = slow_on_connector_1(0, FRAME_DONE_TIMEOUT_NS - 100 * MS, frames);
    assert_eq!(run.connections(), 1);
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert!(releases(&run).is_empty(), "{:?}", releases(&run));
    assert_eq!(shown(&run.app, 1), every(frames));
}

#[test]
fn a_slow_response_is_waited_for_and_the_connection_stays() {
    // 10 s per PG_FLIP response: past Linux's 3 s request timeout, short
    // of the ring counting as stuck.
    let frames = 4;
    let mut run = slow_on_connector_1(10_000 * MS, 0, frames);
    assert_eq!(run.connections(), 1, "{:?}", run.env.lines);
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert!(releases(&run).is_empty(), "{:?}", releases(&run));
    assert_eq!(shown(&run.app, 0), every(frames));
    assert_eq!(shown(&run.app, 1), every(frames));
    // The slow connector's round trips are in its summary.
    let summary = run.lines_with("display: summary conn=1")[0];
    assert!(summary.contains("rtt_p50_us=100"), "{summary}");
}

#[test]
fn a_slow_response_then_a_late_event_is_released_from_the_response_on() {
    // The response comes after 5 s, its event 4 s after that: released
    // 3.1 s after the response, not at once for being late since sending.
    let frames = 3;
    let run = slow_on_connector_1(5_000 * MS, 4_000 * MS, frames);
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    let releases = releases(&run);
    assert_eq!(releases.len(), frames as usize);
    for line in releases {
        let waited: u64 = line
            .rsplit_once("no EVT_PG_FLIP ")
            .and_then(|(_, rest)| rest.strip_suffix(" ms later)"))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            (FRAME_DONE_TIMEOUT_NS / MS..FRAME_DONE_TIMEOUT_NS / MS + 20).contains(&waited),
            "{line}"
        );
    }
}

#[test]
fn a_response_later_than_the_hang_deadline_stops_the_connector_as_stuck() {
    // 40 s per response on connector 1: its ring counts as stuck after
    // 30 s; the others go on, and the connector is tried again on its own
    // ring (where the backend is just as slow), a bounded number of times,
    // without reconnecting the device.
    let frames = 2;
    let mut run = slow_on_connector_1(40_000 * MS, 0, frames);
    let errors = run.errors();
    assert_eq!(
        errors.len(),
        MAX_CONNECTOR_RETRIES as usize + 1,
        "{errors:?}"
    );
    assert!(
        errors[0].starts_with(&format!(
            "display {}: PG_FLIP not completed: the backend never answered id ",
            NAMES[1]
        )),
        "{errors:?}"
    );
    assert!(
        errors[5].ends_with("(5 retries without a flip)"),
        "{errors:?}"
    );
    assert_eq!(run.connections(), 1);
    assert_eq!(shown(&run.app, 0), every(frames));
    assert_eq!(shown(&run.app, 1), Vec::<u64>::new());
}
