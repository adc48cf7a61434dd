//! The main job: every connector of every vdispl device driven as a
//! double-buffered framebuffer, demo scenes rendered into the back buffer
//! and page-flipped, each connector on its own so that one that fails does
//! not stall the others.
//!
//! A slow backend costs time, never the connection: a setup request waits
//! for its answer up to [`connector::HANG_NS`] (30 s) unless the backend
//! leaves or a shutdown comes, and flips follow drivers' `flip` module (an
//! overdue EVT_PG_FLIP releases the flip with a warning; a late response is
//! waited for until the ring counts as stuck).

use super::pages::PageBuffer;
use super::xen::Xen;
use super::{control, heap, services, store, time};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use drivers::framebuffer::{FormatRgb565, FormatXrgb8888, Framebuffer};
use drivers::xen::displif::{self, DbufCreate, Operation, Request};
use drivers::xen::evtchn;
use drivers::xen::gnttab::{GrantError, GrantRef};
use drivers::xen::hypercall::ShutdownReason;
use drivers::xen::ring::{EventFrame, PageBox, RingPage};
use drivers::xen::vdispl::config::{self, ConnectorConfig, ConnectorTransport, DeviceConfig};
use drivers::xen::vdispl::connector::{self, write_directory, Connector, Wait};
use drivers::xen::vdispl::flip::{FlipPoll, Flipper};
use drivers::xen::vdispl::recovery::{self, BufferObjects, Health, Verdict};
use drivers::xen::vdispl::VdisplError;
use drivers::xen::xenbus::{self, StateWatch, XenbusError, XenbusState};
use embedded_graphics::draw_target::{DrawTarget, DrawTargetExt};
use embedded_graphics::pixelcolor::Rgb888;
use kernel::scenes::{self, FlipLine, Frame, Label, SceneSpec, Status};

extern crate alloc;

const NS_PER_MS: u64 = 1_000_000;
/// How long the backend may take to reach InitWait, then Connected.
const HANDSHAKE_TIMEOUT_NS: u64 = 10_000 * NS_PER_MS;
/// How long a setup request may wait for its response: a backend under load
/// may take seconds to map a buffer, so only a stuck ring reaches it.
const SETUP_TIMEOUT_NS: u64 = connector::HANG_NS;
/// How long GET_EDID may wait (Linux's xen-drm-front request timeout); no
/// answer means no EDID.
const EDID_TIMEOUT_NS: u64 = 3_000 * NS_PER_MS;
/// Flip round trips kept per connector for the summary's percentiles.
const ROUND_TRIP_WINDOW: usize = 4096;
/// How long a teardown request may wait: the domain may be shutting down.
const TEARDOWN_TIMEOUT_NS: u64 = 300 * NS_PER_MS;
/// How long teardown waits for the backend to unmap the pages.
const RELEASE_TIMEOUT_NS: u64 = 1_500 * NS_PER_MS;

type FrontConnector = Connector<PageBox<RingPage>, PageBox<EventFrame>>;

/// A double-buffered display buffer and framebuffer pair member.
struct Buffer {
    memory: PageBuffer,
    directory: PageBuffer,
    refs: Vec<GrantRef>,
    directory_refs: Vec<GrantRef>,
    dbuf_cookie: u64,
    fb_cookie: u64,
    created: bool,
    attached: bool,
}

/// One connector being driven.
struct Output {
    config: ConnectorConfig,
    /// Bits per pixel of its buffers: 32 (XRGB8888) or 16 (RGB565).
    bpp: u32,
    connector: FrontConnector,
    req_port: u32,
    evt_port: u32,
    req_ref: GrantRef,
    evt_ref: GrantRef,
    buffers: Vec<Buffer>,
    back: usize,
    /// The flip in flight, with the line to print once it is shown, and the
    /// next frame.
    flipper: Flipper<FlipLine>,
    flips: u32,
    /// Flip round trips of the last [`ROUND_TRIP_WINDOW`] flips, a ring
    /// allocated once so that long runs do not grow the heap.
    round_trips_us: Vec<u32>,
    last_round_trip_us: u32,
    first_flip_ns: Option<u64>,
    last_flip_ns: u64,
    /// Whether it works, and the reconnections made for its sake.
    health: Health,
}

impl AsMut<Health> for Output {
    fn as_mut(&mut self) -> &mut Health {
        &mut self.health
    }
}

impl Output {
    fn name(&self) -> String {
        recovery::connector_name(self.config.index, &self.config.unique_id)
    }

    fn fail(&mut self, reason: String) {
        log::error!("{}", self.health.fail(reason, time::now_ns()));
    }

    fn fail_for_good(&mut self, reason: String) {
        log::error!("{}", self.health.fail_for_good(reason, time::now_ns()));
    }

    /// Its flip of `line` completed at `now` (after `round_trip_ns`; `None`
    /// when released without its event): counted, printed, and the other
    /// buffer is the back one.
    fn shown(&mut self, line: FlipLine, round_trip_ns: Option<u64>, now: u64, spec: &SceneSpec) {
        if let Some(round_trip_ns) = round_trip_ns {
            let round_trip_us = (round_trip_ns / 1000) as u32;
            if self.round_trips_us.len() < ROUND_TRIP_WINDOW {
                self.round_trips_us.push(round_trip_us);
            } else {
                let slot = self.flips as usize % ROUND_TRIP_WINDOW;
                self.round_trips_us[slot] = round_trip_us;
            }
            self.last_round_trip_us = round_trip_us;
        }
        self.flips += 1;
        self.health.flipped();
        self.first_flip_ns.get_or_insert(now);
        self.last_flip_ns = now;
        if line
            .seq
            .is_multiple_of(u64::from(FLIP_LINE_EVERY.load(Ordering::Relaxed)))
            || self.flipper.next_frame() == spec.total_frames()
        {
            crate::println!("{line}");
        }
        self.back ^= 1;
    }

    fn fail_setup(&mut self, error: SetupError) {
        if error.for_good {
            self.fail_for_good(error.reason);
        } else {
            self.fail(error.reason);
        }
    }
}

/// A frame drawn into a back buffer, to be flipped.
struct Drawn {
    fb_cookie: u64,
    line: FlipLine,
}

/// What a request's success records on its buffer.
#[derive(Clone, Copy)]
enum Mark {
    /// DBUF_CREATE of the output's buffer with this index.
    Created(usize),
    /// FB_ATTACH to it.
    Attached(usize),
    Nothing,
}

