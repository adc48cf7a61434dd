use super::capture::copy_source;
use super::ring_service::{answer, Notifier, VBLANK_PERIOD};
use super::*;
use crate::capture::CapturedFrame;
use crate::frame_copy::{copy_frame, Gate};
use crate::frame_copy::{Completed, CopyOutcome};
use crate::grant_map::fake::{EndError, FakeGntdev};
use drivers::xen::displif::{self, Request, Response};
use drivers::xen::displif::{DbufCreate, FOURCC_XRGB8888};
use drivers::xen::ring::FrontRing;
use drivers::xen::ring::Slot;
use drivers::xen::vdispl::backend::Shown;
use drivers::xen::vdispl::backend::EINVAL;
use drivers::xen::vdispl::server::Outgoing;
use std::cell::RefCell;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

const DOMID: u32 = 1;
const KEY: DeviceKey = DeviceKey {
    domid: DOMID,
    device: 0,
};
const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
/// The fake frontend's references, reused by every connection as a frontend's free list
/// hands them out again: a grant the backend kept mapped could not be ended, and granting
/// it again would fail the test.
const RING_REF: u32 = 8;
const EVENT_REF: u32 = 9;
const DIRECTORY_REF: u32 = 3422;
const BUFFER_REFS: [u32; 3] = [20, 21, 22];

fn directory_page(next: u32, refs: &[u32]) -> Vec<u8> {
    std::iter::once(next)
        .chain(refs.iter().copied())
        .flat_map(u32::to_le_bytes)
        .collect()
}

/// The fake frontend grants a connector's ring and event page, a 64x48 XRGB8888 buffer
/// whose pixel `n` is `n | seed << 24`, and its page directory.
fn grant_connection(fake: &FakeGntdev, seed: u8) {
    grant_connection_of(fake, DOMID, seed);
}

fn grant_connection_of(fake: &FakeGntdev, domid: u32, seed: u8) {
    fake.grant(domid, RING_REF, &[], false);
    fake.grant(domid, EVENT_REF, &[], false);
    let pixels: Vec<u8> = (0..WIDTH * HEIGHT)
        .flat_map(|n| (n | u32::from(seed) << 24).to_le_bytes())
        .collect();
    for (page, gref) in pixels.chunks(4096).zip(BUFFER_REFS) {
        fake.grant(domid, gref, page, true);
    }
    fake.grant(domid, DIRECTORY_REF, &directory_page(0, &BUFFER_REFS), true);
}

/// The fake frontend ends every grant of a connection, as a frontend tearing it down does.
fn end_connection(fake: &FakeGntdev) -> Vec<(u32, EndError)> {
    end_connection_of(fake, DOMID)
}

fn end_connection_of(fake: &FakeGntdev, domid: u32) -> Vec<(u32, EndError)> {
    [RING_REF, EVENT_REF, DIRECTORY_REF]
        .into_iter()
        .chain(BUFFER_REFS)
        .filter_map(|gref| fake.end(domid, gref).err().map(|error| (gref, error)))
        .collect()
}

fn config() -> ConnectorConfig {
    ConnectorConfig {
        index: 0,
        unique_id: "DP-1".into(),
        resolution: Ok((WIDTH, HEIGHT)),
        req_ring_ref: RING_REF,
        req_port: 5,
        evt_ring_ref: EVENT_REF,
        evt_port: 6,
    }
}

/// What `connect` builds for one connector, mapped through `grants` (no event channels).
fn connect_link(grants: &GrantMapper) -> Link {
    connect_link_of(grants, DOMID)
}

fn connect_link_of(grants: &GrantMapper, domid: u32) -> Link {
    link_showing_0xf0(grants, domid, config())
}

/// A link for `config`'s one connector, its pages mapped through `grants` (no event channels),
/// the connector on and showing framebuffer 0xf0 at 64x48, as a SET_CONFIG leaves it: these
/// tests flip right after FB_ATTACH.
pub(super) fn link_showing_0xf0(grants: &GrantMapper, domid: u32, config: ConnectorConfig) -> Link {
    let (ring, events) = map_connector_pages(grants, domid, &config).unwrap();
    let mut model = BackendModel::for_connectors(Strictness::Lenient, [(0, WIDTH, HEIGHT)]);
    model.shown.insert(
        0,
        Shown {
            fb_cookie: 0xf0,
            width: WIDTH,
            height: HEIGHT,
        },
    );
    let mut link = Link::new(LinkState {
        version: 2,
        strict: false,
        vblank: None,
        model,
        buffers: HashMap::new(),
        connectors: Vec::new(),
    });
    link.push(Connector::new(config, ring, events, 11, 12));
    link
}

