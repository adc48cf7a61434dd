//! The fuzzing harness: one function per cargo-fuzz target, each feeding arbitrary bytes to code
//! that reads what another domain wrote (xenstored's replies, a backend's ring and event pages,
//! displif packets, EDID, a device tree). None of them may panic, loop or index out of bounds.
//!
//! The targets in `fuzz_targets/` call these functions; `kernel/tests/fuzz_regressions.rs`
//! includes this file and runs every input kept in `fuzz/regressions/<target>/` through them, so
//! `cargo test` replays past crashes without the fuzzer.

use drivers::xen::displif::{read_directory_page, Event, Request, Response};
use drivers::xen::edid::preferred_resolution;
use drivers::xen::gnttab::GrantRef;
use drivers::xen::ring::{BackRing, EventFrame, FrontRing, RingPage, Slot, RING_SLOTS, SLOT_SIZE};
use drivers::xen::vdispl::backend::{BackendModel, DirectoryReader};
use drivers::xen::vdispl::connector::Connector;
use drivers::xen::vdispl::fake::FakeDisplayBackend;
use drivers::xen::vdispl::fault::{Fault, FaultState, FAULT_MODES};
use drivers::xen::xenstore::client::Client;
use drivers::xen::xenstore::fake::FakeXenstored;
use drivers::xen::xenstore::fake_stream::FakeXenbusDevice;
use drivers::xen::xenstore::wire::{
    decode_directory, decode_error, decode_ok, decode_path, decode_transaction_id,
    decode_watch_event, Header, NodeAccess, Permission, HEADER_SIZE, XENSTORE_PAYLOAD_MAX,
};

/// A fuzz target: what each function below is.
pub type Target = fn(&[u8]);

/// Every target by name, as `cargo xtask fuzz` and the regression test know them.
pub const TARGETS: &[(&str, Target)] = &[
    ("xenstore_wire", xenstore_wire),
    ("xenstore_client", xenstore_client),
    ("xenstore_stream", xenstore_stream),
    ("rings", rings),
    ("connector", connector),
    ("displif", displif),
    ("backend", backend),
    ("ring_server", ring_server),
    ("platform", platform),
    ("kbdif", kbdif),
];

/// `data` as one 64-byte packet, zero-padded or cut.
fn slot_of(data: &[u8]) -> Slot {
    let mut slot = [0u8; SLOT_SIZE];
    let count = data.len().min(SLOT_SIZE);
    slot[..count].copy_from_slice(&data[..count]);
    slot
}

/// The xenstore message decoders: a header from the first 16 bytes, every payload decoder over
/// the whole input.
pub fn xenstore_wire(data: &[u8]) {
    if let Some(bytes) = data.first_chunk::<HEADER_SIZE>() {
        let header = Header::from_bytes(bytes);
        assert_eq!(&header.to_bytes(), bytes, "a header survives a round trip");
        if header.check().is_ok() {
            assert!(header.len as usize <= XENSTORE_PAYLOAD_MAX);
        }
    }
    let _ = decode_ok(data);
    let _ = decode_error(data);
    if let Ok(names) = decode_directory(data) {
        assert!(names
            .iter()
            .all(|name| !name.is_empty() && !name.contains('/')));
    }
    if let Ok(id) = decode_transaction_id(data) {
        assert_ne!(id, 0);
    }
    let _ = decode_path(data);
    let _ = decode_watch_event(data);
}

/// The xenstore client's ring consumer: the input is the response stream a hostile xenstored
/// sends, delivered in ring-sized steps around a watch, polls and a request.
pub fn xenstore_client(data: &[u8]) {
    let mut client = Client::new(FakeXenstored::new());
    client.set_request_timeout_ns(50_000_000);
    let watch = client.watch("/w", Box::new(|_| {}));
    client.transport_mut().send_raw(data);
    // A ring holds 1 KiB: enough rounds for the whole input to pass through.
    for _ in 0..data.len() / 512 + 4 {
        client.transport_mut().step();
        let _ = client.poll();
        client.dispatch_watches();
    }
    let _ = client.read("/x");
    let _ = client.write("/x", b"1");
    let _ = client.poll();
    client.dispatch_watches();
    if let Ok(handle) = watch {
        let _ = client.unwatch(handle);
    }
}

