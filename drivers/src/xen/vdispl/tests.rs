//! The frontend against a fake xenstored (handshake) and a fake backend on
//! in-memory pages (requests, responses, events, faults).

use super::backend::{BackendModel, DirectoryReader, Effect, EINVAL, ENOENT, EOPNOTSUPP};
use super::config::{self, ConnectorTransport};
use super::connector::{call, write_directory, Connector, IgnoredEvent, MAX_QUEUED_EVENTS};
use super::fake::{FakeDisplayBackend, FakeWait};
use super::fault::FaultMode;
use super::VdisplError;
use crate::xen::displif::{
    buffer_pages, directory_pages, stride, DbufCreate, Event, Operation, Request, FOURCC_XRGB8888,
};
use crate::xen::gnttab::GrantRef;
use crate::xen::ring::{EventPage, RingError, SharedRing, EVENT_SLOTS};
use crate::xen::xenbus::XenbusState;
use crate::xen::xenstore::client::Client;
use crate::xen::xenstore::fake::FakeXenstored;
use std::boxed::Box;
use std::collections::BTreeMap;
use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

const SECOND: u64 = 1_000_000_000;

/// A fake xenstore holding device 0 of domain 3: connectors 0 (DP-1,
/// 1280x720) and 1 (HDMI-A-1, 800x600), its backend in InitWait offering
/// `versions`.
pub(super) fn store_with_device(versions: Option<&str>) -> Client<FakeXenstored> {
    let mut store = FakeXenstored::with_domid(3);
    let device = "device/vdispl/0";
    let backend = "/local/domain/0/backend/vdispl/3/0";
    store.set(&format!("{device}/backend"), backend.as_bytes());
    store.set(&format!("{device}/backend-id"), b"0");
    store.set(&format!("{device}/state"), b"1");
    store.set(&format!("{device}/be-alloc"), b"0");
    store.set(&format!("{device}/0/resolution"), b"1280x720");
    store.set(&format!("{device}/0/unique-id"), b"DP-1");
    store.set(&format!("{device}/1/resolution"), b"800x600");
    store.set(&format!("{device}/1/unique-id"), b"HDMI-A-1");
    store.set(&format!("{backend}/state"), b"2");
    if let Some(versions) = versions {
        store.set(&format!("{backend}/versions"), versions.as_bytes());
    }
    Client::new(store)
}

#[test]
fn devices_and_connectors_are_read_from_xenstore() {
    let mut client = store_with_device(Some("1,2"));
    assert_eq!(
        config::enumerate(&mut client).unwrap(),
        vec!["0".to_string()]
    );
    let device = config::read_device(&mut client, "0").unwrap();
    assert_eq!(device.backend, "/local/domain/0/backend/vdispl/3/0");
    assert_eq!(device.backend_id, 0);
    assert!(!device.be_alloc);
    let sizes: Vec<_> = device
        .connectors
        .iter()
        .map(|c| (c.index, c.width, c.height))
        .collect();
    assert_eq!(sizes, vec![(0, 1280, 720), (1, 800, 600)]);
    assert_eq!(device.connectors[1].unique_id, "HDMI-A-1");
    assert_eq!(config::negotiate(&mut client, &device), Ok(2));
}

#[test]
fn a_missing_versions_node_means_version_1_and_no_device_is_no_error() {
    let mut client = store_with_device(None);
    let device = config::read_device(&mut client, "0").unwrap();
    assert_eq!(config::negotiate(&mut client, &device), Ok(1));
    let mut empty = Client::new(FakeXenstored::with_domid(3));
    assert_eq!(
        config::enumerate(&mut empty).unwrap(),
        Vec::<std::string::String>::new()
    );
}