/// A request sent and not answered yet.
#[derive(Clone, Copy)]
struct Pending {
    /// The ring it went on.
    ring: usize,
    id: u16,
    operation: Operation,
    /// The output a failure of it fails; `None` during teardown, when a
    /// failure is only logged.
    output: Option<usize>,
    mark: Mark,
    sent_ns: u64,
}

/// Setup requests in flight and the first frame of each output not flipped
/// yet, between [`Device::start_set_up`] and [`Device::finish_set_up`].
struct SetUp {
    pending: Vec<Pending>,
    frames: Vec<Option<Drawn>>,
}

/// A connector setup failure and whether a reconnection could cure it.
struct SetupError {
    reason: String,
    for_good: bool,
}

impl From<String> for SetupError {
    fn from(reason: String) -> Self {
        SetupError {
            reason,
            for_good: false,
        }
    }
}

fn out_of_memory(what: String) -> SetupError {
    SetupError {
        reason: format!("no memory for {what}"),
        for_good: true,
    }
}

/// Blocks on a connector's two event channels.
struct PortWait {
    req_port: u32,
    evt_port: u32,
}

impl Wait for PortWait {
    fn notify(&mut self) {
        services::notify(self.req_port);
    }

    fn wait(&mut self, deadline_ns: u64) {
        let Some(events) = services::events() else {
            return;
        };
        let (req, evt) = (self.req_port, self.evt_port);
        time::wait_until(deadline_ns, || events.is_fired(req) || events.is_fired(evt));
        events.take(req);
        events.take(evt);
    }

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }
}

fn store_call<R>(
    what: &str,
    f: impl FnOnce(&mut store::Store) -> Result<R, VdisplError>,
) -> Result<R, String> {
    store::with(f)
        .ok_or_else(|| String::from("the domain has no xenstore"))?
        .map_err(|error| format!("{what}: {error}"))
}

fn grant_page(domid: u16, frame: u64) -> Result<GrantRef, String> {
    services::with_grants(|grants| grants.grant_access(domid, frame, false))
        .ok_or_else(|| String::from("no grant table"))?
        .map_err(|error| format!("{error}"))
}

/// What a display run did, for the summary lines.
pub struct Outcome {
    /// A shutdown the toolstack asked for while the display ran.
    pub shutdown: Option<ShutdownReason>,
}

/// Reconnections tried in a row without a single flip in between before a
/// device is given up.
const MAX_FRUITLESS_RECONNECTS: u32 = 10;

/// How a device's display run ended.
enum ShowEnd {
    /// Every connector showed every frame, or failed for good.
    Finished,
    /// The toolstack asked for a shutdown.
    Shutdown(ShutdownReason),
    /// The backend went away or every connector failed: reconnect.
    Lost(String),
}

/// Where each connector (by index) got to, kept across reconnections.
#[derive(Clone, Copy, Default)]
struct Progress {
    next_frame: u64,
    flips: u32,
    retries: u32,
}

/// Drives every vdispl device until all scenes were shown, or the toolstack
/// asks for a shutdown. A device whose backend goes away (or whose every
/// connector fails) is torn down, its grants ended and its event channels
/// closed, and connected again when the backend is back; frames resume where
/// they stopped.
pub fn run(spec: &SceneSpec, depths: &[u32]) -> Outcome {
    let ids = match store_call("device/vdispl", config::enumerate) {
        Ok(ids) => ids,
        Err(error) => {
            log::error!("display: {error}");
            return Outcome { shutdown: None };
        }
    };
    if ids.is_empty() {
        crate::println!("display: no vdispl device (add vdispl = [...] to the xl config)");
        return Outcome { shutdown: None };
    }
    for id in ids {
        if let Some(reason) = run_device(&id, spec, depths) {
            return Outcome {
                shutdown: Some(reason),
            };
        }
    }
    Outcome { shutdown: None }
}

/// Runs one device through as many connections as it takes.
fn run_device(id: &str, spec: &SceneSpec, depths: &[u32]) -> Option<ShutdownReason> {
    let mut progress = [Progress::default(); MAX_OUTPUTS];
    let mut fruitless = 0;
    let mut generation = 0u64;
    store::service();
    let baseline = Usage::now();
    crate::println!(
        "display: device {id} baseline: {} grants in use, heap in use {} bytes",
        baseline.grants,
        baseline.heap_bytes
    );
    loop {
        generation += 1;
        let flips_before: u32 = progress.iter().map(|p| p.flips).sum();
        let end = match Device::connect(id, depths, generation, &progress, spec) {
            Err(ConnectError::Shutdown(reason)) => ShowEnd::Shutdown(reason),
            Err(ConnectError::Failed(error)) => ShowEnd::Lost(error),
            Ok(mut device) => {
                let end = device.show(spec);
                for (slot, output) in progress.iter_mut().zip(&device.outputs) {
                    slot.next_frame = output.flipper.next_frame();
                    slot.flips = output.flips;
                    slot.retries = output.health.retries();
                }
                device.teardown();
                end
            }
        };
        let flips_after: u32 = progress.iter().map(|p| p.flips).sum();
        let lost = match end {
            ShowEnd::Finished => None,
            ShowEnd::Shutdown(reason) => Some(Err(reason)),
            ShowEnd::Lost(reason) => {
                fruitless = if flips_after > flips_before {
                    0
                } else {
                    fruitless + 1
                };
                if fruitless > MAX_FRUITLESS_RECONNECTS {
                    crate::println!("display device {id}: giving up after {fruitless} reconnections without a frame: {reason}");
                    None
                } else {
                    crate::println!("display device {id}: {reason}; reconnecting");
                    Some(Ok(()))
                }
            }
        };
        // Everything of this connection is gone now: what it held must have
        // gone back (watch events still queued for it are dropped first).
        store::service();
        Usage::now().report(id, generation, baseline);
        match lost {
            None => return None,
            Some(Err(reason)) => return Some(reason),
            Some(Ok(())) => {
                let reinitialised = store::with(|client| {
                    let path = format!("{}/{id}/state", config::DEVICES);
                    xenbus::write_state(client, &path, XenbusState::Initialising)
                });
                if let Some(Err(error)) = reinitialised {
                    log::warn!("display device {id}: {error}");
                }
                // Let a restarting backend come back, unless a shutdown comes first.
                let deadline = time::now_ns() + 500 * NS_PER_MS;
                while time::now_ns() < deadline {
                    if let Some(reason) = control::take_request() {
                        return Some(reason);
                    }
                    let port = store::port();
                    let events = services::events();
                    time::wait_until(
                        deadline,
                        || matches!((port, events), (Some(port), Some(events)) if events.is_fired(port)),
                    );
                    if let (Some(port), Some(events)) = (port, events) {
                        events.take(port);
                    }
                    store::service();
                }
            }
        }
    }
}