/// The xenstore client over a byte stream, as Dom0 runs it on `/dev/xen/xenbus`: the first byte
/// sets how many bytes each read returns (1 to 64), the rest is what a hostile xenstored sends,
/// interleaved with a caller-token watch, polls, requests and a transaction with SET_PERMS.
pub fn xenstore_stream(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut device = FakeXenbusDevice::new(FakeXenstored::with_domid(0));
    device.read_chunk = Some(usize::from(chunk % 64) + 1);
    let mut client = Client::new(device);
    client.set_request_timeout_ns(50_000_000);
    let _ = client.watch_token("/w", "w");
    client.transport_mut().daemon().send_raw(stream);
    for _ in 0..stream.len() / 512 + 4 {
        client.transport_mut().step();
        let _ = client.poll();
        while client.take_event().is_some() {}
    }
    let _ = client.read("/x");
    let owner = [Permission {
        access: NodeAccess::Read,
        domid: 0,
    }];
    let _ = client.transaction(|tx| {
        tx.write("/x", b"1")?;
        tx.set_perms("/x", &owner)
    });
    let _ = client.unwatch_token("/w", "w");
    assert_eq!(
        client.transport().dropped_bytes(),
        0,
        "each write carries at most one message"
    );
}

/// Front, back and event ring consumers over a page the peer filled: the first byte says how
/// many requests the frontend has in flight, the rest is the raw page image (indexes and slots).
pub fn rings(data: &[u8]) {
    let Some((&sent, image)) = data.split_first() else {
        return;
    };
    let page = RingPage::new_boxed();
    page.init();
    let mut front = FrontRing::new(&*page);
    for index in 0..usize::from(sent) % (RING_SLOTS + 1) {
        front
            .push_request(&slot_of(&[index as u8]))
            .expect("a ring takes RING_SLOTS requests");
    }
    front.publish();
    page.overwrite_raw(image);
    let mut taken = 0;
    while let Ok(Some(_)) = front.take_response() {
        taken += 1;
        assert!(
            taken <= RING_SLOTS,
            "more responses than requests in flight"
        );
    }
    let _ = front.final_check_for_responses();
    assert!(front.outstanding() <= RING_SLOTS);

    let mut back = BackRing::new(&*page);
    let mut requests = 0;
    while let Ok(Some(request)) = back.take_request() {
        requests += 1;
        assert!(requests <= RING_SLOTS, "more requests than slots");
        back.push_response(&request)
            .expect("a request taken can be answered");
    }
    back.publish();
    let _ = back.final_check_for_requests();

    let events = EventFrame::new_boxed();
    events.overwrite_raw(image);
    let mut count = 0;
    while let Ok(Some(_)) = events.take_event() {
        count += 1;
        assert!(
            count <= drivers::xen::ring::EVENT_SLOTS,
            "more events than slots"
        );
    }
}

/// A connector pumping a ring and an event page the backend filled: the first byte says how
/// many requests are in flight, the rest is split in two page images (ring, then events); a
/// second pump follows the first with the images swapped.
pub fn connector(data: &[u8]) {
    let Some((&sent, images)) = data.split_first() else {
        return;
    };
    let ring = RingPage::new_boxed();
    let events = EventFrame::new_boxed();
    let mut connector = Connector::new(&*ring, &*events);
    let mut ids = Vec::new();
    for cookie in 0..u64::from(sent) % (RING_SLOTS as u64 + 1) {
        let request = Request::PageFlip { fb_cookie: cookie };
        if let Ok((id, _)) = connector.send(&request, cookie) {
            ids.push(id);
        }
    }
    let (first, second) = images.split_at(images.len() / 2);
    for (ring_image, event_image) in [(first, second), (second, first)] {
        ring.overwrite_raw(ring_image);
        events.overwrite_raw(event_image);
        let _ = connector.pump();
        for &id in &ids {
            let _ = connector.take_response(id);
        }
        while connector.take_event().is_some() {}
        let _ = connector.take_stray();
        assert!(connector.in_flight().len() <= RING_SLOTS);
    }
}

/// The displif decoders over every 64-byte packet of the input (decoded requests and events
/// re-encode to packets that decode to the same value), a directory page and an EDID.
pub fn displif(data: &[u8]) {
    for packet in data.chunks(SLOT_SIZE) {
        let slot = slot_of(packet);
        if let Ok((id, request)) = Request::decode(&slot) {
            assert_eq!(Request::decode(&request.encode(id)), Ok((id, request)));
        }
        let response = Response::decode(&slot);
        assert_eq!(Response::decode(&response.encode()), response);
        if let Ok((id, event)) = Event::decode(&slot) {
            assert_eq!(Event::decode(&event.encode(id)), Ok((id, event)));
        }
    }
    let mut page = [0u8; 4096];
    let count = data.len().min(page.len());
    page[..count].copy_from_slice(&data[..count]);
    let wanted = data.first().map_or(0, |&byte| usize::from(byte) * 8);
    let (_, refs) = read_directory_page(&page, wanted);
    assert!(refs.len() <= wanted);
    if let Ok((width, height)) = preferred_resolution(data) {
        assert!(width > 0 && height > 0);
    }
}

/// Directory pages served from the fuzz input: grant `g` maps to the input from offset `g`
/// (wrapping around), zero-padded; grants the input marks as unmappable fail.
struct InputPages<'a> {
    data: &'a [u8],
    reads: usize,
}