fn send(
    link: &mut Link,
    grants: &GrantMapper,
    summary: &mut Summary,
    id: u16,
    request: Request,
) -> (Response, Option<u64>) {
    answer(
        KEY,
        0,
        &mut link.state,
        grants,
        &request.encode(id),
        summary,
    )
}

fn create() -> Request {
    Request::DbufCreate(DbufCreate {
        dbuf_cookie: 0xd0,
        width: WIDTH,
        height: HEIGHT,
        bpp: 32,
        buffer_sz: displif::stride(WIDTH, 32) * HEIGHT,
        flags: 0,
        gref_directory: DIRECTORY_REF,
        data_ofs: 0,
    })
}

/// Copies the framebuffer `fb_cookie` out of its display buffer on this thread, as a copy
/// thread does.
fn capture(
    key: DeviceKey,
    index: usize,
    link: &Link,
    fb_cookie: u64,
    seq: u64,
) -> Result<CapturedFrame, String> {
    let (source, _) = copy_source(key, index, &link.state, fb_cookie, seq)?;
    let bytes = copy_frame(&source, &AtomicBool::new(false), |_| {}).unwrap();
    Ok(CapturedFrame {
        domid: source.domid,
        connector: source.connector,
        seq,
        layout: source.layout,
        bytes,
    })
}

#[test]
fn fifty_reconnections_in_a_row_map_every_buffer_and_leave_nothing_mapped() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    for cycle in 0..50u8 {
        grant_connection(&fake, cycle);
        let mut link = connect_link(&grants);
        let mut summary = Summary::default();
        let (created, _) = send(&mut link, &grants, &mut summary, 6, create());
        assert_eq!(created.status, 0, "cycle {cycle}: DBUF_CREATE");
        let attach = Request::FbAttach {
            dbuf_cookie: 0xd0,
            fb_cookie: 0xf0,
            width: WIDTH,
            height: HEIGHT,
            pixel_format: FOURCC_XRGB8888,
        };
        assert_eq!(
            send(&mut link, &grants, &mut summary, 7, attach).0.status,
            0
        );
        let flip = Request::PageFlip { fb_cookie: 0xf0 };
        let (flipped, shown) = send(&mut link, &grants, &mut summary, 8, flip);
        assert_eq!((flipped.status, shown), (0, Some(0xf0)));
        // The frame copied out of the mapped buffer is this connection's.
        let frame = capture(KEY, 0, &link, 0xf0, u64::from(cycle)).unwrap();
        assert_eq!(
            frame.bytes[4..8],
            (1 | u32::from(cycle) << 24).to_le_bytes()
        );
        assert_eq!(summary.rejected, 0);
        // Ring, event page and buffer: three ranges, five pages mapped until the close.
        assert_eq!((fake.recorded(), fake.mapped_pages()), (3, 5));
        // The frontend closes without destroying its buffer; the backend lets go of all.
        unmap_link(KEY, link, None, &mut Summary::default());
        assert_eq!(
            (fake.recorded(), fake.mapped_pages()),
            (0, 0),
            "cycle {cycle}"
        );
        assert_eq!(end_connection(&fake), [], "cycle {cycle}");
    }
    assert_eq!(fake.granted(), 0);
}

#[test]
fn a_request_left_by_a_frontend_that_ended_its_grants_is_refused_and_leaks_nothing() {
    // What the rig saw after each reconnection under load: the backend, late, takes a
    // DBUF_CREATE from a ring the frontend has given up on (its request timed out and it
    // ended the directory grant); Xen refuses the grant map, gntdev's mmap says EINVAL.
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 0);
    let mut link = connect_link(&grants);
    assert_eq!(fake.end(DOMID, DIRECTORY_REF), Ok(()));
    let mut summary = Summary::default();
    let (response, _) = send(&mut link, &grants, &mut summary, 6, create());
    assert_eq!((response.status, summary.rejected), (EINVAL, 1));
    assert!(link.state.buffers.is_empty() && link.state.model.buffers.is_empty());
    // Only the ring and the event page stay mapped, and only until the close.
    assert_eq!((fake.recorded(), fake.mapped_pages()), (2, 2));
    unmap_link(KEY, link, None, &mut Summary::default());
    assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
    // The next connection maps everything again, the directory under the same reference.
    assert_eq!(
        end_connection(&fake),
        [(DIRECTORY_REF, EndError::NotGranted)]
    );
    grant_connection(&fake, 1);
    let mut link = connect_link(&grants);
    let (response, _) = send(&mut link, &grants, &mut summary, 6, create());
    assert_eq!(response.status, 0);
    unmap_link(KEY, link, None, &mut Summary::default());
    assert_eq!(end_connection(&fake), []);
}

