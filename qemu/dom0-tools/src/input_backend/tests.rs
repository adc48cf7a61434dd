//! Host tests of the input backend against the fake xenstored, the fake gntdev (whose granting
//! domain is the frontend) and fake event channels; the test plays the frontend, taking events
//! from the same mapped page the backend writes.

use super::*;
use crate::grant_map::fake::FakeGntdev;
use crate::xenbus::fake::FakeXenstored;
use drivers::xen::kbdif::Touch;
use std::cell::RefCell;
use std::io;
use std::sync::Arc;

const DOM: u32 = 3;

fn key(device: u32) -> DeviceKey {
    DeviceKey { domid: DOM, device }
}

fn frontend_path(device: u32) -> String {
    format!("/local/domain/{DOM}/device/vkbd/{device}")
}

/// Event channels that hand out local ports from 100, refuse the remote ports in `refused`,
/// and record notifications.
#[derive(Default)]
struct FakeChannels {
    state: RefCell<ChannelState>,
}

#[derive(Default)]
struct ChannelState {
    next: u32,
    /// Local port -> (domain, remote port).
    bound: BTreeMap<u32, (u32, u32)>,
    notified: Vec<u32>,
    refused: Vec<u32>,
}

impl Channels for FakeChannels {
    fn bind(&self, domid: u32, remote_port: u32) -> Result<u32, evtchn::Error> {
        let mut state = self.state.borrow_mut();
        if state.refused.contains(&remote_port) {
            return Err(evtchn::Error {
                step: evtchn::Step::Bind { domid, remote_port },
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        let port = 100 + state.next;
        state.next += 1;
        state.bound.insert(port, (domid, remote_port));
        Ok(port)
    }

    fn unbind(&self, port: u32) -> Result<(), evtchn::Error> {
        match self.state.borrow_mut().bound.remove(&port) {
            Some(_) => Ok(()),
            None => Err(evtchn::Error {
                step: evtchn::Step::Unbind(port),
                source: io::Error::from_raw_os_error(libc::ENOTCONN),
            }),
        }
    }

    fn notify(&self, port: u32) -> Result<(), evtchn::Error> {
        let mut state = self.state.borrow_mut();
        if !state.bound.contains_key(&port) {
            return Err(evtchn::Error {
                step: evtchn::Step::Notify(port),
                source: io::Error::from_raw_os_error(libc::ENOTCONN),
            });
        }
        state.notified.push(port);
        Ok(())
    }
}

struct Rig {
    fake: FakeXenstored,
    gntdev: Arc<FakeGntdev>,
    backend: InputBackend<FakeChannels>,
    t0: Instant,
}

/// A touch screen's nodes, as libxl writes them for `vkb = [ 'backend-type=linux,
/// unique-id=<id>,feature-abs-pointer=1,width=1280,height=720,multi-touch-width=1280,
/// multi-touch-height=720,multi-touch-num-contacts=2' ]`.
const TOUCHSCREEN: &[(&str, &str)] = &[
    ("feature-abs-pointer", "1"),
    ("width", "1280"),
    ("height", "720"),
    ("feature-multi-touch", "1"),
    ("multi-touch-width", "1280"),
    ("multi-touch-height", "720"),
    ("multi-touch-num-contacts", "2"),
];

impl Rig {
    fn new(script: &str) -> Self {
        let (fake, store) = FakeXenstored::start();
        let gntdev = Arc::new(FakeGntdev::default());
        let mut backend = InputBackend::over(
            store,
            FakeChannels::default(),
            GrantMapper::over(gntdev.clone()),
            Script::parse(script).unwrap(),
        );
        backend.recorded = Some(Vec::new());
        Rig {
            fake,
            gntdev,
            backend,
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// libxl adds device `device` with `unique-id` and `nodes`.
    fn toolstack_adds(&self, device: u32, unique_id: &str, nodes: &[(&str, &str)]) {
        let backend = backend_path(key(device));
        let frontend = frontend_path(device);
        for (name, value) in [
            ("frontend", frontend.as_str()),
            ("frontend-id", "3"),
            ("online", "1"),
            ("state", "1"),
            ("unique-id", unique_id),
        ] {
            self.fake.write(&format!("{backend}/{name}"), value);
        }
        for (name, value) in nodes {
            self.fake.write(&format!("{backend}/{name}"), value);
        }
        self.fake.write(&format!("{frontend}/backend"), &backend);
        self.fake.write(&format!("{frontend}/backend-id"), "0");
        self.fake.write(&format!("{frontend}/state"), "1");
    }

    /// The frontend grants its page, publishes it and its channel with `requests`, and goes
    /// Initialised.
    fn frontend_initialised(&self, device: u32, gref: u32, port: u32, requests: &[(&str, &str)]) {
        self.gntdev.grant(DOM, gref, &[0; 4096], false);
        let frontend = frontend_path(device);
        self.fake
            .write(&format!("{frontend}/page-gref"), &gref.to_string());
        self.fake
            .write(&format!("{frontend}/event-channel"), &port.to_string());
        for (name, value) in requests {
            self.fake.write(&format!("{frontend}/{name}"), value);
        }
        self.fake.write(&format!("{frontend}/state"), "3");
    }

    fn backend_state(&self, device: u32) -> Option<String> {
        let node = self
            .fake
            .node(&format!("{}/state", backend_path(key(device))))?;
        Some(String::from_utf8_lossy(&node.value).into_owned())
    }

    fn lines(&mut self) -> Vec<String> {
        self.backend
            .recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Takes every event on device `device`'s page, as the frontend does.
    fn take(&self, device: u32) -> Vec<InputEvent> {
        let page = self.backend.page(key(device)).expect("connected");
        std::iter::from_fn(|| page.take_event().unwrap())
            .map(|raw| kbdif::decode(&raw).unwrap().unwrap())
            .collect()
    }

    /// Connects device 0 as a touch screen named DP-1 that asks for everything.
    fn connected(script: &str) -> Self {
        let mut rig = Rig::new(script);
        rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
        rig.backend.look_at_everything(rig.t0);
        rig.frontend_initialised(0, 8, 7, ASKS_EVERYTHING);
        rig.backend.look_at(key(0), rig.t0);
        assert_eq!(rig.backend_state(0).as_deref(), Some("4"));
        rig
    }

    /// The states the backend wrote to device `device`, in order.
    fn states_written(&self, device: u32) -> Vec<String> {
        let node = format!("{}/state|", backend_path(key(device)));
        self.fake
            .take_requests()
            .iter()
            .filter(|request| request.msg_type == drivers::xen::xenstore::wire::MessageType::Write)
            .map(|request| request.describe())
            .filter_map(|text| text.split_once(&node).map(|(_, value)| value.to_string()))
            .collect()
    }
}

const ASKS_EVERYTHING: &[(&str, &str)] =
    &[("request-abs-pointer", "1"), ("request-multi-touch", "1")];

fn touch(contact: u8, touch: Touch) -> InputEvent {
    InputEvent::Touch { contact, touch }
}

#[test]
fn a_device_goes_init_wait_then_connected_and_gets_its_events_on_time() {
    let mut rig = Rig::new(
        "100 touch 0 down 100 200\n\
         16 touch 0 move 120 210\n\
         0 touch 0 up\n\
         0 touch 0 sync\n\
         50 abs 640 360\n\
         10 key KEY_ESC press\n",
    );
    rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
    rig.backend.start().unwrap();
    rig.backend.look_at_everything(rig.t0);
    assert_eq!(rig.backend_state(0).as_deref(), Some("2"));
    // Initialising is left to the frontend: nothing happens until it is Initialised.
    rig.backend.look_at(key(0), rig.t0);
    assert_eq!(rig.backend_state(0).as_deref(), Some("2"));
    rig.frontend_initialised(0, 8, 7, ASKS_EVERYTHING);
    rig.backend.look_at(key(0), rig.t0);
    assert_eq!(rig.backend_state(0).as_deref(), Some("4"));
    assert_eq!(
        rig.lines(),
        [
            "serving /local/domain/0/backend/vinput (script: 6 events over 176 ms)",
            "dom3 dev0: InitWait",
            "dom3 dev0: Connected (unique-id DP-1, absolute pointer 1280x720, multi-touch \
             1280x720 2 contacts); script: 6 events for this device",
        ]
    );
    // The page is mapped writable, the frontend's channel bound.
    assert_eq!(rig.gntdev.mapped_pages(), 1);
    assert_eq!(
        rig.backend
            .channels
            .state
            .borrow()
            .bound
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [(DOM, 7)]
    );
    // Nothing is due before 100 ms; then each event at its time.
    assert_eq!(rig.backend.play(rig.at(99)), Some(rig.at(100)));
    assert!(rig.take(0).is_empty());
    assert_eq!(rig.backend.play(rig.at(100)), Some(rig.at(116)));
    assert_eq!(rig.take(0), [touch(0, Touch::Down { x: 100, y: 200 })]);
    assert_eq!(rig.backend.play(rig.at(120)), Some(rig.at(166)));
    assert_eq!(
        rig.take(0),
        [
            touch(0, Touch::Motion { x: 120, y: 210 }),
            touch(0, Touch::Up),
            touch(0, Touch::Sync)
        ]
    );
    assert_eq!(rig.backend.play(rig.at(500)), None);
    assert_eq!(
        rig.take(0),
        [
            InputEvent::Position {
                x: 640,
                y: 360,
                rel_z: 0
            },
            InputEvent::Key {
                pressed: true,
                keycode: 1
            }
        ]
    );
    // One notification per batch that put events on the page.
    assert_eq!(
        rig.backend.channels.state.borrow().notified,
        [100, 100, 100]
    );
    assert_eq!(
        rig.lines(),
        [
            "dom3 dev0: event 1 of 6: touch 0 down 100 200",
            "dom3 dev0: event 2 of 6: touch 0 move 120 210",
            "dom3 dev0: event 3 of 6: touch 0 up",
            "dom3 dev0: event 4 of 6: touch 0 sync",
            "dom3 dev0: event 5 of 6: abs 640 360",
            "dom3 dev0: event 6 of 6: key KEY_ESC press",
            "dom3 dev0: script done: 6 of 6 events sent, 0 not sent, in 500 ms from \
             Connected; the ring was full 0 times",
        ]
    );
    // Said once.
    assert_eq!(rig.backend.play(rig.at(600)), None);
    assert!(rig.lines().is_empty());
    assert_eq!(
        rig.backend.summary(),
        Summary {
            connections: 1,
            sent: 6,
            skipped: 0,
            scripts_done: 1,
            failures: 0
        }
    );
}

#[test]
fn the_time_of_an_event_counts_from_its_devices_connected() {
    let mut rig = Rig::new("100 key KEY_A press\n");
    rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
    rig.backend.look_at_everything(rig.t0);
    rig.frontend_initialised(0, 8, 7, ASKS_EVERYTHING);
    // Connected at 1000 ms: the event is due at 1100 ms.
    rig.backend.look_at(key(0), rig.at(1000));
    assert_eq!(rig.backend.play(rig.at(1099)), Some(rig.at(1100)));
    assert!(rig.take(0).is_empty());
    assert_eq!(rig.backend.play(rig.at(1100)), None);
    assert_eq!(rig.take(0).len(), 1);
}

#[test]
fn each_device_gets_the_events_of_its_unique_id_and_of_every_device() {
    let mut rig = Rig::new(
        "device DP-1\n\
         0 touch 0 down 10 10\n\
         device HDMI-A-1\n\
         0 touch 1 down 20 20\n\
         device *\n\
         0 key KEY_ESC press\n",
    );
    rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
    rig.toolstack_adds(1, "HDMI-A-1", TOUCHSCREEN);
    rig.backend.look_at_everything(rig.t0);
    rig.frontend_initialised(0, 8, 7, ASKS_EVERYTHING);
    rig.frontend_initialised(1, 9, 11, ASKS_EVERYTHING);
    rig.backend.look_at_everything(rig.t0);
    let escape = InputEvent::Key {
        pressed: true,
        keycode: 1,
    };
    assert_eq!(
        rig.take(0),
        [touch(0, Touch::Down { x: 10, y: 10 }), escape]
    );
    assert_eq!(
        rig.take(1),
        [touch(1, Touch::Down { x: 20, y: 20 }), escape]
    );
    let lines = rig.lines();
    assert!(lines.contains(&"dom3 dev1: event 1 of 2: touch 1 down 20 20".to_string()));
    assert!(lines.contains(&"dom3 dev0: event 2 of 2: key KEY_ESC press".to_string()));
}

#[test]
fn a_full_ring_waits_for_the_frontend_without_losing_or_reordering_events() {
    let script: String = (0..120)
        .map(|index| format!("0 abs {index} {}\n", index % 7))
        .collect();
    let mut rig = Rig::connected(&script);
    let expected: Vec<InputEvent> = (0..120)
        .map(|index| InputEvent::Position {
            x: index,
            y: index % 7,
            rel_z: 0,
        })
        .collect();
    // Connecting put a ring's worth on the page; the rest waits, looked at again soon, not
    // at once (no busy loop).
    let now = rig.at(5);
    assert_eq!(rig.backend.play(now), Some(now + FULL_RECHECK));
    let lines = rig.lines();
    assert!(lines.contains(
        &"dom3 dev0: the ring is full (51 events the frontend has not taken); waiting for it \
          to take some"
            .to_string()
    ));
    let mut taken = Vec::new();
    // The frontend takes 10, the backend adds 10.
    let page = rig.backend.page(key(0)).unwrap();
    for _ in 0..10 {
        let raw = page.take_event().unwrap().unwrap();
        taken.push(kbdif::decode(&raw).unwrap().unwrap());
    }
    assert_eq!(
        rig.backend.play(rig.at(30)),
        Some(rig.at(30) + FULL_RECHECK)
    );
    assert_eq!(rig.backend.page(key(0)).unwrap().producer_index(), 61);
    // Then takes everything as it comes.
    let mut turn = 40;
    while taken.len() < expected.len() {
        taken.extend(rig.take(0));
        rig.backend.play(rig.at(turn));
        turn += 20;
    }
    assert_eq!(taken, expected);
    let lines = rig.lines();
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("dom3 dev0: script done: 120 of 120 events sent, 0 not sent, in ")
            && lines.last().unwrap().ends_with("the ring was full 3 times"),
        "{lines:?}"
    );
    // The full-ring line is said once per device.
    assert!(!lines.iter().any(|line| line.contains("the ring is full")));
}

#[test]
fn events_the_device_does_not_allow_are_named_and_not_sent() {
    let mut rig = Rig::new(
        "0 abs 1281 5\n\
         0 touch 2 down 1 1\n\
         0 touch 0 move 5 721\n\
         0 abs 1280 720\n\
         0 rel -3 4\n",
    );
    rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
    rig.backend.look_at_everything(rig.t0);
    rig.frontend_initialised(0, 8, 7, ASKS_EVERYTHING);
    rig.backend.look_at(key(0), rig.t0);
    assert_eq!(
        rig.take(0),
        [
            InputEvent::Position {
                x: 1280,
                y: 720,
                rel_z: 0
            },
            InputEvent::Motion {
                rel_x: -3,
                rel_y: 4,
                rel_z: 0
            }
        ]
    );
    let lines = rig.lines();
    assert_eq!(
        lines[2..5],
        [
            "dom3 dev0: event 1 of 5 not sent (script line 1): x 1281 is outside 0..=1280: \
             abs 1281 5",
            "dom3 dev0: event 2 of 5 not sent (script line 2): contact 2 is beyond the 2 \
             contacts advertised: touch 2 down 1 1",
            "dom3 dev0: event 3 of 5 not sent (script line 3): touch y 721 is outside \
             0..=720: touch 0 move 5 721",
        ]
    );
    assert_eq!(rig.backend.summary().skipped, 3);

    // A frontend that asked for neither absolute positions nor multi-touch gets neither.
    let mut rig = Rig::new("0 abs 1 1\n0 touch 0 down 1 1\n0 key BTN_LEFT press\n");
    rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
    rig.backend.look_at_everything(rig.t0);
    rig.frontend_initialised(0, 8, 7, &[]);
    rig.backend.look_at(key(0), rig.t0);
    assert_eq!(
        rig.take(0),
        [InputEvent::Key {
            pressed: true,
            keycode: 0x110
        }]
    );
    let lines = rig.lines();
    assert!(
        lines[1].ends_with("); script: 3 events for this device"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("dom3 dev0: Connected (unique-id DP-1);"));
    assert!(lines[2].contains(
        "absolute positions were not negotiated (feature-abs-pointer and request-abs-pointer)"
    ));
    assert!(lines[3].contains("a multi-touch event, but multi-touch was not negotiated"));
}

#[test]
fn hostile_frontend_data_is_named_the_device_closed_and_the_others_served() {
    let cases: &[(&str, Option<&str>, Option<&str>, &str)] = &[
        (
            "page-gref missing",
            None,
            Some("7"),
            "/local/domain/3/device/vkbd/0/page-gref is missing",
        ),
        (
            "page-gref not a number",
            Some("-8"),
            Some("7"),
            "/local/domain/3/device/vkbd/0/page-gref holds \"-8\" (a decimal number)",
        ),
        (
            "a grant not granted",
            Some("77"),
            Some("7"),
            "/local/domain/3/device/vkbd/0/page-gref: cannot map grant 77 of domain 3 (mmap): ",
        ),
        (
            "event-channel missing",
            Some("8"),
            None,
            "/local/domain/3/device/vkbd/0/event-channel is missing",
        ),
        (
            "a channel that cannot be bound",
            Some("8"),
            Some("13"),
            "/local/domain/3/device/vkbd/0/event-channel: cannot bind port 13 of domain 3 \
             (IOCTL_EVTCHN_BIND_INTERDOMAIN): ",
        ),
    ];
    for (case, gref, port, named) in cases {
        let mut rig = Rig::new("0 key KEY_ESC press\n");
        rig.backend.channels.state.borrow_mut().refused.push(13);
        rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
        rig.toolstack_adds(1, "HDMI-A-1", TOUCHSCREEN);
        rig.backend.look_at_everything(rig.t0);
        // Device 0's frontend publishes what the case says; device 1's is good.
        rig.gntdev.grant(DOM, 8, &[0; 4096], false);
        let frontend = frontend_path(0);
        if let Some(gref) = gref {
            rig.fake.write(&format!("{frontend}/page-gref"), gref);
        }
        if let Some(port) = port {
            rig.fake.write(&format!("{frontend}/event-channel"), port);
        }
        rig.fake.write(&format!("{frontend}/state"), "3");
        rig.frontend_initialised(1, 9, 11, ASKS_EVERYTHING);
        rig.fake.take_requests();
        rig.backend.look_at_everything(rig.t0);
        let lines = rig.lines();
        let expected = format!("dom3 dev0: cannot connect: {named}");
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(&expected) && line.ends_with("; closing the device")),
            "{case}: {lines:?}"
        );
        assert!(lines.contains(&"dom3 dev0: Closed (cannot connect)".to_string()));
        // Closing, then Closed; nothing of it left mapped or bound.
        assert_eq!(rig.states_written(0), ["5", "6"], "{case}");
        // The reason, readable by the frontend's domain.
        let error = rig
            .fake
            .node("/local/domain/0/error/backend/vinput/3/0/error")
            .unwrap_or_else(|| panic!("{case}: no error node"));
        assert!(
            String::from_utf8_lossy(&error.value).starts_with(named),
            "{case}"
        );
        assert_eq!(error.perms, ["n0", "r3"]);
        // Device 1 is served all the same.
        assert_eq!(rig.backend_state(1).as_deref(), Some("4"), "{case}");
        assert_eq!(rig.take(1).len(), 1);
        assert_eq!(rig.gntdev.mapped_pages(), 1, "{case}: device 1's page only");
        assert_eq!(rig.backend.channels.state.borrow().bound.len(), 1, "{case}");
        assert_eq!(rig.backend.summary().failures, 1);
        // A frontend that stays Initialised is not tried again and again.
        rig.backend.look_at_everything(rig.at(10));
        assert_eq!(rig.backend.summary().failures, 1, "{case}");
        // The device goes: so does its error node.
        rig.fake.remove(&backend_path(key(0)));
        rig.backend.look_at_everything(rig.at(20));
        assert!(
            rig.fake.paths_under("/local/domain/0/error").is_empty(),
            "{case}"
        );
    }
}

#[test]
fn a_frontend_that_closes_gets_closing_then_closed_and_everything_released() {
    let mut rig = Rig::connected("0 key KEY_A press\n1000 key KEY_B press\n");
    rig.lines();
    rig.fake.take_requests();
    rig.fake.write(&format!("{}/state", frontend_path(0)), "5");
    rig.backend.look_at(key(0), rig.at(10));
    assert_eq!(rig.states_written(0), ["5", "6"]);
    assert_eq!(
        rig.lines(),
        [
            "dom3 dev0: script stopped after 1 of 2 events (the device closed)",
            "dom3 dev0: Closed (frontend Closing)",
        ]
    );
    assert_eq!((rig.gntdev.mapped_pages(), rig.gntdev.recorded()), (0, 0));
    assert!(rig.backend.channels.state.borrow().bound.is_empty());
    // The frontend could end its grant now.
    assert_eq!(rig.gntdev.end(DOM, 8), Ok(()));
    // Nothing is played to a closed device.
    assert_eq!(rig.backend.play(rig.at(2000)), None);
    // A frontend that starts over finds InitWait, and its script starts over when Connected.
    rig.fake.write(&format!("{}/state", frontend_path(0)), "1");
    rig.backend.look_at(key(0), rig.at(3000));
    assert_eq!(rig.backend_state(0).as_deref(), Some("2"));
    rig.frontend_initialised(0, 18, 7, ASKS_EVERYTHING);
    rig.backend.look_at(key(0), rig.at(3000));
    assert_eq!(rig.backend_state(0).as_deref(), Some("4"));
    assert_eq!(rig.take(0).len(), 1);
    assert_eq!(rig.backend.play(rig.at(3999)), Some(rig.at(4000)));
    assert_eq!(rig.backend.summary().connections, 2);
}

#[test]
fn the_toolstack_removing_the_device_gets_closed_at_once_then_it_is_forgotten() {
    let mut rig = Rig::connected("0 key KEY_A press\n");
    rig.lines();
    rig.fake.take_requests();
    let backend = backend_path(key(0));
    rig.fake.write(&format!("{backend}/online"), "0");
    rig.fake.write(&format!("{backend}/state"), "5");
    rig.backend.look_at_everything(rig.at(10));
    // libxl wrote Closing and waits for Closed.
    assert_eq!(rig.states_written(0), ["6"]);
    assert_eq!(rig.gntdev.mapped_pages(), 0);
    rig.fake.remove(&backend);
    rig.fake.remove(&frontend_path(0));
    rig.backend.look_at_everything(rig.at(20));
    assert_eq!(
        rig.lines(),
        [
            "dom3 dev0: Closed (the toolstack removes the device)",
            "dom3 dev0: removed",
        ]
    );
    // Never written again once the directory is gone.
    assert!(rig.fake.node(&backend).is_none());
    assert!(rig.backend.devices.is_empty());
}

#[test]
fn a_device_left_connected_by_an_earlier_run_is_closed_and_stopping_closes_connected_ones() {
    let mut rig = Rig::new("0 key KEY_A press\n");
    rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
    rig.fake
        .write(&format!("{}/state", backend_path(key(0))), "4");
    rig.fake.write(&format!("{}/state", frontend_path(0)), "4");
    rig.backend.look_at_everything(rig.t0);
    assert_eq!(rig.backend_state(0).as_deref(), Some("6"));
    rig.lines();

    let mut rig = Rig::connected("0 key KEY_A press\n");
    rig.lines();
    rig.fake.take_requests();
    rig.backend.shutdown();
    assert_eq!(rig.states_written(0), ["5", "6"]);
    assert_eq!(rig.lines(), ["dom3 dev0: Closed (backend stopping)"]);
    assert_eq!(rig.gntdev.mapped_pages(), 0);
}

#[test]
fn a_bad_toolstack_node_is_named_too() {
    let mut rig = Rig::new("0 key KEY_A press\n");
    rig.toolstack_adds(
        0,
        "DP-1",
        &[("width", "wide"), ("feature-abs-pointer", "1")],
    );
    rig.backend.look_at_everything(rig.t0);
    rig.frontend_initialised(0, 8, 7, ASKS_EVERYTHING);
    rig.backend.look_at(key(0), rig.t0);
    assert!(rig.lines().contains(
        &"dom3 dev0: cannot connect: /local/domain/0/backend/vinput/3/0/width holds \"wide\" \
          (a decimal number); closing the device"
            .to_string()
    ));
    assert_eq!(rig.gntdev.mapped_pages(), 0);
}

#[test]
fn watch_events_name_the_device_to_look_at() {
    let mut rig = Rig::new("");
    rig.toolstack_adds(0, "DP-1", TOUCHSCREEN);
    assert_eq!(
        frontend::scope_under(BACKEND_ROOT, "/local/domain/0/backend/vinput/3/0/state"),
        Scope::Device(key(0))
    );
    assert_eq!(
        frontend::scope_under(BACKEND_ROOT, "/local/domain/0/backend/vinput/3"),
        Scope::Everything
    );
    assert_eq!(
        frontend::scope_under(BACKEND_ROOT, "/local/domain/0/backend/vdispl/3/0"),
        Scope::Elsewhere
    );
    assert_eq!(token_key("3/1"), Some(key(1)));
    assert_eq!(token_key("3/x"), None);
    // The fake fires no watch events: a rescan finds the device.
    rig.backend.handle_watch_events(rig.t0);
    assert_eq!(rig.backend_state(0).as_deref(), Some("1"));
    rig.backend.look_at_everything(rig.t0);
    assert_eq!(rig.backend_state(0).as_deref(), Some("2"));
}

#[test]
fn a_playback_wakes_at_its_next_event_or_soon_while_the_ring_is_full() {
    let script = Script::parse("10 key KEY_A press\n20 key KEY_B press\n").unwrap();
    let t0 = Instant::now();
    let mut playback = Playback::new(&script, Some("DP-1"), t0);
    assert_eq!(playback.total(), 2);
    assert!(playback.due(t0 + Duration::from_millis(9)).is_none());
    assert_eq!(playback.wake_at(t0), Some(t0 + Duration::from_millis(10)));
    assert_eq!(
        playback.due(t0 + Duration::from_millis(10)).unwrap().line,
        1
    );
    playback.full = true;
    let now = t0 + Duration::from_millis(12);
    assert_eq!(playback.wake_at(now), Some(now + FULL_RECHECK));
    playback.next = 2;
    assert!(playback.is_done());
    assert_eq!(playback.wake_at(now), None);
    assert_eq!(
        (playback.sent(), playback.skipped(), playback.waits()),
        (0, 0, 0)
    );
}
