//! The real frontend ([`super::frontend::run`]) against backends that
//! behave differently from the project's own, each within displif.h: one
//! that refuses the configuration by closing, one that writes no
//! `versions` node, a strict one that refuses a mode or a depth, one whose
//! events come out of sequence; and devices whose connectors break
//! displif.h's numbering.

use super::backend::Strictness;
use super::fake::BackendFaults;
use super::fake_env::{shown, BACKEND};
use super::fault::{Fault, FaultMode};
use super::hostile_tests::{run_at, run_with};
use crate::xen::displif::{Event, Request};
use crate::xen::xenbus::XenbusState;
use crate::xen::xenstore::wire::MessageType;
use log::Level;
use std::format;
use std::string::String;
use std::vec::Vec;

const SECOND: u64 = 1_000_000_000;

#[test]
fn a_backend_that_closes_instead_of_connecting_ends_the_handshake_at_once() {
    // Closing or Closed in answer to Initialised: the backend refused the
    // device as configured. The frontend says so once and stops; it does
    // not try again and again.
    for refusal in [XenbusState::Closed, XenbusState::Closing] {
        let mut run = run_with(None, BackendFaults::default(), 2, |env| {
            env.world().xenbus.refuse_with = Some(refusal);
        });
        assert!(run.reconnections().is_empty(), "{:?}", run.env.lines);
        assert_eq!(
            run.lines_with("; this device is not driven"),
            [format!(
                "display device 0: waiting for the backend to connect: the backend went to \
                 {refusal}; this device is not driven"
            )]
        );
        // It ended when the backend closed, not after the handshake's 10 s.
        let now = run.env.client.now_ns();
        assert!(now < SECOND, "{refusal}: {now} ns");
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

/// A strict backend (as the xen-troops DRM backend on virtio-gpu): 32 bpp
/// buffers only, and SET_CONFIG only for `modes`.
fn strict(env: &mut super::fake_env::FakeEnv, modes: &[(u32, u32)]) {
    env.world().rules.strictness = Strictness::Strict {
        host_modes: modes.to_vec(),
    };
}

#[test]
fn a_refused_set_config_stops_only_its_connector_after_its_retries() {
    // The host has no 160x100 mode: connector 1's SET_CONFIG is refused.
    let mut run = run_with(None, BackendFaults::default(), 4, |env| {
        strict(env, &[(320, 200)]);
    });
    assert_eq!(run.connections(), 1, "{:?}", run.env.lines);
    assert!(run.reconnections().is_empty());
    let errors = run.errors();
    assert_eq!(errors.len(), 6, "{errors:?}");
    assert!(errors.iter().all(|line| line.starts_with(
        "display conn=1 (HDMI-A-1): SET_CONFIG failed with status -22; this connector stops"
    )));
    assert!(errors[0].ends_with("retry 1 of 5 in 2000 ms, again on its own ring"));
    assert!(errors[5].ends_with("(5 retries without a flip)"));
    // Each retry sent SET_CONFIG again on connector 1's own ring, nothing on
    // connector 0's.
    let served = &run.env.world().served[0];
    let set_configs = served
        .requests
        .iter()
        .filter(|(ring, request)| *ring == 1 && matches!(request, Request::SetConfig { .. }))
        .count();
    assert_eq!(set_configs, 6);
    assert_eq!(shown(&run.app, 0), [0, 1, 2, 3]);
    assert!(shown(&run.app, 1).is_empty());
}

#[test]
fn a_refused_depth_falls_back_to_xrgb8888_said_once_across_connections() {
    // Connector 1 asks for 16 bpp; the backend refuses it. A state-back
    // fault then reconnects the device: the new connection uses 32 bpp at
    // once.
    let fault = Fault {
        mode: FaultMode::StateBack,
        connector: 0,
        count: 1,
        after: 4,
    };
    let mut run = run_at(Some(fault), BackendFaults::default(), 8, &[32, 16], |env| {
        strict(env, &[(320, 200), (160, 100)]);
    });
    assert_eq!(run.connections(), 2, "{:?}", run.env.lines);
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    let fallbacks: Vec<&str> = run
        .warnings()
        .into_iter()
        .filter(|line| line.contains("bpp"))
        .collect();
    assert_eq!(
        fallbacks,
        [
            "display conn=1 (HDMI-A-1): the backend refused 16 bpp buffers (DBUF_CREATE failed \
          with status -22); falling back to XRGB8888 (32 bpp)"
        ]
    );
    assert_eq!(
        run.lines_with("display: conn=1 (HDMI-A-1) 160x100 32 bpp ready")
            .len(),
        2,
        "{:?}",
        run.env.lines
    );
    assert!(run.lines_with("16 bpp ready").is_empty());
    // Every frame shown, every one drawn at the depth used.
    assert_eq!(shown(&run.app, 1), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert!(run.app.depths[&1].iter().all(|&bpp| bpp == 32));
    // The refused buffer's grants went back: both connections at baseline
    // (checked by run_at), and the second asked for 32 bpp only.
    let creates: Vec<u32> = run.env.world().served[1]
        .requests
        .iter()
        .filter_map(|(_, request)| match request {
            Request::DbufCreate(create) => Some(create.bpp),
            _ => None,
        })
        .collect();
    assert_eq!(creates, [32, 32, 32, 32]);
}

#[test]
fn a_backend_that_takes_16_bpp_keeps_it() {
    let run = run_at(None, BackendFaults::default(), 2, &[16], |_| {});
    assert!(run.warnings().iter().all(|line| !line.contains("bpp")));
    assert_eq!(run.lines_with("16 bpp ready").len(), 2);
    assert!(run.app.depths[&0].iter().all(|&bpp| bpp == 16));
}

#[test]
fn an_event_out_of_sequence_is_skipped_with_one_line() {
    // Before any of the backend's own events, one with id 77 on connector 1:
    // skipped, and the backend's first (id 0) after it too; the flip that
    // one completed is released, and flipping goes on.
    let slot = Event::PageFlip { fb_cookie: 0x1234 }.encode(77);
    let mut run = run_with(None, BackendFaults::default(), 4, |env| {
        env.world().rules.first_event = Some((1, slot));
    });
    assert_eq!(run.connections(), 1);
    assert!(run.errors().is_empty(), "{:?}", run.errors());
    let warnings = run.warnings();
    assert_eq!(
        warnings[0],
        "display conn=1 (HDMI-A-1): skipped event id 77, out of sequence (expected 0); later \
         ones without a line"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[1].contains("frame done timed out, releasing"));
    assert_eq!(shown(&run.app, 1), [0, 1, 2, 3]);
}

#[test]
fn connectors_with_a_gap_or_beyond_the_limit_are_named_and_the_device_is_not_driven() {
    let mut run = run_with(None, BackendFaults::default(), 2, |env| {
        env.world().xenstored.remove("device/vdispl/0/1");
        env.world()
            .xenstored
            .set("device/vdispl/0/2/resolution", b"320x200");
    });
    assert_eq!(
        run.lines_with("display device 0: ").last().copied(),
        Some(
            "display device 0: device configuration: device/vdispl/0/1 is missing but \
             device/vdispl/0/2 is listed: displif.h numbers connectors from 0 without gaps; \
             this device is not driven"
        ),
        "{:?}",
        run.env.lines
    );
    assert_eq!(run.connections(), 0);
    assert!(run.reconnections().is_empty());
    let mut run = run_with(None, BackendFaults::default(), 2, |env| {
        for index in 2..6 {
            env.world()
                .xenstored
                .set(&format!("device/vdispl/0/{index}/resolution"), b"320x200");
        }
    });
    assert_eq!(
        run.lines_with("this device is not driven"),
        [
            "display device 0: device configuration: device/vdispl/0/4: this frontend drives at \
          most 4 connectors per device; this device is not driven"
        ]
    );
    assert_eq!(run.connections(), 0);
}

#[test]
fn a_connector_whose_buffers_find_no_grant_reference_stops_alone_and_gives_them_back() {
    // Rings take 4 references, connector 0's buffers (320x200: 63 pages and
    // a directory page each) 64 each, connector 1's (160x100) 17 each. With
    // 140 references, connector 0's second buffer does not fit once both
    // first buffers are up: its partial grants end at once, connector 1's
    // second buffer fits, and connector 0 alone stops, for good.
    let mut run = run_with(None, BackendFaults::default(), 4, |env| {
        env.grant_limit = Some(140);
    });
    assert_eq!(run.connections(), 1, "{:?}", run.env.lines);
    assert!(run.reconnections().is_empty());
    // A resource error: no retry would find more references.
    assert_eq!(
        run.errors(),
        [
            "display conn=0 (DP-1): a 320x200 buffer needs 64 grant references: all 140 grant \
             references are in use (1 grant frames, as many as the domain may have: raise \
             max_grant_frames in the xl config); this connector stops"
        ]
    );
    assert_eq!(shown(&run.app, 1), [0, 1, 2, 3]);
    assert_eq!(super::env::Env::grants_in_use(&mut run.env), 0);
}

#[test]
fn a_buffer_sent_again_after_a_refusal_gets_a_new_cookie() {
    // Every DBUF_CREATE refused: each connector's first buffer is sent once
    // and again on each of its 5 retries.
    let faults = BackendFaults {
        every: Some((
            super::fault::FaultMode::Status,
            Some(crate::xen::displif::Operation::DbufCreate),
        )),
        ..BackendFaults::default()
    };
    let mut run = run_with(None, faults, 2, |_| {});
    let cookies: Vec<u64> = run.env.world().served[0]
        .requests
        .iter()
        .filter_map(|(_, request)| match request {
            Request::DbufCreate(create) => Some(create.dbuf_cookie),
            _ => None,
        })
        .collect();
    assert_eq!(cookies.len(), 12, "{cookies:?}");
    let mut unique = cookies.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), cookies.len(), "{cookies:?}");
    assert!(cookies
        .iter()
        .all(|&cookie| cookie != 0 && cookie & 0x8 == 0));
    assert_eq!(super::env::Env::grants_in_use(&mut run.env), 0);
}

#[test]
fn input_reaches_the_app_with_its_connector_between_frames_and_can_stop_it() {
    use crate::xen::kbdif::{encode, InputEvent, Touch};
    // The touch screen belongs to HDMI-A-1 (connector 1).
    let touch = |contact, touch| InputEvent::Touch { contact, touch };
    let events = [
        touch(0, Touch::Down { x: 10, y: 20 }),
        touch(0, Touch::Sync),
        touch(0, Touch::Up),
        InputEvent::Key {
            pressed: true,
            keycode: 28,
        },
    ];
    let mut run = run_with(None, BackendFaults::default(), 1000, |env| {
        env.add_input(&[
            ("feature-multi-touch", "1"),
            ("multi-touch-num-contacts", "1"),
            ("unique-id", "HDMI-A-1"),
        ]);
        // After a few frames.
        for (index, event) in events.iter().enumerate() {
            let at = 50_000_000 + index as u64 * 1_000_000;
            env.world().input.script.push_back((at, encode(event)));
        }
    });
    let inputs: Vec<_> = run.app.inputs.clone();
    let expected: Vec<_> = events.iter().map(|event| (Some(1), *event)).collect();
    assert_eq!(inputs, expected);
    assert!(run
        .env
        .lines
        .iter()
        .any(|line| line == "input: device device/vkbd/0 connected (backend domain 0, connector HDMI-A-1, multi-touch)"));
    // Enter does not stop it: it runs its 1000 frames.
    assert_eq!(shown(&run.app, 0).len(), 1000);
    assert_eq!(run.env.world().input.connections, 1);
    // The accounting lines say who holds what.
    assert_eq!(
        run.lines_with("grants returned"),
        [
            "display: the connection's grants returned (1 in use, the input devices' pages), \
             heap in use 4096 bytes",
            "input: all grants returned (0 in use)"
        ]
    );
}

#[test]
fn an_app_that_asks_to_stop_ends_the_run_early_and_everything_goes_back() {
    use crate::xen::kbdif::{encode, InputEvent};
    let escape = InputEvent::Key {
        pressed: true,
        keycode: 1,
    };
    let mut run = run_with(None, BackendFaults::default(), 100_000, |env| {
        env.add_input(&[("unique-id", "DP-1")]);
        env.world()
            .input
            .script
            .push_back((80_000_000, encode(&escape)));
    });
    assert!(run.app.stopped);
    let frames = shown(&run.app, 0).len();
    assert!(frames > 0 && frames < 100_000, "{frames}");
    assert_eq!(run.app.inputs, [(Some(0), escape)]);
    assert_eq!(super::env::Env::grants_in_use(&mut run.env), 0);
    // The input device was closed too.
    let state = run
        .env
        .world()
        .xenstored
        .get("device/vkbd/0/state")
        .map(<[u8]>::to_vec);
    assert_eq!(state.as_deref(), Some(&b"6"[..]));
}