#[test]
fn a_destroyed_buffer_and_a_failed_buffer_map_are_released_at_once() {
    // Room for the ring, the event page, the directory page and not the buffer.
    let fake = Arc::new(FakeGntdev::with_max_mapped(4));
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 0);
    let mut link = connect_link(&grants);
    let mut summary = Summary::default();
    let (response, _) = send(&mut link, &grants, &mut summary, 6, create());
    assert_eq!((response.status, summary.rejected), (EINVAL, 1));
    assert_eq!((fake.recorded(), fake.mapped_pages()), (2, 2));
    unmap_link(KEY, link, None, &mut Summary::default());
    assert_eq!(end_connection(&fake), []);

    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 0);
    let mut link = connect_link(&grants);
    assert_eq!(
        send(&mut link, &grants, &mut summary, 6, create()).0.status,
        0
    );
    let destroy = Request::DbufDestroy { dbuf_cookie: 0xd0 };
    assert_eq!(
        send(&mut link, &grants, &mut summary, 7, destroy).0.status,
        0
    );
    assert_eq!((fake.recorded(), fake.mapped_pages()), (2, 2));
    for gref in BUFFER_REFS.into_iter().chain([DIRECTORY_REF]) {
        assert_eq!(fake.end(DOMID, gref), Ok(()));
    }
    unmap_link(KEY, link, None, &mut Summary::default());
    assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
}

/// Event channel notifications, recorded.
#[derive(Default)]
struct Recorder(RefCell<Vec<u32>>);

impl Notifier for Recorder {
    fn signal(&self, _key: DeviceKey, port: u32) {
        self.0.borrow_mut().push(port);
    }
}

/// Copy threads that stop before each copy's first chunk: they say which copy through
/// `started` and go on when the test sends on `go` (or drops it).
struct Gated {
    copier: Copier,
    started: Receiver<JobId>,
    go: Sender<()>,
}

fn gated(threads: usize) -> Gated {
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (started_tx, go_rx) = (Mutex::new(started_tx), Mutex::new(go_rx));
    let gate: Gate = Arc::new(move |job, chunk| {
        if chunk == 0 {
            let _ = started_tx.lock().unwrap().send(job);
            let _ = go_rx.lock().unwrap().recv();
        }
    });
    Gated {
        copier: Copier::start_gated(threads, gate).unwrap(),
        started,
        go,
    }
}

impl Gated {
    fn finish(self) -> Vec<Completed> {
        drop(self.go);
        self.copier.finish()
    }
}

/// The other side of a connector's ring and event page.
struct Frontend(FrontRing<RingMapping>);

impl Frontend {
    fn of(link: &Link) -> Self {
        Frontend(FrontRing::new(link.state.connectors[0].ring_page.clone()))
    }

    fn send(&mut self, requests: &[(u16, Request)]) {
        for (id, request) in requests {
            self.0.push_request(&request.encode(*id)).unwrap();
        }
        self.0.publish();
    }

    /// The responses published so far: (id, status).
    fn answers(&mut self) -> Vec<(u16, i32)> {
        std::iter::from_fn(|| self.0.take_response().unwrap())
            .map(|slot| {
                let response = Response::decode(&slot);
                (response.id, response.status)
            })
            .collect()
    }
}

/// EVT_PG_FLIP events on the connector's event page so far.
fn flip_events(link: &Link) -> usize {
    std::iter::from_fn(|| link.served[0].events().take_event().unwrap()).count()
}

fn attach() -> Request {
    Request::FbAttach {
        dbuf_cookie: 0xd0,
        fb_cookie: 0xf0,
        width: WIDTH,
        height: HEIGHT,
        pixel_format: FOURCC_XRGB8888,
    }
}

const FLIP: Request = Request::PageFlip { fb_cookie: 0xf0 };

/// Serves connector 0 of `link` as the backend's loop does.
fn serve(
    key: DeviceKey,
    link: &mut Link,
    grants: &GrantMapper,
    copier: Option<&Copier>,
    summary: &mut Summary,
) -> bool {
    let notifier = Recorder::default();
    let mut state_back = None;
    let mut rings = Rings {
        grants,
        notifier: &notifier,
        fault: None,
        copier,
        summary,
        state_back: &mut state_back,
    };
    serve_ring(&mut rings, key, 0, link).unwrap()
}

fn copied(completed: &Completed) -> &CapturedFrame {
    match &completed.outcome {
        CopyOutcome::Copied(frame) => frame,
        CopyOutcome::Cancelled => panic!("seq {} was cancelled", completed.seq),
    }
}