impl DirectoryReader for InputPages<'_> {
    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]> {
        self.reads += 1;
        if self.data.is_empty() || gref % 251 == 250 {
            return None;
        }
        let start = gref as usize % self.data.len();
        let mut page = [0u8; 4096];
        let tail = &self.data[start..];
        let count = tail.len().min(page.len());
        page[..count].copy_from_slice(&tail[..count]);
        Some(page)
    }
}

/// The backend's rules: every 64-byte packet of the input is a request to one backend model,
/// whose directory pages come from the input too.
pub fn backend(data: &[u8]) {
    let mut model = BackendModel::default();
    let mut reader = InputPages { data, reads: 0 };
    for packet in data.chunks(SLOT_SIZE).take(64) {
        let slot = slot_of(packet);
        let (response, _) = model.handle(&slot, &mut reader);
        assert_eq!(response.id, u16::from_le_bytes([slot[0], slot[1]]));
    }
}

/// The ring-serving loop both display backends run (`drivers::xen::vdispl::server`, through
/// the fake backend): byte 0 picks a `--fault` mode (or none) with its count and `after`, byte 1
/// the PG_FLIP response and event delays; every 64-byte packet of the rest is a request the
/// frontend sends (in batches of up to a ring's worth), served while the clock moves; then the
/// ring page is overwritten with the input, as a frontend scribbling on it would, and served
/// again. Nothing may panic, and what waits to be sent stays within what the ring can hold.
pub fn ring_server(data: &[u8]) {
    let [mode, delays, rest @ ..] = data else {
        return;
    };
    let page = RingPage::new_boxed();
    page.init();
    let events = EventFrame::new_boxed();
    events.init();
    let mut backend = FakeDisplayBackend::new(&page, &events, InputPages { data, reads: 0 });
    backend.fault = FAULT_MODES.get(usize::from(mode % 8)).map(|&mode_of| {
        FaultState::new(Fault {
            mode: mode_of,
            connector: 0,
            count: u32::from(mode >> 6) + 1,
            after: u32::from(mode >> 3 & 7),
        })
    });
    backend.faults.response_delay_ns = u64::from(delays & 0x0f) * 1_000_000;
    backend.faults.event_delay_ns = u64::from(delays >> 4) * 1_000_000;
    let mut front = FrontRing::new(&*page);
    let packets: Vec<&[u8]> = rest.chunks(SLOT_SIZE).take(4 * RING_SLOTS).collect();
    for batch in packets.chunks(RING_SLOTS) {
        for packet in batch {
            if front.push_request(&slot_of(packet)).is_err() {
                break;
            }
        }
        front.publish();
        for _ in 0..4 {
            backend.now_ns += 5_000_000;
            if backend.step().is_err() || backend.left {
                return;
            }
            assert!(
                backend.held() <= 2 * RING_SLOTS,
                "more queued than a ring holds"
            );
            while let Ok(Some(_)) = front.take_response() {}
            while let Ok(Some(_)) = events.take_event() {}
        }
    }
    page.overwrite_raw(rest);
    backend.now_ns += 100_000_000;
    let _ = backend.step();
    assert!(
        backend.held() <= 2 * RING_SLOTS,
        "more queued than a ring holds"
    );
}

/// Device-tree validation and parsing into the platform value.
pub fn platform(data: &[u8]) {
    if let Ok(platform) = kernel::platform::parse(data) {
        let _ = format!("{platform:?}");
    }
}

/// A backend's input page: indexes and events from `data`, limits from its first 20 bytes. The
/// frontend's loop takes events until the ring is empty, skipping an overrun; every event is
/// decoded and checked against the limits. It ends within one ring's worth of events.
pub fn kbdif(data: &[u8]) {
    let word = |at: usize| {
        let mut bytes = [0u8; 4];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = data.get(at + index).copied().unwrap_or(0);
        }
        u32::from_le_bytes(bytes)
    };
    let limits = drivers::xen::kbdif::Limits {
        width: word(0),
        height: word(4),
        mt_width: word(8),
        mt_height: word(12),
        contacts: word(16) % 16,
    };
    let page = drivers::xen::kbdif::KbdPage::new_boxed();
    page.overwrite_raw(data.get(20..).unwrap_or_default());
    let mut taken = 0;
    loop {
        match page.take_event() {
            Ok(Some(raw)) => {
                taken += 1;
                assert!(
                    taken <= drivers::xen::kbdif::IN_RING_LEN,
                    "more events than slots"
                );
                if let Ok(Some(event)) = drivers::xen::kbdif::decode(&raw) {
                    let _ = limits.check(&event);
                    assert_eq!(
                        drivers::xen::kbdif::decode(&drivers::xen::kbdif::encode(&event)),
                        Ok(Some(event))
                    );
                }
            }
            Ok(None) => break,
            Err(_) => {
                page.skip_to_producer();
                assert_eq!(page.take_event(), Ok(None));
                break;
            }
        }
    }
}