/// Grants and heap in use, compared before and after each connection.
#[derive(Clone, Copy)]
struct Usage {
    grants: u32,
    heap_bytes: usize,
}

impl Usage {
    fn now() -> Usage {
        Usage {
            grants: services::with_grants(|grants| grants.in_use()).unwrap_or(0),
            heap_bytes: heap::used(),
        }
    }

    /// Prints the figures after connection `generation` of device `id`
    /// ended, and whether they are back at `baseline`.
    fn report(self, id: &str, generation: u64, baseline: Usage) {
        let heap_bytes = self.heap_bytes;
        let verdict = if self.grants == baseline.grants && heap_bytes == baseline.heap_bytes {
            String::from("at baseline")
        } else {
            format!(
                "above baseline by {} grants, {} bytes",
                i64::from(self.grants) - i64::from(baseline.grants),
                heap_bytes as i64 - baseline.heap_bytes as i64
            )
        };
        crate::println!(
            "display: device {id} connection {generation} closed: {} grants in use, heap in use {heap_bytes} bytes, {verdict}",
            self.grants
        );
    }
}

/// Why connecting a device did not get through.
enum ConnectError {
    /// Something failed; a later attempt may succeed.
    Failed(String),
    /// The toolstack asked for a shutdown while the handshake waited.
    Shutdown(ShutdownReason),
}

impl From<String> for ConnectError {
    fn from(error: String) -> Self {
        ConnectError::Failed(error)
    }
}

/// How long one slice of a handshake wait lasts: between slices a shutdown
/// request is looked for, so a missing backend does not hold it up.
const HANDSHAKE_SLICE_NS: u64 = 250 * NS_PER_MS;

/// Waits through `watch` until the backend's state satisfies `wanted`, in
/// slices, until [`HANDSHAKE_TIMEOUT_NS`] pass or a shutdown is requested
/// (looked for between slices, so a missing backend does not hold it up).
fn handshake_wait(
    what: &str,
    watch: &StateWatch,
    mut wanted: impl FnMut(XenbusState) -> bool,
) -> Result<(), ConnectError> {
    let deadline = time::now_ns() + HANDSHAKE_TIMEOUT_NS;
    loop {
        if let Some(reason) = control::take_request() {
            return Err(ConnectError::Shutdown(reason));
        }
        let slice_ns = deadline
            .saturating_sub(time::now_ns())
            .min(HANDSHAKE_SLICE_NS);
        let result = store::with(|client| watch.wait_for(client, &mut wanted, slice_ns))
            .ok_or_else(|| ConnectError::Failed(String::from("the domain has no xenstore")))?;
        match result {
            Ok(_) => return Ok(()),
            Err(XenbusError::Timeout { .. }) if time::now_ns() < deadline => {}
            Err(error) => return Err(ConnectError::Failed(format!("{what}: {error}"))),
        }
    }
}

fn no_watch() -> ConnectError {
    ConnectError::Failed(String::from("the backend's state is not watched"))
}

/// Connectors driven per device.
pub const MAX_OUTPUTS: usize = drivers::xen::vdispl::MAX_CONNECTORS;

struct Device {
    config: DeviceConfig,
    version: u32,
    outputs: Vec<Output>,
    generation: u64,
    /// The watch on the backend's state node, for the whole connection.
    backend_watch: Option<StateWatch>,
    /// Whether the handshake completed (the rings have a backend).
    connected: bool,
    /// When the connection started (the status scene's uptime).
    start_ns: u64,
    /// How the backend left, seen while requests were awaited.
    gone: Option<String>,
    /// A shutdown the toolstack asked for while requests were awaited.
    shutdown: Option<ShutdownReason>,
}

impl Device {
    /// The handshake, then every connector set up and its first frame on
    /// its way: the backend's state is watched once for the whole
    /// connection; each connector's first buffer is created and its first
    /// frame drawn while the backend maps it (the second buffer follows the
    /// first flip); the frontend goes Connected once its connectors are set
    /// up, as displif.h's state diagram has it.
    fn connect(
        id: &str,
        depths: &[u32],
        generation: u64,
        progress: &[Progress],
        spec: &SceneSpec,
    ) -> Result<Device, ConnectError> {
        let config = store_call("device configuration", |client| {
            config::read_device(client, id)
        })?;
        let node = format!("{}/state", config.backend);
        let watch = store::with(|client| StateWatch::new(client, &node))
            .ok_or_else(|| String::from("the domain has no xenstore"))?
            .map_err(|error| format!("watching the backend: {error}"))?;
        let mut device = Device {
            config,
            version: 1,
            outputs: Vec::new(),
            generation,
            backend_watch: Some(watch),
            connected: false,
            start_ns: time::now_ns(),
            gone: None,
            shutdown: None,
        };
        if let Err(error) = device.await_backend() {
            // Nothing was published yet: only the watch goes.
            device.unwatch_backend();
            return Err(error);
        }
        if let Err(error) = device.publish_and_connect(depths, progress) {
            device.teardown();
            return Err(error);
        }
        crate::println!("display: device {} connected", device.config.path);
        for index in 0..device.outputs.len() {
            if device.version >= 2 {
                device.read_edid(index);
            }
        }
        let set_up = device.start_set_up(spec);
        // Written while the backend maps the first buffers.
        let connected = store_call("connecting", |client| {
            config::set_state(client, &device.config, XenbusState::Connected)
        });
        device.finish_set_up(set_up);
        if let Err(error) = connected {
            device.teardown();
            return Err(match device.shutdown.take() {
                Some(reason) => ConnectError::Shutdown(reason),
                None => ConnectError::Failed(error),
            });
        }
        Ok(device)
    }