#[test]
fn a_flip_is_answered_while_its_frame_is_copied_and_the_next_one_waits_for_that_copy() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 5);
    let mut link = connect_link(&grants);
    let mut front = Frontend::of(&link);
    let gated = gated(1);
    let copier = Some(&gated.copier);
    let mut summary = Summary::default();

    front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    assert!(!serve(KEY, &mut link, &grants, copier, &mut summary));
    // Flip 0 is answered, its event sent, while its copy has not even started.
    assert_eq!(front.answers(), [(1, 0), (2, 0), (3, 0)]);
    assert_eq!(flip_events(&link), 1);
    let first = gated.started.recv().unwrap();

    // Flip 1 while copy 0 runs: held, and nothing after it is taken.
    front.send(&[(4, FLIP), (5, attach())]);
    assert!(!serve(KEY, &mut link, &grants, copier, &mut summary));
    assert_eq!(front.answers(), []);
    assert_eq!(flip_events(&link), 0);
    // Looking again (an event, the poll waking up) does not release it either.
    assert!(!serve(KEY, &mut link, &grants, copier, &mut summary));
    assert_eq!((front.answers(), summary.held), (vec![], 1));

    // Copy 0 ends: the copy thread wakes the loop, which serves the ring again.
    gated.go.send(()).unwrap();
    let completed = gated.copier.wait_completed();
    assert_eq!((completed.job, completed.seq), (first, 0));
    assert_eq!(
        copied(&completed).bytes[4..8],
        (1u32 | 5 << 24).to_le_bytes()
    );
    deliver(completed, None, &mut summary);
    assert!(serve(KEY, &mut link, &grants, copier, &mut summary));
    assert_eq!(front.answers(), [(4, 0)]);
    assert_eq!(flip_events(&link), 1);
    // Then the request after it (a duplicate FB_ATTACH, refused), and copy 1 is taken.
    assert!(!serve(KEY, &mut link, &grants, copier, &mut summary));
    assert_eq!(front.answers().len(), 1);
    gated.started.recv().unwrap();
    gated.go.send(()).unwrap();
    assert_eq!(gated.copier.wait_completed().seq, 1);
    assert_eq!(
        (summary.flips, summary.copied, summary.not_captured),
        (2, 1, 0)
    );
    assert!(gated.finish().is_empty());
    drop(front);
    unmap_link(KEY, link, None, &mut summary);
    assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
}

#[test]
fn a_copy_not_started_gives_way_to_the_next_flip_and_other_devices_are_served_meanwhile() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    let other = DeviceKey {
        domid: 2,
        device: 0,
    };
    grant_connection_of(&fake, DOMID, 1);
    grant_connection_of(&fake, other.domid, 2);
    let (mut link, mut other_link) = (connect_link(&grants), connect_link_of(&grants, 2));
    let (mut front, mut other_front) = (Frontend::of(&link), Frontend::of(&other_link));
    // One copy thread, held up by the other device's copy.
    let gated = gated(1);
    let copier = Some(&gated.copier);
    let mut summary = Summary::default();
    other_front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    serve(other, &mut other_link, &grants, copier, &mut summary);
    assert_eq!(other_front.answers().len(), 3);
    let busy = gated.started.recv().unwrap();

    front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    serve(KEY, &mut link, &grants, copier, &mut summary);
    assert_eq!(front.answers().len(), 3);
    // Flip 1 comes while copy 0 still waits for the thread: frame 0 is dropped (and
    // named), flip 1 answered at once.
    front.send(&[(4, FLIP)]);
    serve(KEY, &mut link, &grants, copier, &mut summary);
    assert_eq!(front.answers(), [(4, 0)]);
    assert_eq!((summary.not_captured, summary.held), (1, 0));
    // The other device's next flip is held for its copy; this device is not.
    other_front.send(&[(4, FLIP)]);
    serve(other, &mut other_link, &grants, copier, &mut summary);
    assert_eq!(other_front.answers(), []);

    gated.go.send(()).unwrap();
    let completed = gated.copier.wait_completed();
    assert_eq!(
        (completed.job, completed.domid, completed.seq),
        (busy, 2, 0)
    );
    serve(other, &mut other_link, &grants, copier, &mut summary);
    assert_eq!(other_front.answers(), [(4, 0)]);
    // This device's frame 1 is the next copy; frame 0 never is.
    gated.started.recv().unwrap();
    gated.go.send(()).unwrap();
    let completed = gated.copier.wait_completed();
    assert_eq!((completed.domid, completed.seq), (DOMID, 1));
    assert_eq!(
        copied(&completed).bytes[4..8],
        (1u32 | 1 << 24).to_le_bytes()
    );
    let rest: Vec<(u32, u64)> = gated
        .finish()
        .iter()
        .map(|completed| (completed.domid, completed.seq))
        .collect();
    assert_eq!(rest, [(2, 1)]);
    drop((front, other_front));
    unmap_link(KEY, link, None, &mut summary);
    unmap_link(other, other_link, None, &mut summary);
    assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
}

