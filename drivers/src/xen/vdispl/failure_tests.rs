//! The three classes of failure ([`super::failure::FailureClass`]) through
//! the real frontend: a configuration error stops only what it names, once,
//! with the node and its value; a resource error stops what needed the
//! resource and says how much was asked for; and every failure point of the
//! connect sequence gives back every grant, event channel and page it took.

use super::env::Env;
use super::fake::BackendFaults;
use super::fake_env::{shown, BACKEND, DEVICE};
use super::hostile_tests::{run_with, Run};
use crate::xen::displif::Request;
use crate::xen::xenbus::{self, XenbusState};
use std::format;
use std::string::String;
use std::vec::Vec;

/// Runs with `setup`, 4 frames per connector.
fn run(setup: impl FnOnce(&mut super::fake_env::FakeEnv)) -> Run {
    run_with(None, BackendFaults::default(), 4, setup)
}

/// Requests the backend took on connector `ring`'s own ring.
fn requests_on(run: &mut Run, ring: usize) -> usize {
    run.env
        .world()
        .served
        .iter()
        .flat_map(|served| &served.requests)
        .filter(|(on, _)| *on == ring)
        .count()
}

/// The device-level lines that say it is not driven.
fn not_driven(run: &Run) -> Vec<&str> {
    run.lines_with("; this device is not driven")
}

fn at_baseline(run: &mut Run) {
    assert_eq!(run.env.grants_in_use(), 0, "{:?}", run.env.lines);
    assert_eq!(run.env.open_channels(), 0);
    assert_eq!(run.env.heap_in_use(), 0);
    assert_eq!(run.env.foreign_in_use(), 0);
}

#[test]
fn a_bad_resolution_stops_only_its_connector_once_named_with_its_value() {
    let cases = [
        ("0x0", "a width or height of 0"),
        ("1280x", "not <width>x<height>"),
        ("abc", "not <width>x<height>"),
        ("4294967295x1", "beyond 8192x8192"),
        ("100000x100000", "beyond 8192x8192"),
    ];
    for (value, why) in cases {
        let mut run = run(|env| {
            env.world()
                .xenstored
                .set(&format!("{DEVICE}/1/resolution"), value.as_bytes());
        });
        assert_eq!(
            run.errors(),
            [format!(
                "display conn=1 (HDMI-A-1): configuration: device/vdispl/0/1/resolution holds \
                 {value:?} ({why}); this connector is not driven"
            )],
            "{value}"
        );
        assert!(run.reconnections().is_empty());
        assert_eq!(run.connections(), 1);
        assert_eq!(shown(&run.app, 0), [0, 1, 2, 3]);
        assert!(shown(&run.app, 1).is_empty());
        // Its rings were published (the backend mapped both connectors),
        // and nothing was sent on them.
        assert_eq!(requests_on(&mut run, 1), 0);
        assert!(run
            .lines_with("display: summary conn=1 ")
            .iter()
            .all(|line| line.contains("failed: configuration: device/vdispl/0/1/resolution")));
        at_baseline(&mut run);
    }
}

#[test]
fn a_bad_device_node_stops_the_device_at_once_named_with_no_reconnection() {
    let cases: [(&str, Option<&[u8]>, String); 4] = [
        (
            "be-alloc",
            Some(b"2"),
            String::from("device configuration: device/vdispl/0/be-alloc holds \"2\""),
        ),
        (
            "backend-id",
            Some(b"zero"),
            String::from("device configuration: device/vdispl/0/backend-id holds \"zero\""),
        ),
        (
            "0",
            None,
            String::from(
                "device configuration: device/vdispl/0/0 is missing but device/vdispl/0/1 is \
                 listed: displif.h numbers connectors from 0 without gaps",
            ),
        ),
        (
            "backend-id",
            Some(b"7"),
            String::from(
                "configuration: device/vdispl/0/backend-id names domain 7, which this domain \
                 cannot reach (EVTCHNOP_alloc_unbound: ESRCH (-3))",
            ),
        ),
    ];
    for (node, value, said) in cases {
        let mut run = run(|env| {
            let node = format!("{DEVICE}/{node}");
            match value {
                Some(value) => env.world().xenstored.set(&node, value),
                None => env.world().xenstored.remove(&node),
            }
        });
        assert_eq!(
            not_driven(&run),
            [format!(
                "display device 0: {said}; this device is not driven"
            )],
            "{node}: {:?}",
            run.env.lines
        );
        assert!(run.reconnections().is_empty(), "{node}");
        assert_eq!(run.connections(), 0, "{node}");
        // The frontend's own xenbus error node says the same.
        let error_node = xenbus::error_node(DEVICE).unwrap();
        assert_eq!(
            run.env.world().xenstored.get(&error_node),
            Some(said.as_bytes()),
            "{node}"
        );
        at_baseline(&mut run);
    }
}

