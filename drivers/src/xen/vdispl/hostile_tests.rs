//! The frontend against a backend that misbehaves on purpose: each of the
//! Dom0 backend's `--fault` modes, played by the fake backend through the
//! same fault injection ([`FaultState`]), hits one connector of a
//! two-connector device while the other flips. The device is driven as the
//! guest drives it (kernel/src/guest/display.rs): the handshake and the
//! backend's state through [`config`], flips through [`Flipper`], failures
//! and reconnections through [`Health`] and [`decide`], the requests that
//! undo a connection from [`teardown_batches`]. Pages, grant numbers and the
//! clock are the test's: each turn of the display loop is one wait of
//! [`WAIT_NS`], during which the fake backend serves its rings once. No test
//! depends on wall-clock time.
//!
//! Besides the faults, a slow backend ([`BackendFaults`]'s delays): late
//! EVT_PG_FLIP events and late responses, which cost time but never the
//! connection.

use super::backend::DirectoryReader;
use super::config::{self, ConnectorTransport, DeviceConfig};
use super::connector::HANG_NS;
use super::connector::{call, write_directory, Connector};
use super::fake::{BackendFaults, FakeDisplayBackend, FakeWait};
use super::fault::{Fault, FaultHit, FaultMode, FaultState, FAULT_MODES};
use super::flip::{FlipPoll, Flipper, FRAME_DONE_TIMEOUT_NS};
use super::recovery::{
    connector_name, decide, teardown_batches, BufferObjects, Health, Verdict,
    MAX_CONNECTOR_RETRIES, RETRY_DELAY_NS,
};
use super::tests::{pages, store_with_device, Pages};
use super::VdisplError;
use crate::xen::displif::{self, DbufCreate, Request, FOURCC_XRGB8888};
use crate::xen::gnttab::GrantRef;
use crate::xen::ring::{EventPage, SharedRing};
use crate::xen::xenbus::XenbusState;
use crate::xen::xenstore::client::Client;
use crate::xen::xenstore::fake::FakeXenstored;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::format;
use std::rc::Rc;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

const MS: u64 = 1_000_000;
/// One wait of the display loop.
const WAIT_NS: u64 = 10 * MS;
/// Frames each connector shows (unless a test says otherwise).
const FRAMES: u64 = 300;
/// How long a setup request may wait (the guest's bound).
const REQUEST_TIMEOUT_NS: u64 = HANG_NS;
/// How long a teardown request may wait (the guest's bound).
const TEARDOWN_TIMEOUT_NS: u64 = 300 * MS;
/// Simulated time by which every run must be over.
const RUN_LIMIT_NS: u64 = 300_000 * MS;
/// Connections by which every run must be over.
const MAX_CONNECTIONS: usize = 12;
/// The connectors of [`store_with_device`].
const NAMES: [&str; 2] = ["conn=0 (DP-1)", "conn=1 (HDMI-A-1)"];

/// Directory pages the frontend granted, which the fake backend reads.
#[derive(Clone, Default)]
struct Granted(Rc<RefCell<BTreeMap<GrantRef, [u8; 4096]>>>);

impl DirectoryReader for Granted {
    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]> {
        self.0.borrow().get(&gref).copied()
    }
}

type Backend<'p> = FakeDisplayBackend<'p, Granted>;
type FrontConnector<'p> = Connector<&'p SharedRing, &'p EventPage>;

/// One connector being driven.
struct Output<'p> {
    connector: FrontConnector<'p>,
    health: Health,
    /// The flip in flight, with its frame number.
    flipper: Flipper<u64>,
    buffers: Vec<BufferObjects>,
    back: usize,
}

impl AsMut<Health> for Output<'_> {
    fn as_mut(&mut self) -> &mut Health {
        &mut self.health
    }
}