#[test]
fn bad_configuration_is_named() {
    let mut client = store_with_device(Some("3"));
    let device = config::read_device(&mut client, "0").unwrap();
    assert_eq!(
        config::negotiate(&mut client, &device),
        Err(VdisplError::NoCommonVersion("3".into()))
    );
    // A bad resolution refuses its connector alone, named with its value
    // and why; the device keeps its shape.
    let cases = [
        ("800by600", "not <width>x<height>"),
        ("0x0", "a width or height of 0"),
        ("1280x", "not <width>x<height>"),
        ("abc", "not <width>x<height>"),
        ("4294967295x1", "beyond 8192x8192"),
        ("100000x100000", "beyond 8192x8192"),
    ];
    for (value, why) in cases {
        client
            .transport_mut()
            .set("device/vdispl/0/1/resolution", value.as_bytes());
        let device = config::read_device(&mut client, "0").unwrap();
        assert_eq!(device.connectors.len(), 2);
        assert_eq!(device.connectors[0].refused, None);
        let refused = device.connectors[1].refused.as_ref().unwrap();
        assert_eq!(
            refused.to_string(),
            format!("device/vdispl/0/1/resolution holds {value:?} ({why})")
        );
    }
    // Both refused: the device is not driven, named by the first.
    client
        .transport_mut()
        .set("device/vdispl/0/0/resolution", b"1280x0");
    let error = config::read_device(&mut client, "0").unwrap_err();
    assert_eq!(
        error.to_string(),
        "device/vdispl/0/0/resolution holds \"1280x0\" (a width or height of 0)"
    );
    client
        .transport_mut()
        .set("device/vdispl/0/0/resolution", b"1280x720");
    // be-alloc is 0 or 1.
    for value in ["0", "1"] {
        client
            .transport_mut()
            .set("device/vdispl/0/be-alloc", value.as_bytes());
        assert_eq!(
            config::read_device(&mut client, "0").unwrap().be_alloc,
            value == "1"
        );
    }
    client.transport_mut().set("device/vdispl/0/be-alloc", b"2");
    assert_eq!(
        config::read_device(&mut client, "0")
            .unwrap_err()
            .to_string(),
        "device/vdispl/0/be-alloc holds \"2\""
    );
    let mut bare = Client::new(FakeXenstored::with_domid(3));
    bare.transport_mut().set("device/vdispl/0/backend", b"/b");
    bare.transport_mut().set("device/vdispl/0/backend-id", b"0");
    assert_eq!(
        config::read_device(&mut bare, "0"),
        Err(VdisplError::NoConnectors("device/vdispl/0".into()))
    );
}

#[test]
fn handshake_publishes_in_one_transaction_then_follows_the_backend() {
    let mut client = store_with_device(Some("1,2"));
    client.transport_mut().faults.eagain_commits = 1;
    let device = config::read_device(&mut client, "0").unwrap();
    config::wait_for_backend_ready(&mut client, &device, SECOND).unwrap();
    let transports = [
        ConnectorTransport {
            req_ring_ref: 10,
            req_port: 5,
            evt_ring_ref: 11,
            evt_port: 6,
        },
        ConnectorTransport {
            req_ring_ref: 12,
            req_port: 7,
            evt_ring_ref: 13,
            evt_port: 8,
        },
    ];
    config::publish(&mut client, &device, 2, &transports).unwrap();
    let backend_state = format!("{}/state", device.backend);
    let now = client.now_ns();
    client
        .transport_mut()
        .set_at(now + 50_000_000, &backend_state, b"4");
    config::complete_handshake(&mut client, &device, SECOND).unwrap();
    let store = client.transport();
    let get =
        |node: &str| std::string::String::from_utf8(store.get(node).unwrap().to_vec()).unwrap();
    assert_eq!(get("device/vdispl/0/version"), "2");
    assert_eq!(get("device/vdispl/0/0/req-ring-ref"), "10");
    assert_eq!(get("device/vdispl/0/0/req-event-channel"), "5");
    assert_eq!(get("device/vdispl/0/1/evt-ring-ref"), "13");
    assert_eq!(get("device/vdispl/0/1/evt-event-channel"), "8");
    assert_eq!(get("device/vdispl/0/state"), "4");
    assert_eq!(store.open_transactions(), 0);
}

#[test]
fn a_backend_that_never_gets_ready_times_out_with_its_state() {
    let mut client = store_with_device(Some("1,2"));
    let device = config::read_device(&mut client, "0").unwrap();
    client
        .transport_mut()
        .set(&format!("{}/state", device.backend), b"1");
    let error = config::wait_for_backend_ready(&mut client, &device, SECOND).unwrap_err();
    assert!(error.to_string().contains("Initialising"), "{error}");
    client
        .transport_mut()
        .set(&format!("{}/state", device.backend), b"2");
    let error = config::complete_handshake(&mut client, &device, SECOND).unwrap_err();
    assert!(error.to_string().contains("InitWait"), "{error}");
}

/// The request ring and event page of one connector.
pub(super) struct Pages {
    pub(super) ring: Box<SharedRing>,
    pub(super) events: Box<EventPage>,
}