#[test]
fn a_buffer_destroyed_during_its_copy_stays_mapped_until_the_copy_is_over() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 3);
    let mut link = connect_link(&grants);
    let mut front = Frontend::of(&link);
    let gated = gated(1);
    let copier = Some(&gated.copier);
    let mut summary = Summary::default();
    front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    serve(KEY, &mut link, &grants, copier, &mut summary);
    assert_eq!(front.answers().len(), 3);
    gated.started.recv().unwrap();

    // The frontend tears down while frame 0 is being copied: FB_DETACH is answered, the
    // DBUF_DESTROY of the buffer being read waits, with its pages mapped.
    let destroy = Request::DbufDestroy { dbuf_cookie: 0xd0 };
    front.send(&[(4, Request::FbDetach { fb_cookie: 0xf0 }), (5, destroy)]);
    assert!(!serve(KEY, &mut link, &grants, copier, &mut summary));
    assert_eq!(front.answers(), [(4, 0)]);
    assert_eq!((fake.recorded(), fake.mapped_pages()), (3, 5));
    assert_eq!(fake.end(DOMID, BUFFER_REFS[0]), Err(EndError::Busy));

    gated.go.send(()).unwrap();
    let completed = gated.copier.wait_completed();
    assert_eq!(
        copied(&completed).bytes[8..12],
        (2u32 | 3 << 24).to_le_bytes()
    );
    assert!(completed.unmapped.is_none());
    serve(KEY, &mut link, &grants, copier, &mut summary);
    assert_eq!(front.answers(), [(5, 0)]);
    assert_eq!((fake.recorded(), fake.mapped_pages()), (2, 2));
    for gref in BUFFER_REFS.into_iter().chain([DIRECTORY_REF]) {
        assert_eq!(fake.end(DOMID, gref), Ok(()));
    }
    assert!(gated.finish().is_empty());
    unmap_link(KEY, link, None, &mut summary);
}

#[test]
fn a_device_closed_during_a_copy_is_released_without_waiting_and_the_copy_unmaps_last() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    let other = DeviceKey {
        domid: 2,
        device: 0,
    };
    grant_connection_of(&fake, DOMID, 1);
    grant_connection_of(&fake, other.domid, 2);
    let (mut link, mut other_link) = (connect_link(&grants), connect_link_of(&grants, 2));
    let (mut front, mut other_front) = (Frontend::of(&link), Frontend::of(&other_link));
    let gated = gated(1);
    let copier = Some(&gated.copier);
    let mut summary = Summary::default();
    front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    serve(KEY, &mut link, &grants, copier, &mut summary);
    gated.started.recv().unwrap();
    // The other device's copy waits for the only thread.
    other_front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    serve(other, &mut other_link, &grants, copier, &mut summary);
    assert_eq!(fake.mapped_pages(), 10);

    drop((front, other_front));
    // Both devices close. The copy not started is withdrawn and its buffer unmapped at
    // once; the running one is cancelled, and closing does not wait for it (its thread is
    // stopped in the gate: waiting would never return).
    unmap_link(other, other_link, copier, &mut summary);
    assert_eq!(summary.not_captured, 1);
    assert_eq!(end_connection_of(&fake, other.domid), []);
    unmap_link(KEY, link, copier, &mut summary);
    // Only the buffer being read is left mapped, by the copy.
    assert_eq!((fake.recorded(), fake.mapped_pages()), (1, 3));
    assert_eq!(fake.end(DOMID, BUFFER_REFS[0]), Err(EndError::Busy));

    gated.go.send(()).unwrap();
    let completed = gated.copier.wait_completed();
    assert!(matches!(completed.outcome, CopyOutcome::Cancelled));
    assert!(matches!(completed.unmapped, Some(Ok(()))));
    assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
    deliver(completed, None, &mut summary);
    assert_eq!((summary.not_captured, summary.copied), (2, 0));
    assert_eq!(end_connection(&fake), []);
    assert!(gated.finish().is_empty());
    assert_eq!(fake.granted(), 0);
}