/// What one connection did.
#[derive(Debug, Default)]
struct Connection {
    /// Why the frontend reconnected; `None` when it finished.
    lost: Option<String>,
    /// The requests faults hit, with their connector and time.
    hits: Vec<(usize, FaultHit, u64)>,
    /// Requests the backend had taken from each ring when the first fault
    /// hit, the hit one included.
    taken_at_fault: [usize; 2],
    /// Flips the backend showed per connector: in all, and from the first
    /// fault on.
    flips: [usize; 2],
    flips_after_fault: [usize; 2],
    /// Requests the backend took per connector after the first fault.
    requests_after_fault: [Vec<Request>; 2],
    /// When each connector failed, and the requests then in flight on it.
    failed_at: [Option<u64>; 2],
    in_flight_at_failure: [Option<usize>; 2],
    /// When the display loop ended.
    ended_at: u64,
    /// Display buffers and framebuffers the backend held when the frontend
    /// closed the connection.
    left_over: (usize, usize),
}

/// A guest's display device against the fake backend, over as many
/// connections as it takes.
struct Session {
    store: Client<FakeXenstored>,
    device: DeviceConfig,
    /// The backend's fault, carried from one connection to the next.
    fault: Option<FaultState>,
    now_ns: u64,
    next_gref: GrantRef,
    /// Frames each connector shows.
    frames: u64,
    /// The fake backend's blunt misbehaviours, on every connection.
    faults: BackendFaults,
    /// The frontend's error lines.
    errors: Vec<String>,
    /// Its lines about flips released without their event.
    releases: Vec<String>,
    /// Per connector, in all: flips released without their event, late
    /// events ignored, and the slowest flip's round trip.
    released: [u64; 2],
    late_events: [u64; 2],
    slowest_ns: [u64; 2],
    /// Per connector, carried across connections: the next frame and the
    /// reconnections made for its sake since it last flipped.
    next_frame: [u64; 2],
    retries: [u32; 2],
    /// Per connector, the frames whose flips completed, in order.
    shown: [Vec<u64>; 2],
    connections: Vec<Connection>,
}

impl Session {
    /// Runs the device against a backend with `fault` until it finishes.
    fn run(fault: Option<Fault>) -> Session {
        Session::run_with(fault, BackendFaults::default(), FRAMES)
    }

    /// Runs the device, `frames` frames per connector, against a backend
    /// with `fault` and `faults` until it finishes.
    fn run_with(fault: Option<Fault>, faults: BackendFaults, frames: u64) -> Session {
        let mut store = store_with_device(Some("1"));
        let device = config::read_device(&mut store, "0").unwrap();
        let mut session = Session {
            store,
            device,
            fault: fault.map(FaultState::new),
            now_ns: 0,
            next_gref: 8,
            frames,
            faults,
            errors: Vec::new(),
            releases: Vec::new(),
            released: [0; 2],
            late_events: [0; 2],
            slowest_ns: [0; 2],
            next_frame: [0; 2],
            retries: [0; 2],
            shown: Default::default(),
            connections: Vec::new(),
        };
        while session.connections.len() < MAX_CONNECTIONS {
            let connection = session.connect_and_show();
            let finished = connection.lost.is_none();
            session.connections.push(connection);
            if finished {
                return session;
            }
        }
        panic!(
            "still reconnecting after {MAX_CONNECTIONS} connections: {:?}",
            session
                .connections
                .iter()
                .map(|connection| &connection.lost)
                .collect::<Vec<_>>()
        );
    }

    fn grant(&mut self) -> GrantRef {
        self.next_gref += 1;
        self.next_gref
    }

    fn backend_state(&self) -> String {
        format!("{}/state", self.device.backend)
    }