    /// Waits for the backend's InitWait and reads the version it offers.
    fn await_backend(&mut self) -> Result<(), ConnectError> {
        // Mostly the backend is at InitWait already (the toolstack waits for
        // it before the domain runs): its state and versions in one go.
        let ready = store_call("version negotiation", |client| {
            config::ready_version(client, &self.config)
        })?;
        if let Some(version) = ready {
            self.version = version;
            self.announce();
            return Ok(());
        }
        let watch = self.backend_watch.as_ref().ok_or_else(no_watch)?;
        // The backend publishes `versions` before it reaches InitWait. A
        // backend still Connected to an earlier connection (or left so by a
        // backend that died) is not this frontend's: wait for InitWait.
        handshake_wait("waiting for the backend", watch, |state| {
            state == XenbusState::InitWait
        })?;
        let ready = store_call("version negotiation", |client| {
            config::ready_version(client, &self.config)
        })?;
        self.version =
            ready.ok_or_else(|| String::from("the backend left InitWait before the version"))?;
        self.announce();
        Ok(())
    }

    /// Prints the device's line once its backend and version are known.
    fn announce(&self) {
        let config = &self.config;
        crate::println!(
            "display: device {} backend {} (domain {}), protocol version {}, {} connectors",
            config.path,
            config.backend,
            config.backend_id,
            self.version,
            config.connectors.len()
        );
    }

    /// Every connector's rings and channels published, Initialised, then the
    /// backend's Connected.
    fn publish_and_connect(
        &mut self,
        depths: &[u32],
        progress: &[Progress],
    ) -> Result<(), ConnectError> {
        for (index, connector) in self.config.connectors.iter().enumerate() {
            // On failure, what was opened so far is released by teardown.
            let mut output = Self::open_output(&self.config, connector.clone())?;
            output.bpp = depths.get(index).or(depths.last()).copied().unwrap_or(32);
            if let Some(done) = progress.get(index) {
                output.flipper = Flipper::new(done.next_frame);
                output.flips = done.flips;
                output.health = Health::new(output.name(), done.retries);
            }
            self.outputs.push(output);
        }
        let transports: Vec<ConnectorTransport> = self
            .outputs
            .iter()
            .map(|output| ConnectorTransport {
                req_ring_ref: output.req_ref,
                req_port: output.req_port,
                evt_ring_ref: output.evt_ref,
                evt_port: output.evt_port,
            })
            .collect();
        let version = self.version;
        store_call("publishing the connectors", |client| {
            config::publish_with_state(
                client,
                &self.config,
                version,
                &transports,
                XenbusState::Initialised,
            )
        })?;
        let watch = self.backend_watch.as_ref().ok_or_else(no_watch)?;
        handshake_wait("waiting for the backend to connect", watch, |state| {
            state == XenbusState::Connected
        })?;
        self.connected = true;
        Ok(())
    }

    fn open_output(device: &DeviceConfig, config: ConnectorConfig) -> Result<Output, String> {
        let ring = RingPage::new_boxed();
        let events = EventFrame::new_boxed();
        let backend = device.backend_id;
        let req_ref = grant_page(backend, ring.address() as u64 >> 12)?;
        let evt_ref = grant_page(backend, events.address() as u64 >> 12)?;
        let req_port = evtchn::alloc_unbound(&Xen, backend)
            .map_err(|error| format!("EVTCHNOP_alloc_unbound: {error}"))?;
        let evt_port = evtchn::alloc_unbound(&Xen, backend)
            .map_err(|error| format!("EVTCHNOP_alloc_unbound: {error}"))?;
        for port in [req_port, evt_port] {
            evtchn::unmask(&Xen, port)
                .map_err(|error| format!("EVTCHNOP_unmask({port}): {error}"))?;
        }
        let name = recovery::connector_name(config.index, &config.unique_id);
        Ok(Output {
            config,
            bpp: 32,
            connector: Connector::new(ring, events),
            req_port,
            evt_port,
            req_ref,
            evt_ref,
            buffers: Vec::new(),
            back: 0,
            flipper: Flipper::new(0),
            flips: 0,
            round_trips_us: Vec::with_capacity(ROUND_TRIP_WINDOW),
            last_round_trip_us: 0,
            first_flip_ns: None,
            last_flip_ns: 0,
            health: Health::new(name, 0),
        })
    }

    /// GET_EDID (protocol version 2): an EDID's preferred mode takes
    /// precedence over the `resolution` node. A backend without EDID support
    /// is fine; the node's resolution stays.
    fn read_edid(&mut self, index: usize) {
        let name = self.outputs[index].name();
        match self.fetch_edid(index) {
            Ok(Some((width, height))) => {
                let config = &mut self.outputs[index].config;
                if (width, height) != (config.width, config.height) {
                    crate::println!(
                        "display: {name} EDID prefers {width}x{height} over the configured {}x{}",
                        config.width,
                        config.height
                    );
                    config.width = width;
                    config.height = height;
                }
            }
            Ok(None) => log::info!("display {name}: the backend offers no EDID"),
            Err(error) => log::warn!("display {name}: GET_EDID: {error}"),
        }
    }

    fn fetch_edid(&mut self, index: usize) -> Result<Option<(u32, u32)>, String> {
        let backend = self.config.backend_id;
        let pages = displif::buffer_pages(displif::EDID_MAX_SIZE);
        let mut memory =
            PageBuffer::new(pages).ok_or_else(|| String::from("no memory for the EDID"))?;
        let mut directory =
            PageBuffer::new(1).ok_or_else(|| String::from("no memory for the EDID"))?;
        let mut refs = Vec::new();
        let granted = (0..pages)
            .map(|page| memory.frame(page))
            .chain([directory.frame(0)])
            .try_for_each(|frame| grant_page(backend, frame).map(|gref| refs.push(gref)));
        let result = granted.and_then(|()| {
            let (buffer_refs, directory_ref) = refs.split_at(pages);
            write_directory(directory.pages_mut(), directory_ref, buffer_refs);
            let request = Request::GetEdid {
                buffer_sz: displif::EDID_MAX_SIZE,
                gref_directory: directory_ref[0],
            };
            let output = &mut self.outputs[index];
            let mut wait = PortWait {
                req_port: output.req_port,
                evt_port: output.evt_port,
            };
            match connector::call(&mut output.connector, &mut wait, &request, EDID_TIMEOUT_NS) {
                Ok(response) => {
                    let size = (response.edid_sz as usize).min(memory.bytes_mut().len());
                    drivers::xen::edid::preferred_resolution(&memory.bytes_mut()[..size])
                        .map(Some)
                        .map_err(|error| format!("{error}"))
                }
                Err(VdisplError::Status { status, .. }) if status == -95 || status == -38 => {
                    Ok(None)
                }
                Err(error) => Err(format!("{error}")),
            }
        });
        if end_all(&refs, time::now_ns() + RELEASE_TIMEOUT_NS) {
            drop((memory, directory));
        } else {
            log::warn!(
                "display: the EDID buffer is still mapped by the backend; it stays allocated"
            );
            core::mem::forget((memory, directory));
        }
        result
    }

