//! The real frontend ([`super::frontend::run`]) against backends that
//! behave differently from the project's own, each within displif.h: one
//! that refuses the configuration by closing, one that writes no
//! `versions` node.

use super::fake::BackendFaults;
use super::fake_env::{shown, BACKEND};
use super::fault::{Fault, FaultMode};
use super::hostile_tests::run_with;
use crate::xen::displif::Request;
use crate::xen::xenbus::XenbusState;
use crate::xen::xenstore::wire::MessageType;
use log::Level;
use std::format;
use std::string::String;
use std::vec::Vec;

const SECOND: u64 = 1_000_000_000;

#[test]
fn a_backend_that_closes_instead_of_connecting_ends_the_handshake_at_once() {
    for refusal in [XenbusState::Closed, XenbusState::Closing] {
        let mut run = run_with(None, BackendFaults::default(), 2, |env| {
            env.world().xenbus.refuse_with = Some(refusal);
        });
        let named = format!("waiting for the backend to connect: the backend went to {refusal}");
        let reconnections = run.reconnections();
        assert_eq!(reconnections.len(), 10, "{:?}", run.env.lines);
        assert!(
            reconnections.iter().all(|line| *line == named),
            "{reconnections:?}"
        );
        assert_eq!(
            run.lines_with(&format!(
                "display device 0: giving up after 11 reconnections without a frame: {named}"
            ))
            .len(),
            1,
            "{:?}",
            run.env.lines
        );
        // Each attempt ends when the backend closes, not after the
        // handshake's 10 s: the pause between attempts is most of it.
        let now = run.env.client.now_ns();
        assert!(now < 11 * SECOND, "{refusal}: {now} ns");
        assert_eq!(run.connections(), 0);
        assert!(shown(&run.app, 0).is_empty());
    }
}

#[test]
fn get_edid_is_sent_without_a_versions_node_and_no_edid_is_one_line() {
    let mut run = run_with(None, BackendFaults::default(), 2, |env| {
        env.world().xenstored.remove(&format!("{BACKEND}/versions"));
    });
    assert_eq!(
        run.lines_with("protocol version 1, 2 connectors").len(),
        1,
        "{:?}",
        run.env.lines
    );
    let edid_requests: Vec<usize> = run.env.world().served[0]
        .requests
        .iter()
        .filter(|(_, request)| matches!(request, Request::GetEdid { .. }))
        .map(|(ring, _)| *ring)
        .collect();
    assert_eq!(edid_requests, [0, 1]);
    // Our fake backend answers it with EOPNOTSUPP: no EDID, one line per
    // connector, and the frames go on.
    let no_edid: Vec<&str> = run
        .env
        .logged(Level::Info)
        .into_iter()
        .filter(|line| line.contains("EDID"))
        .collect();
    assert_eq!(
        no_edid,
        [
            "display conn=0 (DP-1): the backend offers no EDID",
            "display conn=1 (HDMI-A-1): the backend offers no EDID"
        ]
    );
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    assert_eq!(shown(&run.app, 1), [0, 1]);
}

/// The frontend's state writes, in order.
fn frontend_states(run: &mut super::hostile_tests::Run) -> Vec<String> {
    run.env
        .world()
        .xenstored
        .requests()
        .iter()
        .filter(|(header, _)| header.msg_type == MessageType::Write as u32)
        .filter_map(|(_, payload)| {
            let text = std::str::from_utf8(payload).ok()?;
            let (path, value) = text.split_once('\0')?;
            path.ends_with("device/vdispl/0/state")
                .then(|| String::from(value))
        })
        .collect()
}

#[test]
fn states_go_initialising_first_and_through_initialising_on_recovery() {
    // One state-back fault: the device reconnects once.
    let fault = Fault {
        mode: FaultMode::StateBack,
        connector: 1,
        count: 1,
        after: 2,
    };
    let mut run = run_with(Some(fault), BackendFaults::default(), 4, |_| {});
    assert_eq!(run.connections(), 2);
    assert_eq!(
        frontend_states(&mut run),
        ["1", "3", "4", "5", "6", "1", "3", "4", "5", "6"]
    );
}

#[test]
fn teardown_ends_no_grant_before_the_backend_closed() {
    // The backend writes Closing, then takes 4 s to unmap before Closed.
    let mut run = run_with(None, BackendFaults::default(), 3, |env| {
        env.world().xenbus.release_delay_ns = 4 * SECOND;
    });
    assert_eq!(run.env.world().ended_while_mapped.get(), 0);
    assert_eq!(
        run.lines_with("display: all grants returned (0 in use)")
            .len(),
        1,
        "{:?}",
        run.env.lines
    );
    let states = &run.env.world().backend_states;
    let closed_at = states
        .iter()
        .find(|(_, state)| *state == XenbusState::Closed)
        .map(|(at, _)| *at)
        .expect("the backend closed");
    let closing_at = states
        .iter()
        .find(|(_, state)| *state == XenbusState::Closing)
        .map(|(at, _)| *at)
        .expect("the backend went Closing");
    assert!(closed_at >= closing_at + 4 * SECOND);
}