#[test]
fn memory_running_short_stops_the_connector_that_asked_saying_how_much() {
    // Rings (4 pages) and connector 0's two buffers (63 pages and a
    // directory page each) fit; connector 1's first buffer, at 640x400 (250
    // pages), does not.
    let mut run = run(|env| {
        env.world()
            .xenstored
            .set(&format!("{DEVICE}/1/resolution"), b"640x400");
        env.page_limit = Some(4 + 2 * 64 + 8);
    });
    assert_eq!(
        run.errors(),
        [
            "display conn=1 (HDMI-A-1): no memory for a 640x400 buffer: 1024000 bytes asked for, \
          294912 bytes free in the heap; this connector stops"
        ]
    );
    assert!(run.reconnections().is_empty());
    assert_eq!(shown(&run.app, 0), [0, 1, 2, 3]);
    assert!(shown(&run.app, 1).is_empty());
    at_baseline(&mut run);
}

#[test]
fn with_connector_0_refused_the_others_still_get_their_buffers_on_its_ring() {
    // displif.h: DBUF_* and FB_* go on connector 0's ring whatever
    // connector they serve; connector 0's own requests (SET_CONFIG,
    // PG_FLIP, GET_EDID) are not sent.
    let mut run = run(|env| {
        env.world()
            .xenstored
            .set(&format!("{DEVICE}/0/resolution"), b"1x0");
    });
    assert_eq!(
        run.errors(),
        [
            "display conn=0 (DP-1): configuration: device/vdispl/0/0/resolution holds \"1x0\" (a \
          width or height of 0); this connector is not driven"
        ]
    );
    assert_eq!(shown(&run.app, 1), [0, 1, 2, 3]);
    assert!(shown(&run.app, 0).is_empty());
    let on_ring_0: Vec<&Request> = run.env.world().served[0]
        .requests
        .iter()
        .filter(|(ring, _)| *ring == 0)
        .map(|(_, request)| request)
        .collect();
    assert!(on_ring_0.iter().all(|request| matches!(
        request,
        Request::DbufCreate(_)
            | Request::FbAttach { .. }
            | Request::FbDetach { .. }
            | Request::DbufDestroy { .. }
    )));
    assert!(!on_ring_0.is_empty());
    at_baseline(&mut run);
}

#[test]
fn a_backend_that_never_connects_is_reported_with_the_real_time_waited() {
    let mut run = run(|env| env.world().xenbus.refuse_with = Some(XenbusState::InitWait));
    let reconnections = run.reconnections();
    assert!(!reconnections.is_empty());
    assert_eq!(
        reconnections[0],
        format!(
            "waiting for the backend to connect: {BACKEND}/state: timed out after 10000 ms, \
             last state 2 (InitWait)"
        )
    );
    at_baseline(&mut run);
}

#[test]
fn a_backend_that_closes_is_quoted_from_its_error_node() {
    let mut run = run(|env| {
        env.world().xenbus.refuse_with = Some(XenbusState::Closed);
        let node = xenbus::error_node(BACKEND).unwrap();
        env.world()
            .xenstored
            .set(&node, b"connector 1 refused: resolution \"0x0\"\n");
    });
    assert_eq!(
        not_driven(&run),
        [
            "display device 0: waiting for the backend to connect: the backend went to Closed, \
          saying \"connector 1 refused: resolution \\\"0x0\\\"\"; this device is not driven"
        ]
    );
    at_baseline(&mut run);
}

/// Runs with resource calls `first..first + count` failing; returns the run
/// and whether any call failed.
fn run_failing(first: u32, count: u32) -> (Run, bool) {
    let mut run = run(|env| env.fail_calls = Some((first, count)));
    let hit = run.env.resource_calls >= first;
    at_baseline(&mut run);
    (run, hit)
}