    /// The first half of setting up the connectors: for each, its first
    /// buffer granted and its DBUF_CREATE and FB_ATTACH sent, then its first
    /// frame drawn into it while the backend maps it. Connector 0's
    /// SET_CONFIG and first PG_FLIP follow at once on the same ring, which the
    /// backend serves in order; other connectors' wait for ring 0's answers
    /// ([`Device::finish_set_up`]).
    fn start_set_up(&mut self, spec: &SceneSpec) -> SetUp {
        let mut set_up = SetUp {
            pending: Vec::new(),
            frames: Vec::new(),
        };
        for index in 0..self.outputs.len() {
            let mut frame = None;
            match self.send_buffer(index) {
                Ok(sent) if self.outputs[index].health.failed().is_some() => {
                    set_up.pending.extend(sent)
                }
                Ok(sent) => {
                    set_up.pending.extend(sent);
                    frame = self.render(index, spec);
                    if index == 0 && self.outputs[0].health.failed().is_none() {
                        set_up.pending.extend(self.send_set_config(0));
                        self.flip_first(0, frame.take());
                    }
                }
                Err(error) => self.outputs[index].fail_setup(error),
            }
            set_up.frames.push(frame);
        }
        set_up
    }

    /// The rest: every answer awaited, then the other connectors' SET_CONFIG
    /// and first PG_FLIP, their answers awaited too.
    fn finish_set_up(&mut self, set_up: SetUp) {
        self.await_answers(set_up.pending, SETUP_TIMEOUT_NS);
        let mut pending = Vec::new();
        for (index, frame) in set_up.frames.into_iter().enumerate() {
            // Connector 0's went with its buffer.
            if index > 0 && self.outputs[index].health.failed().is_none() {
                pending.extend(self.send_set_config(index));
            }
            self.flip_first(index, frame);
        }
        self.await_answers(pending, SETUP_TIMEOUT_NS);
        for output in &self.outputs {
            if output.health.failed().is_none() {
                let (width, height, bpp) = (output.config.width, output.config.height, output.bpp);
                crate::println!(
                    "display: {} {width}x{height} {bpp} bpp ready, buffers of {} KiB",
                    output.name(),
                    displif::stride(width, bpp) * height / 1024
                );
            }
        }
    }

    /// Flips output `index`'s first frame, drawn during setup, unless the
    /// output failed meanwhile: then the frame is drawn again on the next
    /// connection.
    fn flip_first(&mut self, index: usize, frame: Option<Drawn>) {
        let Some(frame) = frame else {
            return;
        };
        if self.outputs[index].health.failed().is_none() {
            self.send_flip(index, frame);
        }
    }

    /// SET_CONFIG showing output `index`'s first framebuffer, sent on its
    /// ring.
    fn send_set_config(&mut self, index: usize) -> Option<Pending> {
        let output = &self.outputs[index];
        let request = Request::SetConfig {
            fb_cookie: output.buffers.first()?.fb_cookie,
            x: 0,
            y: 0,
            width: output.config.width,
            height: output.config.height,
            bpp: output.bpp,
        };
        self.send_all(Some(index), &[(index, request, Mark::Nothing)])
            .pop()
    }

    /// Sends `requests` (ring, request, what its success marks) for output
    /// `index` (`None`: teardown), notifying each ring once; returns what was
    /// sent. A request that cannot be sent fails the output.
    fn send_all(
        &mut self,
        index: Option<usize>,
        requests: &[(usize, Request, Mark)],
    ) -> Vec<Pending> {
        let now = time::now_ns();
        let mut sent = Vec::new();
        let mut notify = [false; MAX_OUTPUTS];
        for &(ring, request, mark) in requests {
            match self.outputs[ring].connector.send(&request, now) {
                Ok((id, wanted)) => {
                    notify[ring] |= wanted;
                    sent.push(Pending {
                        ring,
                        id,
                        operation: request.operation(),
                        output: index,
                        mark,
                        sent_ns: now,
                    });
                }
                Err(error) => {
                    self.failed(index, request.operation(), &error);
                    if index.is_some() {
                        break;
                    }
                }
            }
        }
        for (ring, wanted) in notify.iter().enumerate() {
            if *wanted {
                services::notify(self.outputs[ring].req_port);
            }
        }
        sent
    }

    /// A request of output `index` failed: the output fails (once); during
    /// teardown (`None`) it is logged.
    fn failed(&mut self, index: Option<usize>, operation: Operation, error: &VdisplError) {
        match index {
            Some(index) if self.outputs[index].health.failed().is_none() => {
                self.outputs[index].fail(format!("{error}"))
            }
            Some(_) => {}
            None => log::warn!("display: {operation} during teardown: {error}"),
        }
    }

    /// Waits, each at most `timeout_ns`, for the answers to `pending`; applies
    /// each success's mark and fails the output of each error (see
    /// [`Device::failed`]). Setup requests stop being waited for when the
    /// backend leaves or a shutdown comes (see [`Device::interrupted`]).
    /// Whether all were answered (error statuses included).
    fn await_answers(&mut self, mut pending: Vec<Pending>, timeout_ns: u64) -> bool {
        let mut all = true;
        while !pending.is_empty() {
            let setup = pending.iter().any(|request| request.output.is_some());
            if setup && self.look_for_interruption() {
                for request in pending {
                    self.outputs[request.ring].connector.abandon(request.id);
                }
                return false;
            }
            let now = time::now_ns();
            let mut index = 0;
            while index < pending.len() {
                let request = pending[index];
                let connector = &mut self.outputs[request.ring].connector;
                let answer = match connector.pump() {
                    Err(error) => Some(Err(error)),
                    Ok(()) => connector.take_response(request.id),
                };
                let answer = answer.or_else(|| {
                    (now >= request.sent_ns + timeout_ns).then(|| {
                        connector.abandon(request.id);
                        all = false;
                        Err(VdisplError::Timeout {
                            operation: request.operation,
                            waited_ms: (now - request.sent_ns) / NS_PER_MS,
                        })
                    })
                });
                let Some(answer) = answer else {
                    index += 1;
                    continue;
                };
                pending.remove(index);
                match (answer, request.output, request.mark) {
                    (Ok(_), Some(output), Mark::Created(buffer)) => {
                        self.outputs[output].buffers[buffer].created = true
                    }
                    (Ok(_), Some(output), Mark::Attached(buffer)) => {
                        self.outputs[output].buffers[buffer].attached = true
                    }
                    (Ok(_), ..) => {}
                    (Err(error), output, _) => self.failed(output, request.operation, &error),
                }
            }
            if let Some(deadline) = pending
                .iter()
                .map(|request| request.sent_ns + timeout_ns)
                .min()
            {
                self.wait_on_rings(deadline);
            }
        }
        all
    }