#[test]
fn without_copies_no_answer_is_held() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 0);
    let mut link = connect_link(&grants);
    let mut front = Frontend::of(&link);
    let mut summary = Summary::default();
    front.send(&[(1, create()), (2, attach()), (3, FLIP), (4, FLIP)]);
    // One flip per turn, then the next.
    assert!(serve(KEY, &mut link, &grants, None, &mut summary));
    assert!(!serve(KEY, &mut link, &grants, None, &mut summary));
    assert_eq!(front.answers(), [(1, 0), (2, 0), (3, 0), (4, 0)]);
    assert_eq!((summary.flips, summary.held, summary.copied), (2, 0, 0));
    unmap_link(KEY, link, None, &mut summary);
}

#[test]
fn the_vblank_clock_ticks_at_60_hz_and_never_answers_now() {
    let epoch = 5_000_000_000;
    let period = VBLANK_PERIOD.as_nanos() as u64;
    let clock = Vblank { epoch_ns: epoch };
    assert_eq!(clock.next_after(epoch), epoch + period);
    let mid = epoch + 20_000_000;
    assert_eq!(clock.next_after(mid), epoch + period * 2);
    let on_tick = epoch + period * 3;
    assert_eq!(clock.next_after(on_tick), epoch + period * 4);
    // Before the epoch (a clock read late): the first vblank after it.
    assert_eq!(clock.next_after(epoch - 1), epoch + period);
    assert_eq!(VBLANK_PERIOD.as_nanos() * 60, 1_000_000_020);
}

#[test]
fn a_strict_backend_answers_the_flip_and_holds_its_event_for_the_vblank() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 5);
    let mut link = connect_link(&grants);
    let epoch = monotonic_ns();
    link.state.vblank = Some(Vblank { epoch_ns: epoch });
    let mut front = Frontend::of(&link);
    let mut summary = Summary::default();
    front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    serve(KEY, &mut link, &grants, None, &mut summary);
    // The answer is out, the event waits for the next vblank.
    assert_eq!(front.answers(), [(1, 0), (2, 0), (3, 0)]);
    assert_eq!(flip_events(&link), 0);
    let due: Vec<Outgoing> = link.served[0]
        .events_due()
        .map(|(at, event)| {
            assert!(at > epoch && (at - epoch).is_multiple_of(VBLANK_PERIOD.as_nanos() as u64));
            event
        })
        .collect();
    assert_eq!(due, [Outgoing::PageFlip(0xf0)]);
    drop(front);
    unmap_link(KEY, link, None, &mut summary);
    assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
}
/// Connector 1's ring and event page, granted beside connector 0's.
const REFUSED_RING_REF: u32 = 12;
const REFUSED_EVENT_REF: u32 = 13;

/// `connect_link` with a second connector whose `resolution` is refused, as `connect`
/// builds it: its pages mapped and its ports bound like connector 0's.
fn connect_link_with_refused_connector(grants: &GrantMapper) -> Link {
    let mut link = connect_link(grants);
    let refused = ConnectorConfig {
        index: 1,
        unique_id: "HDMI-A-1".into(),
        resolution: Err(frontend::ResolutionRefusal {
            path: "/local/domain/1/device/vdispl/0/1/resolution".into(),
            value: "0x0".into(),
            reason: displif::ResolutionError::Zero,
        }),
        req_ring_ref: REFUSED_RING_REF,
        req_port: 7,
        evt_ring_ref: REFUSED_EVENT_REF,
        evt_port: 8,
    };
    let (ring, events) = map_connector_pages(grants, DOMID, &refused).unwrap();
    link.push(Connector::new(refused, ring, events, 13, 14));
    link
}

/// Serves connector `index` of `link` once, as the backend's loop does; whether requests
/// are left, and the ports notified.
fn serve_connector(
    link: &mut Link,
    index: usize,
    grants: &GrantMapper,
    summary: &mut Summary,
) -> (bool, Vec<u32>) {
    let notifier = Recorder::default();
    let mut state_back = None;
    let mut rings = Rings {
        grants,
        notifier: &notifier,
        fault: None,
        copier: None,
        summary,
        state_back: &mut state_back,
    };
    let left = serve_ring(&mut rings, KEY, index, link).unwrap();
    (left, notifier.0.take())
}