/// Zeroed pages, as the frontend allocates them.
pub(super) fn pages() -> Pages {
    // SAFETY: zero is a valid value for both pages (atomics and bytes).
    unsafe {
        Pages {
            ring: Box::new(core::mem::zeroed()),
            events: Box::new(core::mem::zeroed()),
        }
    }
}

#[derive(Default, Clone)]
struct Granted(BTreeMap<GrantRef, [u8; 4096]>);

impl DirectoryReader for Granted {
    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]> {
        self.0.get(&gref).copied()
    }
}

/// A buffer's page directory as the frontend writes it, with fake grants:
/// buffer pages 1000.., directory pages 100...
fn directory_for(width: u32, height: u32, bpp: u32) -> (DbufCreate, Granted) {
    let buffer_sz = stride(width, bpp) * height;
    let pages = buffer_pages(buffer_sz);
    let buffer_refs: Vec<GrantRef> = (1000..1000 + pages as u32).collect();
    let directory_refs: Vec<GrantRef> = (100..100 + directory_pages(pages) as u32).collect();
    let mut directory = vec![[0u8; 4096]; directory_refs.len()];
    write_directory(&mut directory, &directory_refs, &buffer_refs);
    let granted = Granted(directory_refs.iter().copied().zip(directory).collect());
    let create = DbufCreate {
        dbuf_cookie: 0xd0,
        width,
        height,
        bpp,
        buffer_sz,
        flags: 0,
        gref_directory: directory_refs[0],
        data_ofs: 0,
    };
    (create, granted)
}

#[test]
fn every_request_round_trips_through_the_fake_backend() {
    let pages = pages();
    let mut front = Connector::new(&*pages.ring, &*pages.events);
    let (create, granted) = directory_for(1920, 1080, 32);
    let mut backend = FakeDisplayBackend::new(&pages.ring, &pages.events, granted);
    let mut wait = FakeWait {
        backend: &mut backend,
        now_ns: 0,
        notifications: 0,
    };
    call(&mut front, &mut wait, &Request::DbufCreate(create), SECOND).unwrap();
    let attach = Request::FbAttach {
        dbuf_cookie: 0xd0,
        fb_cookie: 0xf0,
        width: 1920,
        height: 1080,
        pixel_format: FOURCC_XRGB8888,
    };
    call(&mut front, &mut wait, &attach, SECOND).unwrap();
    let config = Request::SetConfig {
        fb_cookie: 0xf0,
        x: 0,
        y: 0,
        width: 1920,
        height: 1080,
        bpp: 32,
    };
    call(&mut front, &mut wait, &config, SECOND).unwrap();
    call(
        &mut front,
        &mut wait,
        &Request::PageFlip { fb_cookie: 0xf0 },
        SECOND,
    )
    .unwrap();
    front.pump().unwrap();
    assert_eq!(
        front.take_event(),
        Some((0, Event::PageFlip { fb_cookie: 0xf0 }))
    );
    call(
        &mut front,
        &mut wait,
        &Request::FbDetach { fb_cookie: 0xf0 },
        SECOND,
    )
    .unwrap();
    call(
        &mut front,
        &mut wait,
        &Request::DbufDestroy { dbuf_cookie: 0xd0 },
        SECOND,
    )
    .unwrap();
    assert!(wait.notifications >= 1);
    let buffer_refs = 2025;
    assert_eq!(backend.requests.len(), 6);
    assert_eq!(backend.flips, vec![(0, 0xf0)]);
    assert!(backend.model.buffers.is_empty() && backend.model.framebuffers.is_empty());
    let (create, granted) = directory_for(1920, 1080, 32);
    let mut model = BackendModel::default();
    let mut reader = granted;
    let (response, effect) = model.handle(&Request::DbufCreate(create).encode(1), &mut reader);
    assert_eq!((response.status, effect), (0, Effect::Created(0xd0)));
    assert_eq!(
        model.buffers[&0xd0].refs,
        (1000..1000 + buffer_refs).collect::<Vec<_>>()
    );
}