    /// One more display buffer and framebuffer for output `index`: its pages
    /// granted, then DBUF_CREATE and FB_ATTACH sent on connector 0's ring
    /// (displif.h wants them there), one after the other without waiting.
    fn send_buffer(&mut self, index: usize) -> Result<Vec<Pending>, SetupError> {
        let output = &self.outputs[index];
        let (width, height, bpp) = (output.config.width, output.config.height, output.bpp);
        let slot = output.buffers.len();
        let pixel_format = if bpp == 16 {
            displif::FOURCC_RGB565
        } else {
            displif::FOURCC_XRGB8888
        };
        let size = displif::stride(width, bpp) * height;
        let backend = self.config.backend_id;
        let pages = displif::buffer_pages(size);
        let memory = PageBuffer::new(pages)
            .ok_or_else(|| out_of_memory(format!("a {width}x{height} buffer")))?;
        let mut directory = PageBuffer::new(displif::directory_pages(pages))
            .ok_or_else(|| out_of_memory(String::from("a page directory")))?;
        let mut refs = Vec::with_capacity(pages);
        let mut directory_refs = Vec::new();
        let mut granted = || -> Result<(), String> {
            for page in 0..pages {
                refs.push(grant_page(backend, memory.frame(page))?);
            }
            for page in 0..directory.pages() {
                directory_refs.push(grant_page(backend, directory.frame(page))?);
            }
            Ok(())
        };
        let result = granted();
        write_directory(directory.pages_mut(), &directory_refs, &refs);
        let dbuf_cookie = (self.generation << 16) | ((index as u64 + 1) << 4) | (slot as u64 + 1);
        let fb_cookie = dbuf_cookie | 0x8;
        let gref_directory = directory_refs.first().copied();
        // Kept even when granting failed: teardown ends what was granted.
        self.outputs[index].buffers.push(Buffer {
            memory,
            directory,
            refs,
            directory_refs,
            dbuf_cookie,
            fb_cookie,
            created: false,
            attached: false,
        });
        result?;
        let gref_directory =
            gref_directory.ok_or_else(|| String::from("no page directory was granted"))?;
        let create = Request::DbufCreate(DbufCreate {
            dbuf_cookie,
            width,
            height,
            bpp,
            buffer_sz: size,
            flags: 0,
            gref_directory,
            data_ofs: 0,
        });
        let attach = Request::FbAttach {
            dbuf_cookie,
            fb_cookie,
            width,
            height,
            pixel_format,
        };
        let sent = self.send_all(
            Some(index),
            &[
                (0, create, Mark::Created(slot)),
                (0, attach, Mark::Attached(slot)),
            ],
        );
        Ok(sent)
    }

    /// Renders and flips frames on every healthy connector until all are
    /// done; returns a shutdown request if one came in.
    fn show(&mut self, spec: &SceneSpec) -> ShowEnd {
        let end = loop {
            if let Some(reason) = self.shutdown.take() {
                break ShowEnd::Shutdown(reason);
            }
            if let Some(reason) = self.gone.take() {
                break ShowEnd::Lost(reason);
            }
            // The rings first: a flip that completed is not held up by the
            // xenstore round trips below.
            let mut busy = false;
            for index in 0..self.outputs.len() {
                busy |= self.step(index, spec);
            }
            if let Some(reason) = control::take_request() {
                break ShowEnd::Shutdown(reason);
            }
            if self
                .backend_watch
                .as_ref()
                .is_some_and(StateWatch::take_change)
            {
                if let Some(reason) = self.backend_gone() {
                    break ShowEnd::Lost(reason);
                }
            }
            // A connector that failed for a reason a new connection may cure:
            // once its delay is over, reconnect the device (its ring indexes
            // and the buffers on connector 0's ring are only sound to reset
            // with the backend's part, which a reconnection does).
            match recovery::decide(&mut self.outputs, busy, time::now_ns()) {
                Verdict::Continue => {}
                Verdict::Reconnect(reason) => break ShowEnd::Lost(reason),
                Verdict::Finished => break ShowEnd::Finished,
            }
            self.wait_for_activity();
        };
        for output in &self.outputs {
            summarize(output);
        }
        end
    }

    /// Whether the backend left the connection, and how.
    fn backend_gone(&self) -> Option<String> {
        store::with(|client| config::backend_gone(client, &self.config)).flatten()
    }

    /// Advances one connector; returns whether it still has work.
    fn step(&mut self, index: usize, spec: &SceneSpec) -> bool {
        let output = &mut self.outputs[index];
        if output.health.failed().is_some() {
            return false;
        }
        let now = time::now_ns();
        match output
            .flipper
            .poll(&mut output.connector, output.health.name(), now)
        {
            FlipPoll::Failed(error) => {
                output.fail(error.to_string());
                return false;
            }
            FlipPoll::Pending => return true,
            FlipPoll::Released { tag: line, release } => {
                // As Linux's xen-drm-front: the frame counts as shown.
                log::warn!("display {}: {release}", output.health.name());
                output.shown(line, None, now, spec);
            }
            FlipPoll::Done {
                tag: line,
                round_trip_ns,
            } => output.shown(line, Some(round_trip_ns), now, spec),
            FlipPoll::Idle => {}
        }
        match self.render(index, spec) {
            Some(frame) => {
                self.send_flip(index, frame);
                self.outputs[index].health.failed().is_none()
            }
            None => false,
        }
    }