    /// One connection: handshake, buffers, flips until the frontend
    /// finishes or reconnects, teardown.
    fn connect_and_show(&mut self) -> Connection {
        let mut record = Connection::default();
        // The backend offers InitWait (again, after an earlier connection
        // closed), then the handshake.
        let state = self.backend_state();
        self.store.transport_mut().set(&state, b"2");
        config::set_state(&mut self.store, &self.device, XenbusState::Initialising).unwrap();
        config::wait_for_backend_ready(&mut self.store, &self.device, 1_000 * MS).unwrap();
        let version = config::negotiate(&mut self.store, &self.device).unwrap();
        let pages: Vec<Pages> = self.device.connectors.iter().map(|_| pages()).collect();
        let mut outputs: Vec<Output> = self
            .device
            .connectors
            .iter()
            .zip(&pages)
            .enumerate()
            .map(|(index, (config, pages))| Output {
                connector: Connector::new(&*pages.ring, &*pages.events),
                health: Health::new(
                    connector_name(config.index, &config.unique_id),
                    self.retries[index],
                ),
                flipper: Flipper::new(self.next_frame[index]),
                buffers: Vec::new(),
                back: 0,
            })
            .collect();
        let granted = Granted::default();
        let mut backend =
            FakeDisplayBackend::new(&pages[0].ring, &pages[0].events, granted.clone());
        for pages in &pages[1..] {
            backend.add_connector(&pages.ring, &pages.events);
        }
        backend.fault = self.fault.take();
        backend.faults = self.faults.clone();
        backend.now_ns = self.now_ns;
        let transports: Vec<ConnectorTransport> = pages
            .iter()
            .map(|_| ConnectorTransport {
                req_ring_ref: self.grant(),
                req_port: 5,
                evt_ring_ref: self.grant(),
                evt_port: 6,
            })
            .collect();
        config::publish(&mut self.store, &self.device, version, &transports).unwrap();
        let now = self.store.now_ns();
        self.store.transport_mut().set_at(now + MS, &state, b"4");
        config::complete_handshake(&mut self.store, &self.device, 1_000 * MS).unwrap();

        for index in 0..outputs.len() {
            if let Err(error) = self.create_buffers(&mut outputs, index, &mut backend, &granted) {
                let line = outputs[index].health.fail(format!("{error}"), self.now_ns);
                self.errors.push(line);
            }
        }

        record.lost = loop {
            assert!(self.now_ns < RUN_LIMIT_NS, "the display loop hung");
            if backend.left {
                // The backend let go of the device: its state goes back.
                self.store.transport_mut().set(&state, b"2");
            }
            if let Some(reason) = config::backend_gone(&mut self.store, &self.device) {
                break Some(reason);
            }
            let mut busy = false;
            for (index, output) in outputs.iter_mut().enumerate() {
                busy |= self.step(output, index, &mut record);
            }
            match decide(&mut outputs, busy, self.now_ns) {
                Verdict::Continue => {}
                Verdict::Reconnect(reason) => break Some(reason),
                Verdict::Finished => break None,
            }
            let hits_before = backend.fault_hits.len();
            backend.now_ns = self.now_ns;
            backend.step().unwrap();
            self.now_ns += WAIT_NS;
            for &(index, hit) in &backend.fault_hits[hits_before..] {
                if record.hits.is_empty() {
                    for (ring, taken) in record.taken_at_fault.iter_mut().enumerate() {
                        *taken = backend
                            .requests
                            .iter()
                            .filter(|(at, _)| *at == ring)
                            .count();
                    }
                    for (ring, flips) in record.flips_after_fault.iter_mut().enumerate() {
                        *flips = backend.flips_on(ring);
                    }
                }
                record.hits.push((index, hit, self.now_ns));
            }
        };
        record.ended_at = self.now_ns;

        // Undo what the backend still holds, as far as it can be trusted.
        let working: Vec<bool> = outputs
            .iter()
            .map(|output| output.health.failed().is_none())
            .collect();
        let buffers: Vec<BufferObjects> = outputs
            .iter()
            .flat_map(|output| output.buffers.iter().copied())
            .collect();
        let (disable, release) = teardown_batches(&working, &buffers);
        let mut responsive = config::backend_gone(&mut self.store, &self.device).is_none();
        if responsive {
            responsive = self.send_batch(&mut outputs, &mut backend, &disable);
        }
        if responsive {
            self.send_batch(&mut outputs, &mut backend, &release);
        }
        config::set_state(&mut self.store, &self.device, XenbusState::Closing).unwrap();
        config::set_state(&mut self.store, &self.device, XenbusState::Closed).unwrap();

        for (index, output) in outputs.iter().enumerate() {
            self.released[index] += output.flipper.released();
            self.late_events[index] += output.flipper.late_events();
            self.next_frame[index] = output.flipper.next_frame();
            self.retries[index] = output.health.retries();
            record.flips[index] = backend.flips_on(index);
            record.flips_after_fault[index] = record.flips[index] - record.flips_after_fault[index];
            record.requests_after_fault[index] = backend
                .requests
                .iter()
                .filter(|(at, _)| *at == index)
                .skip(record.taken_at_fault[index])
                .map(|(_, request)| *request)
                .collect();
        }
        if record.hits.is_empty() {
            record.requests_after_fault = Default::default();
            record.flips_after_fault = [0; 2];
        }
        record.left_over = (
            backend.model.buffers.len(),
            backend.model.framebuffers.len(),
        );
        self.fault = backend.fault.take();
        record
    }