#[test]
fn every_failure_point_gives_back_what_it_took() {
    // One call failing, for each call a full run makes: the run carries on
    // (the connector or device tries again, or stops), and whatever it
    // took is back at the end.
    let mut points = 0;
    for first in 1.. {
        let (run, hit) = run_failing(first, 1);
        if !hit {
            break;
        }
        points += 1;
        assert!(
            !run.lines_with("display: all grants returned (0 in use)")
                .is_empty()
                || !not_driven(&run).is_empty()
                || !run.lines_with("giving up").is_empty(),
            "call {first}: {:?}",
            run.env.lines
        );
    }
    // Rings, EDID and buffers of two connectors: dozens of calls.
    assert!(points > 50, "{points}");
    // Every call failing from each point on: the device gives up, still
    // with nothing held.
    for first in (1..points).step_by(7) {
        run_failing(first, u32::MAX);
    }
}

#[test]
fn no_request_goes_to_a_refused_connector_across_reconnections() {
    // The backend restarts once (state back to InitWait); the refused
    // connector stays refused on the new connection too.
    let fault = super::fault::Fault {
        mode: super::fault::FaultMode::StateBack,
        connector: 0,
        count: 1,
        after: 2,
    };
    let mut run = run_with(Some(fault), BackendFaults::default(), 4, |env| {
        env.world()
            .xenstored
            .set(&format!("{DEVICE}/1/resolution"), b"0x0");
    });
    assert_eq!(run.connections(), 2);
    assert_eq!(requests_on(&mut run, 1), 0);
    let requests: usize = run.env.world().served[1]
        .requests
        .iter()
        .filter(|(_, request)| matches!(request, Request::PageFlip { .. }))
        .count();
    assert!(requests > 0);
    assert_eq!(shown(&run.app, 0), [0, 1, 2, 3]);
    at_baseline(&mut run);
}

#[test]
fn backend_allocated_buffers_are_mapped_drawn_and_unmapped() {
    let mut run = run(|env| env.backend_allocates());
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert_eq!(shown(&run.app, 0), [0, 1, 2, 3]);
    assert_eq!(shown(&run.app, 1), [0, 1, 2, 3]);
    let creates: Vec<_> = run.env.world().served[0]
        .requests
        .iter()
        .filter_map(|(_, request)| match request {
            Request::DbufCreate(create) => Some(*create),
            _ => None,
        })
        .collect();
    assert_eq!(creates.len(), 4);
    assert!(creates
        .iter()
        .all(|create| create.flags == crate::xen::displif::DBUF_FLAG_REQ_ALLOC));
    // Every page the backend allocated was unmapped by the frontend and
    // freed by the backend when its buffer was destroyed; the connection's
    // figures say so.
    assert_eq!(run.env.backend_pages(), (0, 0));
    assert!(
        run.env
            .lines
            .iter()
            .any(|line| line.ends_with(" 0 backend pages mapped, at baseline")),
        "{:?}",
        run.env.lines
    );
    at_baseline(&mut run);
}

#[test]
fn a_window_too_small_for_the_backends_buffer_stops_that_connector_named() {
    // Room for connector 1's buffers (16 pages each), not connector 0's 63.
    let mut run = run(|env| {
        env.backend_allocates();
        env.foreign_window = Some(40);
    });
    assert_eq!(
        run.errors(),
        [
            "display conn=0 (DP-1): the backend's buffer: the window for foreign pages has 40 \
          pages free in a row, 63 are needed; this connector stops"
        ]
    );
    assert_eq!(shown(&run.app, 1), [0, 1, 2, 3]);
    assert!(shown(&run.app, 0).is_empty());
    assert_eq!(run.env.backend_pages(), (0, 0));
    at_baseline(&mut run);
}

#[test]
fn a_backend_that_allocates_nothing_refuses_be_alloc_cleanly() {
    // be-alloc = 1 written, but the backend offers no allocation: its
    // DBUF_CREATE is refused with EOPNOTSUPP and the connectors stop.
    let mut run = run(|env| {
        env.world()
            .xenstored
            .set(&format!("{DEVICE}/be-alloc"), b"1");
    });
    assert!(!run.errors().is_empty());
    assert!(run
        .errors()
        .iter()
        .all(|line| line.contains("DBUF_CREATE failed with status -95")));
    assert_eq!(run.env.backend_pages(), (0, 0));
    at_baseline(&mut run);
}