#[test]
fn error_statuses_reach_the_caller_with_the_operation() {
    let pages = pages();
    let mut front = Connector::new(&*pages.ring, &*pages.events);
    let (create, granted) = directory_for(64, 48, 32);
    let mut backend = FakeDisplayBackend::new(&pages.ring, &pages.events, granted);
    let mut wait = FakeWait {
        backend: &mut backend,
        now_ns: 0,
        notifications: 0,
    };
    call(&mut front, &mut wait, &Request::DbufCreate(create), SECOND).unwrap();
    // The same cookie again.
    assert_eq!(
        call(&mut front, &mut wait, &Request::DbufCreate(create), SECOND),
        Err(VdisplError::Status {
            operation: Operation::DbufCreate,
            status: EINVAL
        })
    );
    // A size that does not match width, height and bpp.
    let wrong_size = DbufCreate {
        dbuf_cookie: 0xd1,
        buffer_sz: create.buffer_sz - 4,
        ..create
    };
    assert!(matches!(
        call(
            &mut front,
            &mut wait,
            &Request::DbufCreate(wrong_size),
            SECOND
        ),
        Err(VdisplError::Status { status: EINVAL, .. })
    ));
    // Flipping an unknown framebuffer.
    assert_eq!(
        call(
            &mut front,
            &mut wait,
            &Request::PageFlip { fb_cookie: 9 },
            SECOND
        ),
        Err(VdisplError::Status {
            operation: Operation::PageFlip,
            status: ENOENT
        })
    );
    // EDID is not offered by this backend.
    let edid = Request::GetEdid {
        buffer_sz: 32768,
        gref_directory: 5,
    };
    assert!(matches!(
        call(&mut front, &mut wait, &edid, SECOND),
        Err(VdisplError::Status {
            status: EOPNOTSUPP,
            ..
        })
    ));
    wait.backend.faults.every = Some((FaultMode::Status, Some(Operation::SetConfig)));
    let config = Request::DISABLE;
    let error = call(&mut front, &mut wait, &config, SECOND).unwrap_err();
    assert_eq!(error.to_string(), "SET_CONFIG failed with status -5");
}

#[test]
fn a_directory_listing_too_few_pages_is_refused() {
    let (create, mut granted) = directory_for(1024, 1030, 32);
    // Cut the chain after the first directory page.
    granted.0.get_mut(&100).unwrap()[0..4].copy_from_slice(&0u32.to_le_bytes());
    let mut model = BackendModel::default();
    let (response, effect) = model.handle(&Request::DbufCreate(create).encode(1), &mut granted);
    assert_eq!((response.status, effect), (EINVAL, Effect::None));
    let mut unknown = Request::PageFlip { fb_cookie: 1 }.encode(2);
    unknown[2] = 0x42;
    let (response, _) = model.handle(&unknown, &mut granted);
    assert_eq!(
        (response.id, response.operation, response.status),
        (2, 0x42, EINVAL)
    );
}

#[test]
fn a_silent_backend_times_out_and_a_wrong_id_is_stray() {
    let pages = pages();
    let mut front = Connector::new(&*pages.ring, &*pages.events);
    let mut backend = FakeDisplayBackend::new(&pages.ring, &pages.events, Granted::default());
    backend.faults.every = Some((FaultMode::Silent, None));
    let mut wait = FakeWait {
        backend: &mut backend,
        now_ns: 0,
        notifications: 0,
    };
    let flip = Request::PageFlip { fb_cookie: 1 };
    assert_eq!(
        call(&mut front, &mut wait, &flip, 100_000_000),
        Err(VdisplError::Timeout {
            operation: Operation::PageFlip,
            waited_ms: 100
        })
    );
    assert!(front.in_flight().is_empty());
    wait.backend.faults.every = Some((FaultMode::WrongId, None));
    assert!(matches!(
        call(&mut front, &mut wait, &flip, 100_000_000),
        Err(VdisplError::Timeout { .. })
    ));
    assert!(!front.take_stray().is_empty());
}

#[test]
fn a_full_event_page_keeps_63_events_in_order() {
    let pages = pages();
    let mut front = Connector::new(&*pages.ring, &*pages.events);
    let mut backend = FakeDisplayBackend::new(&pages.ring, &pages.events, Granted::default());
    for cookie in 1..=EVENT_SLOTS as u64 {
        backend
            .send_event(0, &Event::PageFlip { fb_cookie: cookie })
            .unwrap();
    }
    assert_eq!(
        backend.send_event(0, &Event::PageFlip { fb_cookie: 99 }),
        Err(RingError::Full)
    );
    front.pump().unwrap();
    let cookies: Vec<u64> = core::iter::from_fn(|| front.take_event())
        .map(|(_, Event::PageFlip { fb_cookie })| fb_cookie)
        .collect();
    assert_eq!(cookies, (1..=EVENT_SLOTS as u64).collect::<Vec<_>>());
    backend
        .send_event(0, &Event::PageFlip { fb_cookie: 64 })
        .unwrap();
    front.pump().unwrap();
    assert_eq!(
        front.take_event(),
        Some((EVENT_SLOTS as u16, Event::PageFlip { fb_cookie: 64 }))
    );
    const { assert!(MAX_QUEUED_EVENTS >= EVENT_SLOTS) };
}