    /// Sends `request` on `connector` and waits for its response while the
    /// backend runs.
    fn call(
        &mut self,
        connector: &mut FrontConnector<'_>,
        backend: &mut Backend<'_>,
        request: &Request,
        timeout_ns: u64,
    ) -> Result<(), VdisplError> {
        let mut wait = FakeWait {
            backend,
            now_ns: self.now_ns,
            notifications: 0,
        };
        let result = call(connector, &mut wait, request, timeout_ns).map(|_| ());
        self.now_ns = wait.now_ns;
        result
    }

    /// Two display buffers and framebuffers for output `index` on connector
    /// 0's ring, then SET_CONFIG on its own (the guest's order).
    fn create_buffers(
        &mut self,
        outputs: &mut [Output<'_>],
        index: usize,
        backend: &mut Backend<'_>,
        granted: &Granted,
    ) -> Result<(), VdisplError> {
        let config = &self.device.connectors[index];
        let (width, height) = (config.width, config.height);
        let generation = self.connections.len() as u64 + 1;
        let size = displif::stride(width, 32) * height;
        let pages = displif::buffer_pages(size);
        for slot in 0..2u64 {
            let refs: Vec<GrantRef> = (0..pages).map(|_| self.grant()).collect();
            let directory_refs: Vec<GrantRef> = (0..displif::directory_pages(pages))
                .map(|_| self.grant())
                .collect();
            let mut directory = vec![[0u8; 4096]; directory_refs.len()];
            write_directory(&mut directory, &directory_refs, &refs);
            granted
                .0
                .borrow_mut()
                .extend(directory_refs.iter().copied().zip(directory));
            let dbuf_cookie = (generation << 16) | ((index as u64 + 1) << 4) | (slot + 1);
            let fb_cookie = dbuf_cookie | 0x8;
            outputs[index].buffers.push(BufferObjects {
                dbuf_cookie,
                fb_cookie,
                created: false,
                attached: false,
            });
            let create = Request::DbufCreate(DbufCreate {
                dbuf_cookie,
                width,
                height,
                bpp: 32,
                buffer_sz: size,
                flags: 0,
                gref_directory: directory_refs[0],
                data_ofs: 0,
            });
            self.call(
                &mut outputs[0].connector,
                backend,
                &create,
                REQUEST_TIMEOUT_NS,
            )?;
            outputs[index].buffers[slot as usize].created = true;
            let attach = Request::FbAttach {
                dbuf_cookie,
                fb_cookie,
                width,
                height,
                pixel_format: FOURCC_XRGB8888,
            };
            self.call(
                &mut outputs[0].connector,
                backend,
                &attach,
                REQUEST_TIMEOUT_NS,
            )?;
            outputs[index].buffers[slot as usize].attached = true;
        }
        let set_config = Request::SetConfig {
            fb_cookie: outputs[index].buffers[0].fb_cookie,
            x: 0,
            y: 0,
            width,
            height,
            bpp: 32,
        };
        self.call(
            &mut outputs[index].connector,
            backend,
            &set_config,
            REQUEST_TIMEOUT_NS,
        )
    }

    /// Advances one connector; returns whether it still has work.
    fn step(&mut self, output: &mut Output<'_>, index: usize, record: &mut Connection) -> bool {
        if output.health.failed().is_some() {
            return false;
        }
        match output
            .flipper
            .poll(&mut output.connector, output.health.name(), self.now_ns)
        {
            FlipPoll::Failed(error) => {
                record.failed_at[index] = Some(self.now_ns);
                record.in_flight_at_failure[index] = Some(output.connector.in_flight().len());
                let line = output.health.fail(error.to_string(), self.now_ns);
                self.errors.push(line);
                return false;
            }
            FlipPoll::Pending => return true,
            FlipPoll::Done {
                tag: frame,
                round_trip_ns,
            } => {
                self.slowest_ns[index] = self.slowest_ns[index].max(round_trip_ns);
                self.shown[index].push(frame);
                output.health.flipped();
                output.back ^= 1;
            }
            FlipPoll::Released {
                tag: frame,
                release,
            } => {
                // As the guest does: the line, then on as if it was shown.
                self.releases
                    .push(format!("display {}: {release}", output.health.name()));
                self.shown[index].push(frame);
                output.health.flipped();
                output.back ^= 1;
            }
            FlipPoll::Idle => {}
        }
        let frame = output.flipper.next_frame();
        if frame == self.frames {
            return false;
        }
        let fb_cookie = output.buffers[output.back].fb_cookie;
        match output
            .flipper
            .send(&mut output.connector, fb_cookie, self.now_ns, frame)
        {
            Ok(_) => true,
            Err(error) => {
                let line = output.health.fail(error.to_string(), self.now_ns);
                self.errors.push(line);
                false
            }
        }
    }

    /// Sends each request of `batch` and waits for its response; returns
    /// whether the backend answered them all (error statuses included).
    fn send_batch(
        &mut self,
        outputs: &mut [Output<'_>],
        backend: &mut Backend<'_>,
        batch: &[(usize, Request)],
    ) -> bool {
        batch.iter().all(|(ring, request)| {
            matches!(
                self.call(
                    &mut outputs[*ring].connector,
                    backend,
                    request,
                    TEARDOWN_TIMEOUT_NS
                ),
                Ok(()) | Err(VdisplError::Status { .. })
            )
        })
    }
}

/// Frame numbers 0 to [`FRAMES`] - 1.
fn every_frame() -> Vec<u64> {
    (0..FRAMES).collect()
}

/// What the frontend says stopped a connector hit by `mode` (`hit`, after
/// the backend had taken `taken` requests from its ring).
fn reason(mode: FaultMode, hit: &FaultHit, taken: usize) -> String {
    match mode {
        FaultMode::Status => String::from("PG_FLIP failed with status -5"),
        FaultMode::WrongId => format!(
            "PG_FLIP not completed: a response with the wrong id {} came instead of id {}",
            hit.id + 1,
            hit.id
        ),
        // Every request before the hit one was answered and consumed.
        FaultMode::RspProd => format!(
            "ring: rsp_prod {} is past the ring (consumer at {})",
            taken - 1 + 1000,
            taken - 1
        ),
        FaultMode::GarbageEvent => String::from("event: unknown event type 0xee"),
        FaultMode::Silent => format!(
            "PG_FLIP not completed: the backend never answered id {} within {} ms (the ring is \
             stuck)",
            hit.id,
            HANG_NS / MS
        ),
        FaultMode::StateBack => unreachable!("state-back stops the device, not a connector"),
    }
}

#[test]
fn without_a_fault_both_connectors_show_every_frame_on_one_connection() {
    let session = Session::run(None);
    assert_eq!(session.connections.len(), 1);
    assert!(session.errors.is_empty(), "{:?}", session.errors);
    let connection = &session.connections[0];
    assert_eq!(connection.flips, [FRAMES as usize; 2]);
    assert_eq!(session.shown, [every_frame(), every_frame()]);
    // Teardown: DISABLE on both rings, every framebuffer detached and
    // every display buffer destroyed on connector 0's.
    assert_eq!(connection.left_over, (0, 0));
}

#[test]
fn each_fault_on_either_connector_is_named_outlived_and_recovered_from() {
    for mode in FAULT_MODES {
        for faulted in [0, 1] {
            let context = format!("{} on connector {faulted}", mode.name());
            let session = Session::run(Some(Fault {
                mode,
                connector: faulted,
                count: 1,
                after: 2,
            }));
            let other = 1 - faulted;
            // One fault, on the third flip of the faulted connector, then a
            // second connection on which both connectors show the rest.
            assert_eq!(
                session.connections.len(),
                2,
                "{context}: {:?}",
                session.connections
            );
            let (first, second) = (&session.connections[0], &session.connections[1]);
            assert_eq!(first.hits.len(), 1, "{context}");
            let (at, hit, hit_ns) = first.hits[0];
            assert_eq!((at, hit.mode), (faulted, mode), "{context}");
            assert_eq!(second.lost, None, "{context}");
            assert!(second.hits.is_empty(), "{context}");
            assert!(second.flips[faulted] >= 2, "{context}: {second:?}");
            // Frames resumed where they stopped: each connector showed
            // every frame once, in order; a frame a fault kept from the
            // screen came again after the reconnection.
            assert_eq!(session.shown, [every_frame(), every_frame()], "{context}");
            assert!(
                first.flips[faulted] + second.flips[faulted] >= FRAMES as usize,
                "{context}"
            );

            if mode == FaultMode::StateBack {
                // The device goes down: nothing more is sent to a backend
                // that left, and no connector is blamed.
                assert!(session.errors.is_empty(), "{context}: {:?}", session.errors);
                assert_eq!(
                    first.lost.as_deref(),
                    Some("the backend went to InitWait"),
                    "{context}"
                );
                assert!(
                    first.requests_after_fault.iter().all(Vec::is_empty),
                    "{context}"
                );
                assert!(first.ended_at <= hit_ns + WAIT_NS, "{context}");
                continue;
            }

            let name = NAMES[faulted];
            let why = reason(mode, &hit, first.taken_at_fault[faulted]);
            assert_eq!(
                session.errors,
                [format!(
                    "display {name}: {why}; this connector stops; retry 1 of \
                     {MAX_CONNECTOR_RETRIES} in 2000 ms"
                )],
                "{context}"
            );
            // Broken rings, wrong ids and statuses are seen at once; a
            // missing answer only once the ring counts as stuck, long after
            // any answer a slow backend gives.
            let failed_at = first.failed_at[faulted].expect("the connector failed");
            let seen_within = match mode {
                FaultMode::Silent => HANG_NS + WAIT_NS,
                _ => WAIT_NS,
            };
            assert!(failed_at <= hit_ns + seen_within, "{context}");
            assert_eq!(first.failed_at[other], None, "{context}");
            if mode == FaultMode::Silent {
                assert!(failed_at >= hit_ns + HANG_NS - 2 * WAIT_NS, "{context}");
            }
            if matches!(mode, FaultMode::WrongId | FaultMode::Silent) {
                // The flip is abandoned: a late answer to it cannot
                // complete anything.
                assert_eq!(first.in_flight_at_failure[faulted], Some(0), "{context}");
            }
            // The retry: the device reconnected once the delay was over.
            assert_eq!(
                first.lost.as_deref(),
                Some(
                    format!(
                        "{name} failed ({why}); reconnecting the device to recover it (retry 1 \
                         of {MAX_CONNECTOR_RETRIES})"
                    )
                    .as_str()
                ),
                "{context}"
            );
            assert!(
                (failed_at + RETRY_DELAY_NS..failed_at + RETRY_DELAY_NS + WAIT_NS)
                    .contains(&first.ended_at),
                "{context}"
            );
            // Meanwhile the other connector kept flipping: at least one
            // frame per 100 ms, or every frame it had left.
            let window_ms = (first.ended_at - hit_ns) / MS;
            let left = FRAMES as usize - (first.flips[other] - first.flips_after_fault[other]);
            assert!(
                first.flips_after_fault[other] >= (window_ms as usize / 100).min(left),
                "{context}: {} flips in {window_ms} ms",
                first.flips_after_fault[other]
            );
            // The failed connector's ring got nothing more; the other got
            // DISABLE at teardown.
            assert!(
                first.requests_after_fault[faulted].is_empty(),
                "{context}: {:?}",
                first.requests_after_fault[faulted]
            );
            let teardown: Vec<&Request> = first.requests_after_fault[other]
                .iter()
                .filter(|request| !matches!(request, Request::PageFlip { .. }))
                .collect();
            if faulted == 1 {
                // Connector 0's ring undoes every buffer of both connectors.
                assert_eq!(teardown.len(), 1 + 4 + 4, "{context}: {teardown:?}");
                assert_eq!(teardown[0], &Request::DISABLE, "{context}");
                assert_eq!(first.left_over, (0, 0), "{context}");
            } else {
                // Connector 0's ring carries DBUF_* and FB_*: with it failed,
                // the buffers are left to the backend, which drops them when
                // the connection closes.
                assert_eq!(teardown, [&Request::DISABLE], "{context}");
                assert_eq!(first.left_over, (4, 4), "{context}");
            }
        }
    }
}

#[test]
fn a_fault_that_keeps_coming_stops_its_connector_after_5_retries_without_a_flip() {
    // Every flip of connector 1 fails, on every connection.
    let session = Session::run(Some(Fault {
        mode: FaultMode::Status,
        connector: 1,
        count: u32::MAX,
        after: 0,
    }));
    let retries = MAX_CONNECTOR_RETRIES as usize;
    assert_eq!(session.connections.len(), retries + 1);
    let mut expected: Vec<String> = (1..=retries)
        .map(|retry| {
            format!(
                "display {}: PG_FLIP failed with status -5; this connector stops; retry {retry} \
                 of {retries} in 2000 ms",
                NAMES[1]
            )
        })
        .collect();
    expected.push(format!(
        "display {}: PG_FLIP failed with status -5; this connector stops ({retries} retries \
         without a flip)",
        NAMES[1]
    ));
    assert_eq!(session.errors, expected);
    for (number, connection) in session.connections[..retries].iter().enumerate() {
        assert_eq!(
            connection.lost,
            Some(format!(
                "{} failed (PG_FLIP failed with status -5); reconnecting the device to recover \
                 it (retry {} of {retries})",
                NAMES[1],
                number + 1
            ))
        );
    }
    // The last connection gives up on connector 1 and finishes connector 0.
    assert_eq!(session.connections[retries].lost, None);
    assert_eq!(session.shown, [every_frame(), Vec::new()]);
    assert_eq!(session.retries[1], MAX_CONNECTOR_RETRIES);
}

#[test]
fn retries_start_over_once_the_connector_flips_again() {
    // Three faults, each after two good flips: every reconnection brings
    // connector 0 back, so each failure is its first retry again.
    let session = Session::run(Some(Fault {
        mode: FaultMode::GarbageEvent,
        connector: 0,
        count: 3,
        after: 2,
    }));
    assert_eq!(session.connections.len(), 4);
    let line = format!(
        "display {}: event: unknown event type 0xee; this connector stops; retry 1 of \
         {MAX_CONNECTOR_RETRIES} in 2000 ms",
        NAMES[0]
    );
    assert_eq!(session.errors, [line.clone(), line.clone(), line]);
    assert_eq!(session.shown, [every_frame(), every_frame()]);
    assert_eq!(session.retries, [0, 0]);
}

/// A backend whose answers on connector 1 are late by `response_delay_ns`
/// (PG_FLIP responses) and `event_delay_ns` (EVT_PG_FLIP after the
/// response), showing `frames` frames per connector.
fn slow_on_connector_1(response_delay_ns: u64, event_delay_ns: u64, frames: u64) -> Session {
    let faults = BackendFaults {
        response_delay_ns,
        event_delay_ns,
        delayed_connector: Some(1),
        ..BackendFaults::default()
    };
    Session::run_with(None, faults, frames)
}

#[test]
fn an_event_late_past_the_timeout_releases_the_flip_and_the_connection_stays() {
    // Each event comes 7 s after its response: more than twice the timeout,
    // so a late event arrives while a later flip to the same framebuffer
    // waits for its own.
    let frames = 6;
    let session = slow_on_connector_1(0, 7_000 * MS, frames);
    let every: Vec<u64> = (0..frames).collect();
    assert_eq!(session.connections.len(), 1, "{:?}", session.connections);
    assert_eq!(session.connections[0].lost, None);
    assert!(session.errors.is_empty(), "{:?}", session.errors);
    assert_eq!(session.shown, [every.clone(), every]);
    // Every flip of connector 1 was released, with a line naming it: none
    // was completed by an earlier flip's late event.
    assert_eq!(session.released, [0, frames]);
    assert_eq!(session.releases.len(), frames as usize);
    for line in &session.releases {
        assert!(
            line.starts_with(&format!(
                "display {}: frame done timed out, releasing (PG_FLIP id ",
                NAMES[1]
            )),
            "{line}"
        );
        assert!(line.ends_with(" ms later)"), "{line}");
    }
    // The late events that came before the connection closed were
    // recognised and ignored (the last flips' were still on their way).
    assert!(
        session.late_events[1] >= frames - 3,
        "{:?}",
        session.late_events
    );
    assert_eq!(session.late_events[0], 0);
}

#[test]
fn an_event_late_within_the_timeout_is_waited_for() {
    let frames = 4;
    let session = slow_on_connector_1(0, FRAME_DONE_TIMEOUT_NS - 100 * MS, frames);
    assert_eq!(session.connections.len(), 1);
    assert!(session.errors.is_empty(), "{:?}", session.errors);
    assert!(session.releases.is_empty(), "{:?}", session.releases);
    assert_eq!(session.released, [0, 0]);
    assert!(session.slowest_ns[1] >= FRAME_DONE_TIMEOUT_NS - 100 * MS);
}

#[test]
fn a_slow_response_is_waited_for_and_the_connection_stays() {
    // 10 s per PG_FLIP response: past Linux's 3 s request timeout, short
    // of the ring counting as stuck.
    let frames = 4;
    let session = slow_on_connector_1(10_000 * MS, 0, frames);
    let every: Vec<u64> = (0..frames).collect();
    assert_eq!(session.connections.len(), 1, "{:?}", session.connections);
    assert!(session.errors.is_empty(), "{:?}", session.errors);
    assert!(session.releases.is_empty(), "{:?}", session.releases);
    assert_eq!(session.shown, [every.clone(), every]);
    assert!(session.slowest_ns[1] >= 10_000 * MS);
    assert!(session.slowest_ns[0] < 100 * MS);
}

#[test]
fn a_slow_response_then_a_late_event_is_released_from_the_response_on() {
    // The response comes after 5 s, its event 4 s after that: released
    // 3.1 s after the response, not at once for being late since sending.
    let frames = 3;
    let session = slow_on_connector_1(5_000 * MS, 4_000 * MS, frames);
    assert_eq!(session.connections.len(), 1);
    assert!(session.errors.is_empty(), "{:?}", session.errors);
    assert_eq!(session.released, [0, frames]);
    for line in &session.releases {
        let waited: u64 = line
            .rsplit_once("no EVT_PG_FLIP ")
            .and_then(|(_, rest)| rest.strip_suffix(" ms later)"))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            (FRAME_DONE_TIMEOUT_NS / MS..FRAME_DONE_TIMEOUT_NS / MS + 2 * WAIT_NS / MS)
                .contains(&waited),
            "{line}"
        );
    }
}

#[test]
fn a_response_later_than_the_hang_deadline_stops_the_connector_as_stuck() {
    // 40 s per response on connector 1: its ring counts as stuck after
    // 30 s; the others go on, and a new connection (where the backend is
    // just as slow) is tried as for any failure, a bounded number of times.
    let frames = 2;
    let session = slow_on_connector_1(40_000 * MS, 0, frames);
    assert_eq!(
        session.errors[0],
        format!(
            "display {}: PG_FLIP not completed: the backend never answered id 2 within 30000 \
             ms (the ring is stuck); this connector stops; retry 1 of {MAX_CONNECTOR_RETRIES} \
             in 2000 ms",
            NAMES[1]
        )
    );
    let first = &session.connections[0];
    assert_eq!(first.flips[0], frames as usize);
    let failed_at = first.failed_at[1].expect("connector 1 failed");
    assert!(
        (HANG_NS..HANG_NS + 200 * MS).contains(&failed_at),
        "{failed_at}"
    );
    // Each connection gives it 30 s; after the retries it stays stopped.
    assert_eq!(
        session.connections.len(),
        MAX_CONNECTOR_RETRIES as usize + 1
    );
    assert_eq!(session.shown[1], Vec::<u64>::new());
}