    /// Draws output `index`'s next frame into its back buffer (made first if
    /// it is the second buffer, not made yet); `None` when every frame was
    /// shown or the output failed.
    fn render(&mut self, index: usize, spec: &SceneSpec) -> Option<Drawn> {
        let output = &self.outputs[index];
        let (scene, frame) = spec.frame_at(output.flipper.next_frame())?;
        if output.back >= output.buffers.len() {
            // The second buffer, once the first frame is shown.
            match self.send_buffer(index) {
                Ok(sent) => {
                    self.await_answers(sent, SETUP_TIMEOUT_NS);
                }
                Err(error) => self.outputs[index].fail_setup(error),
            }
            if self.outputs[index].health.failed().is_some() || self.interrupted() {
                return None;
            }
        }
        let start = self.start_ns;
        let output = &mut self.outputs[index];
        let status = Status {
            uptime_ms: time::now_ns().saturating_sub(start) / NS_PER_MS,
            flips: u64::from(output.flips),
            flip_rtt_us: u64::from(output.last_round_trip_us),
            heap_bytes: heap::used() as u64,
            grants: u64::from(services::with_grants(|grants| grants.in_use()).unwrap_or(0)),
        };
        let (width, height) = (output.config.width, output.config.height);
        let name = output.config.unique_id.clone();
        let back = output.back;
        let Some(buffer) = output.buffers.get_mut(back) else {
            output.fail(String::from("no buffers"));
            return None;
        };
        let frame_inputs = Frame {
            scene,
            number: frame,
            connector: &name,
            status,
        };
        let bpp = output.bpp;
        let drawn = if bpp == 16 {
            Framebuffer::<FormatRgb565>::packed(buffer.memory.bytes_mut(), width, height)
                .map(|mut target| draw_frame(&frame_inputs, &mut target.color_converted()))
        } else {
            Framebuffer::<FormatXrgb8888>::packed(buffer.memory.bytes_mut(), width, height)
                .map(|mut target| draw_frame(&frame_inputs, &mut target))
        };
        if let Err(error) = drawn {
            output.fail(format!("framebuffer: {error}"));
            return None;
        }
        let fb_cookie = buffer.fb_cookie;
        Some(Drawn {
            fb_cookie,
            line: FlipLine {
                connector: output.config.index,
                seq: u64::from(output.flips),
                scene,
                frame,
                width,
                height,
                bpp,
                name: Label::from_str_truncated(&name),
                status,
            },
        })
    }

    /// Sends PG_FLIP for a drawn frame; it is then in flight.
    fn send_flip(&mut self, index: usize, drawn: Drawn) {
        let output = &mut self.outputs[index];
        let fb_cookie = drawn.fb_cookie;
        match output
            .flipper
            .send(&mut output.connector, fb_cookie, time::now_ns(), drawn.line)
        {
            Ok(notify) => {
                if notify {
                    services::notify(output.req_port);
                }
            }
            Err(error) => output.fail(error.to_string()),
        }
    }

    /// Sleeps until an event channel of a connector or xenstore fires, or
    /// `deadline_ns`.
    fn wait_on_rings(&self, deadline_ns: u64) {
        let Some(events) = services::events() else {
            return;
        };
        let mut ports: Vec<u32> = self
            .outputs
            .iter()
            .flat_map(|output| [output.req_port, output.evt_port])
            .collect();
        ports.extend(store::port());
        time::wait_until(deadline_ns, || {
            ports.iter().any(|&port| events.is_fired(port))
        });
        for &port in &ports {
            events.take(port);
        }
        store::service();
    }

    /// Whether the backend left or a shutdown came while setup requests
    /// were awaited: [`Device::show`] ends at once then.
    fn interrupted(&self) -> bool {
        self.gone.is_some() || self.shutdown.is_some()
    }

    /// Looks for a shutdown request and a change of the backend's state;
    /// returns [`Device::interrupted`].
    fn look_for_interruption(&mut self) -> bool {
        if self.shutdown.is_none() {
            self.shutdown = control::take_request();
        }
        if self.gone.is_none()
            && self
                .backend_watch
                .as_ref()
                .is_some_and(StateWatch::take_change)
        {
            self.gone = self.backend_gone();
        }
        self.interrupted()
    }

    /// Sleeps until an event channel of a connector or xenstore fires, or
    /// the next flip deadline.
    fn wait_for_activity(&mut self) {
        let Some(events) = services::events() else {
            return;
        };
        let mut ports: Vec<u32> = self
            .outputs
            .iter()
            .filter(|output| output.health.failed().is_none())
            .flat_map(|output| [output.req_port, output.evt_port])
            .collect();
        let store_port = store::port();
        ports.extend(store_port);
        let deadline = self
            .outputs
            .iter()
            .filter_map(|output| output.flipper.deadline())
            .chain(
                self.outputs
                    .iter()
                    .filter_map(|output| output.health.retry_at()),
            )
            .min()
            .unwrap_or(time::now_ns() + 1_000 * NS_PER_MS);
        time::wait_until(deadline, || ports.iter().any(|&port| events.is_fired(port)));
        for &port in &ports {
            events.take(port);
        }
        store::service();
    }

    /// Sends every request of `batch` (ring index, request) without waiting
    /// in between, notifies each ring once, then waits until all are answered
    /// or `timeout_ns` passes, logging what fails. Returns whether the backend
    /// answered them all (error statuses included).
    fn send_batch(&mut self, batch: &[(usize, Request)], timeout_ns: u64) -> bool {
        let requests: Vec<(usize, Request, Mark)> = batch
            .iter()
            .map(|&(ring, request)| (ring, request, Mark::Nothing))
            .collect();
        let pending = self.send_all(None, &requests);
        self.await_answers(pending, timeout_ns)
    }

    /// Removes the watch on the backend's state.
    fn unwatch_backend(&mut self) {
        if let Some(watch) = self.backend_watch.take() {
            if let Some(Err(error)) = store::with(|client| watch.remove(client)) {
                log::warn!("display: unwatching the backend: {error}");
            }
        }
    }