#[test]
fn a_refused_connector_gets_einval_for_its_own_requests_and_the_other_flips() {
    let fake = Arc::new(FakeGntdev::default());
    let grants = GrantMapper::over(fake.clone());
    grant_connection(&fake, 7);
    fake.grant(DOMID, REFUSED_RING_REF, &[], false);
    fake.grant(DOMID, REFUSED_EVENT_REF, &[], false);
    let mut link = connect_link_with_refused_connector(&grants);
    assert_eq!(
        describe_link(&link),
        "protocol version 2, 2 connectors (conn0 DP-1 64x48, conn1 HDMI-A-1 refused)"
    );
    let mut front = Frontend::of(&link);
    let mut refused_front = FrontRing::new(link.state.connectors[1].ring_page.clone());
    // SHARED_RING_INIT, so that the backend's answers come with a notification.
    refused_front.shared().init();
    let mut summary = Summary::default();

    // What concerns connector 1 itself, sent on its own ring (SET_CONFIG, PG_FLIP, GET_EDID,
    // a request of an unknown operation), is answered -EINVAL with its id and operation.
    let mut sent: Vec<(u16, u8)> = Vec::new();
    let config = Request::SetConfig {
        fb_cookie: 0x21,
        x: 0,
        y: 0,
        width: WIDTH,
        height: HEIGHT,
        bpp: 32,
    };
    let edid = Request::GetEdid {
        buffer_sz: 4096,
        gref_directory: 99,
    };
    for (id, request) in [(1u16, config), (2, edid), (3, FLIP)] {
        let slot = request.encode(id);
        sent.push((id, slot[2]));
        refused_front.push_request(&slot).unwrap();
    }
    let mut unknown = [0u8; 64];
    unknown[..3].copy_from_slice(&[4, 0, 0x7f]);
    refused_front.push_request(&unknown).unwrap();
    sent.push((4, 0x7f));
    refused_front.publish();
    let (left, notified) = serve_connector(&mut link, 1, &grants, &mut summary);
    assert!(!left);
    assert_eq!(notified, [13], "its own request port");
    let answers: Vec<Slot> =
        std::iter::from_fn(|| refused_front.take_response().unwrap()).collect();
    assert_eq!(answers.len(), 4);
    for (slot, (id, operation)) in answers.iter().zip(&sent) {
        // struct xendispl_resp: uint16_t id, uint8_t operation, uint8_t reserved,
        // int32_t status (little-endian), then reserved bytes.
        assert_eq!(slot[0..2], id.to_le_bytes());
        assert_eq!(slot[2], *operation);
        assert_eq!(slot[4..8], [0xea, 0xff, 0xff, 0xff], "-22, XEN_EINVAL");
        assert!(slot[8..].iter().all(|&byte| byte == 0));
    }
    assert_eq!(summary.rejected, 4);
    // Nothing was created for it, and no event went on its page.
    assert!(link.state.model.buffers.is_empty() && link.state.buffers.is_empty());
    assert!(link.served[1].events().take_event().unwrap().is_none());

    // Connector 0 creates its buffer on its own ring and flips as usual.
    front.send(&[(1, create()), (2, attach()), (3, FLIP)]);
    let (left, _) = serve_connector(&mut link, 0, &grants, &mut summary);
    assert!(!left);
    assert_eq!(front.answers(), [(1, 0), (2, 0), (3, 0)]);
    assert_eq!(flip_events(&link), 1);
    assert_eq!((summary.flips, summary.rejected), (1, 4));
    // ...and a request it sends after them is still refused on connector 1's ring.
    refused_front.push_request(&FLIP.encode(5)).unwrap();
    refused_front.publish();
    serve_connector(&mut link, 1, &grants, &mut summary);
    let slot = refused_front.take_response().unwrap().unwrap();
    assert_eq!(
        (&slot[0..2], &slot[4..8]),
        (&[5, 0][..], &[0xea, 0xff, 0xff, 0xff][..])
    );
    assert_eq!((summary.flips, summary.rejected), (1, 5));
    // The buffer and framebuffer requests serve every connector (displif.h puts them on
    // connector 0's ring, which may be the refused one): they are served on its ring too.
    let buffers = link.state.model.buffers.len();
    let Request::DbufCreate(mut second) = create() else {
        unreachable!("create() is a DBUF_CREATE")
    };
    second.dbuf_cookie = 0x77;
    refused_front
        .push_request(&Request::DbufCreate(second).encode(6))
        .unwrap();
    refused_front.publish();
    serve_connector(&mut link, 1, &grants, &mut summary);
    let slot = refused_front.take_response().unwrap().unwrap();
    assert_eq!((&slot[0..2], &slot[4..8]), (&[6, 0][..], &[0, 0, 0, 0][..]));
    assert_eq!(link.state.model.buffers.len(), buffers + 1);

    drop((front, refused_front));
    unmap_link(KEY, link, None, &mut summary);
    assert_eq!((fake.recorded(), fake.mapped_pages()), (0, 0));
    assert_eq!(end_connection(&fake), []);
    assert_eq!(fake.end(DOMID, REFUSED_RING_REF), Ok(()));
    assert_eq!(fake.end(DOMID, REFUSED_EVENT_REF), Ok(()));
}