#[test]
fn garbage_from_the_backend_is_an_error_not_a_crash() {
    let pages = pages();
    let mut front = Connector::new(&*pages.ring, &*pages.events);
    let mut backend = FakeDisplayBackend::new(&pages.ring, &pages.events, Granted::default());
    // An event of an unknown type, then one out of sequence, then the next
    // after it, then another of an unknown type: the one of a known type in
    // sequence is taken; the first of each other kind is reported.
    let mut garbage = Event::PageFlip { fb_cookie: 1 }.encode(0);
    garbage[2] = 7;
    let mut later_garbage = garbage;
    later_garbage[0] = 11;
    for slot in [
        garbage,
        Event::PageFlip { fb_cookie: 2 }.encode(9),
        Event::PageFlip { fb_cookie: 3 }.encode(10),
        later_garbage,
    ] {
        pages.events.push_event(&slot).unwrap();
    }
    front.pump().unwrap();
    assert_eq!(
        front.take_event(),
        Some((10, Event::PageFlip { fb_cookie: 3 }))
    );
    assert_eq!(front.take_event(), None);
    assert_eq!(
        front.take_ignored(),
        [
            IgnoredEvent::UnknownType { id: 0, code: 7 },
            IgnoredEvent::OutOfSequence { id: 9, expected: 1 }
        ]
    );
    assert_eq!(
        IgnoredEvent::UnknownType { id: 0, code: 7 }.to_string(),
        "ignored event id 0 of unknown type 0x07; later ones without a line"
    );
    assert_eq!(front.ignored_events(), (2, 1));
    assert!(front.take_ignored().is_empty());
    // A garbled event page: its producer far past the slots.
    let raw = &*pages.events as *const EventPage as *mut u8;
    // SAFETY: in_prod is at offset 4 of the test's own event page.
    unsafe { raw.add(4).cast::<u32>().write_volatile(500) };
    assert!(matches!(
        front.pump(),
        Err(VdisplError::Ring(RingError::ProducerPastRing { .. }))
    ));
    // SAFETY: as above; back to what was consumed.
    unsafe { raw.add(4).cast::<u32>().write_volatile(4) };
    // A response producer far past the requests in flight.
    backend.faults.every = Some((FaultMode::Silent, None));
    front.send(&Request::PageFlip { fb_cookie: 1 }, 0).unwrap();
    backend.step().unwrap();
    let raw = &*pages.ring as *const SharedRing as *mut u8;
    // SAFETY: rsp_prod is at offset 8 of the test's own ring page.
    unsafe { raw.add(8).cast::<u32>().write_volatile(1000) };
    assert!(matches!(
        front.pump(),
        Err(VdisplError::Ring(RingError::ProducerPastRing { .. }))
    ));
}

#[test]
fn directory_pages_link_and_end_with_zero() {
    let refs: Vec<GrantRef> = (1..=2100).collect();
    let mut directory = vec![[0u8; 4096]; 3];
    write_directory(&mut directory, &[50, 51, 52], &refs);
    let link = |page: &[u8; 4096]| u32::from_le_bytes(page[0..4].try_into().unwrap());
    assert_eq!(
        directory.iter().map(link).collect::<Vec<_>>(),
        vec![51, 52, 0]
    );
    assert_eq!(
        u32::from_le_bytes(directory[2][4..8].try_into().unwrap()),
        2047
    );
    let state: XenbusState = XenbusState::Connected;
    assert_eq!(state as u32, 4);
}

#[test]
fn a_backend_left_connected_from_an_earlier_connection_is_not_ready() {
    let mut client = store_with_device(Some("1,2"));
    let device = config::read_device(&mut client, "0").unwrap();
    let backend_state = format!("{}/state", device.backend);
    client.transport_mut().set(&backend_state, b"4");
    let error = config::wait_for_backend_ready(&mut client, &device, SECOND).unwrap_err();
    assert!(error.to_string().contains("Connected"), "{error}");
    // A restarted backend closes the stale connection and offers InitWait again.
    let now = client.now_ns();
    client
        .transport_mut()
        .set_at(now + 50_000_000, &backend_state, b"2");
    assert_eq!(
        config::wait_for_backend_ready(&mut client, &device, SECOND).unwrap(),
        XenbusState::InitWait
    );
}