    /// Undoes everything: disable, detach, destroy, close the connection,
    /// then end every grant once the backend let go of it.
    fn teardown(&mut self) {
        self.unwatch_backend();
        // Undo on the rings only while the backend is there to answer, in two
        // batches (one round trip each): switch the connectors off, then
        // detach and destroy the buffers on connector 0's ring, in order.
        let working: Vec<bool> = self
            .outputs
            .iter()
            .map(|output| output.health.failed().is_none())
            .collect();
        let buffers: Vec<BufferObjects> = self
            .outputs
            .iter()
            .flat_map(|output| &output.buffers)
            .map(|buffer| BufferObjects {
                dbuf_cookie: buffer.dbuf_cookie,
                fb_cookie: buffer.fb_cookie,
                created: buffer.created,
                attached: buffer.attached,
            })
            .collect();
        let (disable, release) = recovery::teardown_batches(&working, &buffers);
        let mut responsive = self.connected && self.backend_gone().is_none();
        if responsive {
            responsive = self.send_batch(&disable, TEARDOWN_TIMEOUT_NS);
        }
        if responsive {
            self.send_batch(&release, TEARDOWN_TIMEOUT_NS);
        }
        let config = &self.config;
        let closed = store_call("closing", |client| {
            config::set_state(client, config, XenbusState::Closing)?;
            let node = format!("{}/state", config.backend);
            let _ = xenbus::wait_for_state(
                client,
                &node,
                |state| {
                    matches!(
                        state,
                        XenbusState::Closing | XenbusState::Closed | XenbusState::InitWait
                    )
                },
                RELEASE_TIMEOUT_NS,
            );
            config::set_state(client, config, XenbusState::Closed)
        });
        if let Err(error) = closed {
            log::warn!("display: {error}");
        }
        let deadline = time::now_ns() + RELEASE_TIMEOUT_NS;
        let mut kept = 0usize;
        for output in self.outputs.drain(..) {
            kept += release_output(output, deadline);
        }
        let in_use = services::with_grants(|grants| grants.in_use()).unwrap_or(0);
        if kept == 0 {
            crate::println!(
                "display: all grants returned ({in_use} in use), heap in use {} bytes",
                heap::used()
            );
        } else {
            crate::println!(
                "display: {kept} pages are still mapped by the backend and stay allocated ({in_use} grants in use)"
            );
        }
    }
}

/// Ends every grant of `output`, retrying until `deadline` while the backend
/// maps them; frees what was released and keeps (leaks) what was not.
/// Returns how many pages are kept.
fn release_output(output: Output, deadline: u64) -> usize {
    for port in [output.req_port, output.evt_port] {
        if let Err(error) = evtchn::close(&Xen, port) {
            log::warn!("display: EVTCHNOP_close({port}): {error}");
        }
        if let Some(events) = services::events() {
            events.forget(port);
        }
    }
    let mut kept = 0;
    for buffer in output.buffers {
        let buffer_ok = end_all(&buffer.refs, deadline);
        let directory_ok = end_all(&buffer.directory_refs, deadline);
        if buffer_ok {
            drop(buffer.memory);
        } else {
            kept += buffer.memory.pages();
            core::mem::forget(buffer.memory);
        }
        if directory_ok {
            drop(buffer.directory);
        } else {
            kept += buffer.directory.pages();
            core::mem::forget(buffer.directory);
        }
    }
    let rings_ok = end_all(&[output.req_ref, output.evt_ref], deadline);
    if rings_ok {
        drop(output.connector);
    } else {
        kept += 2;
        core::mem::forget(output.connector);
    }
    kept
}

/// Ends each grant, retrying busy ones until `deadline`; true if all ended.
fn end_all(refs: &[GrantRef], deadline: u64) -> bool {
    let mut pending: Vec<GrantRef> = refs.to_vec();
    loop {
        pending.retain(|&gref| {
            !matches!(
                services::with_grants(|grants| grants.end_access(gref)),
                Some(Ok(()) | Err(GrantError::NotGranted(_)))
            )
        });
        if pending.is_empty() {
            return true;
        }
        if time::now_ns() >= deadline {
            return false;
        }
        time::sleep_ns(NS_PER_MS);
    }
}

/// Draws a frame; drawing into memory cannot fail (its error type is
/// `Infallible`).
fn draw_frame<D: DrawTarget<Color = Rgb888>>(frame: &Frame<'_>, target: &mut D) {
    let _ = scenes::draw(frame, target);
}

/// Print one flip line in this many (`flip-lines=N` in the bootargs; every
/// flip by default). Long runs keep the consoles quiet with it; the last
/// flip of a connector is always printed.
static FLIP_LINE_EVERY: AtomicU32 = AtomicU32::new(1);

/// Reads `flip-lines=N` from the bootargs.
pub fn flip_lines_from_bootargs(bootargs: &str) {
    let every = bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("flip-lines="))
        .and_then(|value| value.parse::<u32>().ok())
        .filter(|&every| every > 0)
        .unwrap_or(1);
    FLIP_LINE_EVERY.store(every, Ordering::Relaxed);
}

/// `bpp=<32|16>[,<32|16>...]` from the bootargs: the depth of each
/// connector's buffers in order, the last one repeating; 32 by default.
pub fn depths_from_bootargs(bootargs: &str) -> Vec<u32> {
    let Some(list) = bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("bpp="))
    else {
        return Vec::new();
    };
    list.split(',')
        .map(|value| match value.parse() {
            Ok(depth @ (16 | 32)) => depth,
            _ => {
                log::warn!("bpp={value} is not 16 or 32; using 32");
                32
            }
        })
        .collect()
}

fn percentile(sorted: &[u32], percent: usize) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * percent)
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summarize(output: &Output) {
    let mut sorted = output.round_trips_us.clone();
    sorted.sort_unstable();
    let elapsed_ns = output
        .first_flip_ns
        .map_or(0, |first| output.last_flip_ns.saturating_sub(first));
    let fps_milli = if elapsed_ns > 0 && output.flips > 1 {
        u64::from(output.flips - 1) * 1_000_000_000_000 / elapsed_ns
    } else {
        0
    };
    crate::println!(
        "display: summary conn={} {}x{} frames={} fps={}.{:03} rtt_p50_us={} rtt_p99_us={}{}",
        output.config.index,
        output.config.width,
        output.config.height,
        output.flips,
        fps_milli / 1000,
        fps_milli % 1000,
        percentile(&sorted, 50),
        percentile(&sorted, 99),
        match output.health.failed() {
            Some(reason) => format!(" failed: {reason}"),
            None => String::new(),
        }
    );
}