#[test]
fn a_message_is_cut_at_a_character_boundary() {
    assert_eq!(clip("abc", 8), "abc");
    assert_eq!(clip("abcdef", 4), "abcd");
    assert_eq!(clip("ab\u{e9}d", 3), "ab");
}

#[test]
fn the_error_node_is_readable_by_the_frontend_and_goes_with_the_directories_it_left() {
    use crate::xenbus::fake::FakeXenstored;
    let key = DeviceKey {
        domid: 3,
        device: 0,
    };
    let node = "/local/domain/0/error/backend/vdispl/3/0/error";
    let (fake, mut store) = FakeXenstored::start();
    fake.write(&format!("{}/state", key.backend_path()), "2");
    // Another backend's error node, which stays.
    fake.write(
        "/local/domain/0/error/backend/vif/3/0/error",
        "12 reading ring-ref",
    );

    let message = "/local/domain/3/device/vdispl/0/1/resolution holds \"0x0\" (a width or \
                   height of 0)";
    let known = update_error_node(&mut store, key, &ErrorNode::Unknown, Some(message)).unwrap();
    assert_eq!(known, ErrorNode::Holds(message.into()));
    let written = fake.node(node).unwrap();
    assert_eq!(written.value, message.as_bytes());
    assert_eq!(written.perms, ["n0", "r3"]);
    // Written and given its permissions in one transaction, guarded by the backend's state.
    let requests: Vec<String> = fake.take_requests().iter().map(|r| r.describe()).collect();
    assert_eq!(
        requests,
        [
            "TRANSACTION_START tx=0 |".to_string(),
            "READ tx=1 /local/domain/0/backend/vdispl/3/0/state|".into(),
            format!("WRITE tx=1 {node}|{message}"),
            format!("SET_PERMS tx=1 {node}|n0|r3|"),
            "TRANSACTION_END tx=1 T|".into(),
        ]
    );
    // The same message again costs nothing.
    let again = update_error_node(&mut store, key, &known, Some(message)).unwrap();
    assert_eq!((again, fake.take_requests()), (known, vec![]));

    // Several refused connectors: their messages joined, the node rewritten.
    let both = format!(
        "{message}; /local/domain/3/device/vdispl/0/2/resolution holds \"\" (not <width>x<height>)"
    );
    let known = update_error_node(
        &mut store,
        key,
        &ErrorNode::Holds(message.into()),
        Some(&both),
    )
    .unwrap();
    assert_eq!(fake.node(node).unwrap().value, both.as_bytes());
    assert_eq!(fake.node(node).unwrap().perms, ["n0", "r3"]);

    // The configuration is good again: the node goes, and the directories it alone kept.
    let gone = update_error_node(&mut store, key, &known, None).unwrap();
    assert_eq!(gone, ErrorNode::Absent);
    assert_eq!(
        fake.paths_under("/local/domain/0/error"),
        [
            "/local/domain/0/error",
            "/local/domain/0/error/backend",
            "/local/domain/0/error/backend/vif",
            "/local/domain/0/error/backend/vif/3",
            "/local/domain/0/error/backend/vif/3/0",
            "/local/domain/0/error/backend/vif/3/0/error",
        ]
    );
    fake.take_requests();
    assert_eq!(
        update_error_node(&mut store, key, &gone, None).unwrap(),
        ErrorNode::Absent
    );
    assert_eq!(fake.take_requests(), []);

    // Without the other backend's node nothing of the error tree is left.
    fake.remove("/local/domain/0/error/backend/vif");
    let known = update_error_node(&mut store, key, &gone, Some(message)).unwrap();
    update_error_node(&mut store, key, &known, None).unwrap();
    assert_eq!(
        fake.paths_under("/local/domain/0/error"),
        Vec::<String>::new()
    );
    assert!(fake.node("/local/domain/0").is_some());

    // A device the toolstack removed gets no node, and one left by an earlier run of the
    // backend is removed when the device goes.
    fake.remove(&key.backend_path());
    let known = update_error_node(&mut store, key, &ErrorNode::Absent, Some(message)).unwrap();
    assert_eq!(known, ErrorNode::Absent);
    assert!(fake.node(node).is_none());
    fake.write(node, "left by an earlier run");
    update_error_node(&mut store, key, &ErrorNode::Unknown, None).unwrap();
    assert_eq!(
        fake.paths_under("/local/domain/0/error"),
        Vec::<String>::new()
    );
}
