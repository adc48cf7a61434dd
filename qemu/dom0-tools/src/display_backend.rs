//! The Dom0 display backend (`vdispl-backend`): serves every vdispl device whose backend is
//! Dom0, any number of frontends and connectors, from one thread that polls xenstore and the
//! event channels; shown frames are copied out by copy threads ([`Copier`]) and written by
//! worker threads ([`FrameWriter`]).
//!
//! Per device it follows the handshake that [`lifecycle::decide`] spells out, maps the
//! connectors' rings and event pages (`/dev/xen/gntdev`), binds their event channels
//! (`/dev/xen/evtchn`), and answers every request through the shared backend rules
//! (`drivers::xen::vdispl::backend::BackendModel`): a display buffer's pages are mapped when
//! it is created and unmapped when it is destroyed, a flip is answered and its EVT_PG_FLIP
//! goes to the connector's event page at once, then a copy thread copies the framebuffer now
//! shown while the ring thread goes on (a ring gets one flip per turn, the rings taking turns).
//! The tear-free rule (see [`crate::frame_copy`]): the connector's next flip is answered only
//! once that copy is done (its answer is held meanwhile, the other rings served), or, if the
//! copy had not started yet, the frame is dropped and named in a `not captured` line; a
//! DBUF_DESTROY of a buffer being copied is held the same way. GET_EDID is answered (with a
//! base block for the connector's resolution) only when the frontend asked for protocol
//! version 2, or in strict mode (`--strict`, the xen-troops DRM backend's behaviour).
//! Closing a device writes Closing, releases everything, then writes Closed. Every rejected request is logged with its reason.
//!
//! Bad frontend configuration is refused precisely, as xenbus does, and said in the device's
//! xenbus error node (`/local/domain/0/error/backend/vdispl/<domid>/<dev>/error`, readable by
//! the frontend's domain; see [`update_error_node`]). A connector whose `resolution` is refused
//! ([`frontend::ResolutionRefusal`]) is set up like the others and every request on its own ring
//! is answered -EINVAL, said in one line per connection; the device's other connectors are
//! served and the device goes Connected. A device whose nodes are refused
//! ([`frontend::DeviceRefusal`]) stays at InitWait, said once, until the frontend changes its
//! nodes or state ([`lifecycle::Phase::Refused`], watched: no polling). The error node goes
//! once the configuration is good, the frontend is gone or the device is removed.

use crate::be_alloc;
use crate::capture::{FrameLayout, FrameWriter, Submitted, WriterStats};
use crate::drop_report;
use crate::evtchn::Evtchn;
use crate::frame_copy::{Completed, Copier, CopyOutcome, CopySource, JobId, JobStatus};
use crate::frontend::{
    self, ConnectorConfig, DeviceKey, DeviceRefusal, FrontendError, NodeReader, Scope,
    BACKEND_ROOT, VERSIONS,
};
use crate::grant_map::{Access, EventMapping, GrantMapper, GrantMapping, RingMapping};
use crate::lifecycle::{self, Action, OwnWrites, Phase, RefusalState, Step};
use crate::xenbus::{self, Permission, Xenbus};
use drivers::xen::displif::{self, field, Operation, Request, Response};
use drivers::xen::edid;
use drivers::xen::gnttab::GrantRef;
use drivers::xen::ring::{RingError, Slot};
use drivers::xen::vdispl::backend::{
    read_directory, respond, BackendModel, DirectoryReader, Effect, Rejection, Strictness, EINVAL,
};
use drivers::xen::vdispl::fault::{FaultHit, FaultState};
use drivers::xen::vdispl::server::{Channel, Outgoing, ServeHost, ServedConnector};
use drivers::xen::xenbus::{error_node, XenbusState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Token of the watch on [`BACKEND_ROOT`].
const BACKEND_TOKEN: &str = "vdispl-backend";
/// Prefix of the tokens of the watches on frontend `state` nodes (`frontend:<domid>/<dev>`).
const FRONTEND_TOKEN: &str = "frontend:";
/// Prefix of the tokens of the watches on the whole directory of a frontend whose nodes are
/// refused (`frontend-nodes:<domid>/<dev>`): any change there is a reason to read them again.
const FRONTEND_NODES_TOKEN: &str = "frontend-nodes:";
/// Where Dom0's xenbus error nodes live: directories up to it that an error node of this
/// backend leaves empty are removed with it.
const ERROR_ROOT: &str = "/local/domain/0/error";
/// The longest message an error node holds (cut at a character boundary).
const ERROR_MESSAGE_MAX: usize = 2048;
/// How long one poll(2) waits before the stop flag is looked at again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often every device is looked at again, watch events or not.
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);
/// How long stopping waits for the frame workers.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of the backend.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where PNG files go (`None`: frame lines only).
    pub out_dir: Option<PathBuf>,
    /// Frame worker threads.
    pub workers: usize,
    /// Threads that copy shown frames out of the display buffers (at least one).
    pub copy_threads: usize,
    /// A misbehaviour to show the frontend (`--fault`); none by default.
    pub fault: Option<Fault>,
    /// Behave as the xen-troops DRM backend does (`--strict`): no `versions` node, GET_EDID
    /// answered in protocol version 1 too, SET_CONFIG only for a host mode
    /// ([`drivers::xen::vdispl::backend::HOST_MODES`]), 32 bpp display buffers only,
    /// EVT_PG_FLIP at the next 60 Hz vblank after the answer, and InitWait at once after a
    /// close the frontend started.
    pub strict: bool,
}

pub use drivers::xen::vdispl::fault::{Fault, FaultMode, FAULT_MODES};

/// What a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Frames flipped.
    pub flips: u64,
    /// Frames copied out of their display buffers.
    pub copied: u64,
    /// Flip (or DBUF_DESTROY) answers held until the copy of the frame shown before was done.
    pub held: u64,
    /// Requests rejected.
    pub rejected: u64,
    /// Devices connected.
    pub connections: u64,
    /// Time the copy threads spent copying flipped frames out of the display buffers.
    pub capture: Duration,
    /// Frames flipped but not written: the copy threads or the workers were behind and a
    /// newer frame of the same connector took their place, or the device went away during
    /// the copy (each is named in a line as it happens).
    pub not_captured: u64,
    /// What the frame workers did.
    pub writer: WriterStats,
}

/// A connector's request ring and event page, served by the shared ring loop.
type ServedRing = ServedConnector<RingMapping, EventMapping>;

/// One connector of a connected device, besides its ring and event page ([`ServedRing`]).
struct Connector {
    config: ConnectorConfig,
    /// The ring's page, unmapped (with errors reported) once its [`ServedRing`] is dropped.
    ring_page: RingMapping,
    /// Local port bound to the frontend's `req-event-channel`.
    req_port: u32,
    /// Local port bound to the frontend's `evt-event-channel`.
    evt_port: u32,
    /// Flips captured on this connector: the next frame's `seq`.
    flips: u64,
    /// The copy of the frame shown last, until it is known to be over.
    copy: Option<InFlight>,
}

/// How often a strict backend's display refreshes: EVT_PG_FLIP goes out at the next vblank.
const VBLANK_PERIOD: Duration = Duration::from_nanos(16_666_667);

/// A 60 Hz vblank clock, as a DRM backend's page flip completes on the display's next
/// vertical blank (displ_be sends EVT_PG_FLIP from the DRM flip event, after the answer).
/// Times are [`monotonic_ns`].
#[derive(Clone, Copy, Debug)]
struct Vblank {
    /// A vblank; the others follow every [`VBLANK_PERIOD`].
    epoch_ns: u64,
}

impl Vblank {
    /// The first vblank strictly after `now_ns`.
    fn next_after(&self, now_ns: u64) -> u64 {
        let period = VBLANK_PERIOD.as_nanos() as u64;
        let ticks = now_ns.saturating_sub(self.epoch_ns) / period + 1;
        self.epoch_ns.saturating_add(ticks.saturating_mul(period))
    }
}

/// A copy handed to the copy threads.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    job: JobId,
    /// The display buffer it reads.
    dbuf_cookie: u64,
    seq: u64,
}

/// A connected device: its connectors' rings, served by the shared ring loop, and the rest,
/// which that loop's host ([`RingHost`]) borrows.
struct Link {
    /// Connector `i`'s ring and event page, beside `state.connectors[i]`.
    served: Vec<ServedRing>,
    state: LinkState,
}

impl Link {
    /// `state` without connectors yet.
    fn new(state: LinkState) -> Self {
        Link {
            served: Vec::new(),
            state,
        }
    }

    /// Adds the next connector.
    fn push(&mut self, (connector, ring): (Connector, ServedRing)) {
        self.state.connectors.push(connector);
        self.served.push(ring);
    }
}

/// What the frontend created and what is mapped for it.
struct LinkState {
    version: u32,
    /// [`Options::strict`]: GET_EDID is answered in every protocol version.
    strict: bool,
    /// Strict mode: EVT_PG_FLIP waits for the next vblank of this clock.
    vblank: Option<Vblank>,
    model: BackendModel,
    /// Mapped display buffers, shared with the copies reading them.
    buffers: HashMap<u64, Arc<GrantMapping>>,
    connectors: Vec<Connector>,
}

/// A device this backend knows.
struct Device {
    key: DeviceKey,
    /// The frontend's device directory (the backend's `frontend` node).
    frontend: Option<String>,
    /// The watch on the frontend's `state` node is set.
    watching: bool,
    /// The watch on the frontend's whole directory is set (while its nodes are refused).
    watching_nodes: bool,
    phase: Phase,
    /// What the device's xenbus error node holds, as far as this backend knows.
    error_node: ErrorNode,
    /// What was said about the frontend's refused nodes.
    refusal: RefusalState,
    /// At InitWait: the device's shape (its connectors) is to be checked at the next look,
    /// once after InitWait is written and again whenever the frontend changes.
    check_shape: bool,
    link: Option<Link>,
    /// Flips captured per connector index over every connection so far: a frontend that
    /// reconnects carries on with its frame sequence numbers, and so do the file names.
    flips: BTreeMap<u32, u64>,
}

impl Device {
    fn frontend_token(&self) -> String {
        format!("{FRONTEND_TOKEN}{}/{}", self.key.domid, self.key.device)
    }

    fn frontend_nodes_token(&self) -> String {
        format!(
            "{FRONTEND_NODES_TOKEN}{}/{}",
            self.key.domid, self.key.device
        )
    }
}

/// The device a frontend watch's token names (after its prefix: `<domid>/<dev>`).
fn token_key(rest: &str) -> Option<DeviceKey> {
    let (domid, device) = rest.split_once('/')?;
    Some(DeviceKey {
        domid: frontend::number(domid)?,
        device: frontend::number(device)?,
    })
}

/// Reads nodes through the xenstore connection for [`frontend::read_frontend`].
struct StoreReader<'a>(&'a mut Xenbus);

impl NodeReader for StoreReader<'_> {
    type Error = xenbus::Error;

    fn read_node(&mut self, path: &str) -> Result<Option<String>, xenbus::Error> {
        self.0.read(path)
    }

    fn list_directory(&mut self, path: &str) -> Result<Vec<String>, xenbus::Error> {
        self.0.directory(path)
    }
}

/// Why a device could not be connected.
#[derive(Debug)]
enum ConnectError {
    /// The frontend's nodes are refused: the device waits at InitWait for the frontend to
    /// change them.
    Refused(DeviceRefusal),
    /// Reading the frontend's nodes failed.
    Store(xenbus::Error),
    /// A ring, an event page or an event channel could not be set up (or the backend's
    /// `frontend` node is missing): the device is closed.
    Setup(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused(refusal) => refusal.fmt(f),
            ConnectError::Store(error) => error.fmt(f),
            ConnectError::Setup(error) => f.write_str(error),
        }
    }
}

impl From<FrontendError<xenbus::Error>> for ConnectError {
    fn from(error: FrontendError<xenbus::Error>) -> Self {
        match error {
            FrontendError::Store(error) => ConnectError::Store(error),
            FrontendError::Refused(refusal) => ConnectError::Refused(refusal),
        }
    }
}

/// What a device's xenbus error node holds, as far as this backend knows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ErrorNode {
    /// Not looked at: an earlier run of the backend may have left one.
    Unknown,
    /// None there.
    Absent,
    /// This message, readable by the frontend's domain.
    Holds(String),
}

/// Makes the xenbus error node of device `key` hold `message`, or removes it (with the
/// directories above it it leaves empty, up to [`ERROR_ROOT`]) for `None`, unless `known` says
/// it is so already; returns what it holds now. The node is where Linux's `xenbus_dev_error`
/// puts a device's errors ([`error_node`] of the backend directory); it is owned by Dom0 and
/// readable by the frontend's domain (`n0`, `r<domid>`), written in one transaction with its
/// permissions and only while the backend's `state` node exists, so a device the toolstack
/// removed gets none.
fn update_error_node(
    store: &mut Xenbus,
    key: DeviceKey,
    known: &ErrorNode,
    message: Option<&str>,
) -> Result<ErrorNode, xenbus::Error> {
    let backend = key.backend_path();
    let Some(node) = error_node(&backend) else {
        return Ok(ErrorNode::Absent);
    };
    match message {
        Some(message) => {
            let message = clip(message, ERROR_MESSAGE_MAX);
            if *known == ErrorNode::Holds(message.to_string()) {
                return Ok(known.clone());
            }
            let permissions = Permission::readable_by(key.domid);
            let written = store.write_with_perms_if_exists(
                &format!("{backend}/state"),
                &node,
                message,
                &permissions,
            )?;
            Ok(match written {
                true => ErrorNode::Holds(message.to_string()),
                false => known.clone(),
            })
        }
        None if *known == ErrorNode::Absent => Ok(ErrorNode::Absent),
        None => {
            store.remove_with_empty_parents(&node, ERROR_ROOT)?;
            Ok(ErrorNode::Absent)
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads page directory pages by mapping them one at a time, and allocates backend-allocated
/// buffers ([`be_alloc`]).
struct GrantReader<'a> {
    grants: &'a GrantMapper,
    domid: u32,
    /// The last mapping error, for the log.
    failure: Option<String>,
    /// The buffer [`DirectoryReader::allocate`] allocated, until it is a display buffer.
    allocated: Option<GrantMapping>,
}

impl DirectoryReader for GrantReader<'_> {
    fn allocate(
        &mut self,
        directory: GrantRef,
        pages: usize,
    ) -> Option<Result<Vec<GrantRef>, String>> {
        Some(
            match be_alloc::allocate(self.grants, self.domid, directory, pages)? {
                Ok(allocation) => {
                    self.allocated = Some(allocation.mapping);
                    Ok(allocation.refs)
                }
                Err(error) => Err(error.to_string()),
            },
        )
    }

    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]> {
        match self.grants.map(self.domid, &[gref], Access::ReadOnly) {
            Ok(mapping) => {
                let page = mapping.first_page();
                if let Err(error) = mapping.unmap() {
                    self.failure = Some(error.to_string());
                }
                Some(page)
            }
            Err(error) => {
                self.failure = Some(error.to_string());
                None
            }
        }
    }
}

/// Nanoseconds since Dom0 booted (CLOCK_MONOTONIC): the ring loop's clock.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return 0;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// Milliseconds since Dom0 booted (CLOCK_MONOTONIC), for the lines that mark a device's
/// state changes: they line up with the rig's `uptime` lines.
fn uptime_ms() -> u64 {
    monotonic_ns() / 1_000_000
}

/// The state node value of a xenbus state.
fn state_value(state: XenbusState) -> String {
    (state as u32).to_string()
}

/// The backend.
pub struct Backend {
    store: Xenbus,
    evtchn: Evtchn,
    grants: GrantMapper,
    devices: BTreeMap<DeviceKey, Device>,
    /// Local port -> (device, connector index).
    ports: HashMap<u32, (DeviceKey, usize)>,
    writer: Option<FrameWriter>,
    /// Copies shown frames off this thread (`None`: nothing is copied or held).
    copier: Option<Copier>,
    summary: Summary,
    fault: Option<FaultState>,
    /// Watch events of this backend's own writes, to be dropped.
    own_writes: OwnWrites,
    /// Rings left with requests after their turn, served again in the next round.
    waiting: BTreeSet<(DeviceKey, usize)>,
    /// A `state-back` fault due on this device once its ring was served.
    state_back: Option<DeviceKey>,
    /// [`Options::strict`].
    strict: bool,
}

impl Backend {
    /// Opens the Xen devices and starts the frame workers.
    pub fn open(options: &Options) -> Result<Self, String> {
        let store = Xenbus::open().map_err(|error| error.to_string())?;
        let evtchn = Evtchn::open().map_err(|error| error.to_string())?;
        let grants = GrantMapper::open().map_err(|error| error.to_string())?;
        let (grants, no_allocator) = be_alloc::offer(grants);
        if let Some(why) = no_allocator {
            println!("vdispl-backend: backend-allocated buffers are not offered: {why}");
        }
        if let Some(dir) = &options.out_dir {
            std::fs::create_dir_all(dir)
                .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        }
        Ok(Self {
            store,
            evtchn,
            grants,
            devices: BTreeMap::new(),
            ports: HashMap::new(),
            writer: Some(FrameWriter::start(options.out_dir.clone(), options.workers)),
            copier: Some(
                Copier::start(options.copy_threads)
                    .map_err(|error| format!("cannot start the copy threads (eventfd): {error}"))?,
            ),
            summary: Summary::default(),
            fault: options.fault.map(FaultState::new),
            state_back: None,
            strict: options.strict,
            own_writes: OwnWrites::default(),
            waiting: BTreeSet::new(),
        })
    }

    /// Serves devices until `stop` is set, then closes every device and waits for the frame
    /// workers.
    pub fn run(mut self, stop: &AtomicBool) -> Result<Summary, String> {
        self.store
            .watch(BACKEND_ROOT, BACKEND_TOKEN)
            .map_err(|error| error.to_string())?;
        match self.strict {
            false => {
                println!("vdispl-backend: serving {BACKEND_ROOT} (protocol versions {VERSIONS})")
            }
            true => println!(
                "vdispl-backend: serving {BACKEND_ROOT} (strict: as the xen-troops DRM backend, \
                 no versions node)"
            ),
        }
        let result = self.serve(stop);
        self.shutdown();
        result.map(|()| self.summary)
    }

    fn serve(&mut self, stop: &AtomicBool) -> Result<(), String> {
        // Every device present now, without waiting for the watch's first event, and again
        // every RESCAN_INTERVAL: a device left by an earlier run (its state still Connected
        // with nothing mapped) is closed at once, and a watch event that never came cannot
        // leave a device unserved.
        let mut rescan_at = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if std::time::Instant::now() >= rescan_at {
                self.rescan();
                rescan_at = std::time::Instant::now() + RESCAN_INTERVAL;
            }
            let next_vblank = self.send_due_events();
            let mut timeout = if self.store.has_events() || !self.waiting.is_empty() {
                Duration::ZERO
            } else {
                POLL_INTERVAL
            };
            if let Some(due) = next_vblank {
                // Whole milliseconds, rounded up: poll(2) would otherwise wake early and spin.
                let millis = due.saturating_sub(monotonic_ns()).div_ceil(1_000_000);
                timeout = timeout.min(Duration::from_millis(millis));
            }
            let (store_ready, ports_ready, copies_ready) = self.poll(timeout)?;
            // Held answers first, then the rings: a frontend's requests do not wait behind a
            // look at the devices.
            if copies_ready {
                self.copies_over();
            }
            if ports_ready {
                self.service_fired_ports()?;
            }
            let waiting: Vec<(DeviceKey, usize)> = self.waiting.iter().copied().collect();
            for (key, index) in waiting {
                self.service(key, index);
            }
            if store_ready {
                self.store
                    .receive_events(Duration::ZERO)
                    .map_err(|error| error.to_string())?;
            }
            self.handle_watch_events();
        }
        Ok(())
    }

    /// Sends the EVT_PG_FLIP events whose vblank has come (strict mode); returns when the
    /// next one is due ([`monotonic_ns`]). A ring that fails here is served (and closed) at
    /// its next turn.
    fn send_due_events(&mut self) -> Option<u64> {
        let mut next: Option<u64> = None;
        for (key, device) in self.devices.iter_mut() {
            let Some(link) = device.link.as_mut() else {
                continue;
            };
            let mut rings = Rings {
                grants: &self.grants,
                notifier: &self.evtchn,
                fault: self.fault.as_mut(),
                copier: self.copier.as_ref(),
                summary: &mut self.summary,
                state_back: &mut self.state_back,
            };
            let mut host = RingHost {
                rings: &mut rings,
                key: *key,
                link: &mut link.state,
            };
            for (index, ring) in link.served.iter_mut().enumerate() {
                if let Err(error) = ring.send_due(index, &mut host) {
                    eprintln_line!("vdispl-backend: {key} conn{index}: {error}");
                }
                if let Some(due) = ring.next_due() {
                    next = Some(next.map_or(due, |next| next.min(due)));
                }
            }
        }
        next
    }

    /// poll(2) on the xenstore connection, the event channel device and the copy threads'
    /// wake-up descriptor.
    fn poll(&self, timeout: Duration) -> Result<(bool, bool, bool), String> {
        let copies = self
            .copier
            .as_ref()
            .map_or(-1, |copier| copier.wake_fd().as_raw_fd());
        let mut fds = [
            libc::pollfd {
                fd: self.store.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.evtchn.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            // A negative descriptor is skipped by poll(2).
            libc::pollfd {
                fd: copies,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll(2) on three pollfds we own, for at most `millis` ms.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                return Ok((false, false, false));
            }
            return Err(format!("poll on xenstore and event channels: {error}"));
        }
        let readable =
            |fd: &libc::pollfd| fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        Ok((readable(&fds[0]), readable(&fds[1]), readable(&fds[2])))
    }

    /// Hands the copies that are over to the workers, then serves the rings whose answer
    /// was held for a copy.
    fn copies_over(&mut self) {
        let Some(copier) = self.copier.as_ref() else {
            return;
        };
        // Cleared before the completions are taken: one arriving later signals again.
        copier.clear_wake();
        while let Some(completed) = copier.try_completed() {
            deliver(completed, self.writer.as_ref(), &mut self.summary);
        }
        let held: Vec<(DeviceKey, usize)> = self
            .devices
            .iter()
            .filter_map(|(key, device)| Some((*key, device.link.as_ref()?)))
            .flat_map(|(key, link)| {
                link.served
                    .iter()
                    .enumerate()
                    .filter(|(_, ring)| ring.holding())
                    .map(move |(index, _)| (key, index))
            })
            .collect();
        for (key, index) in held {
            self.service(key, index);
        }
    }

    /// Looks again at every device a queued watch event concerns (each once).
    fn handle_watch_events(&mut self) {
        let mut keys = BTreeSet::new();
        // Devices whose frontend changed its state or (while refused) its nodes.
        let mut changed = BTreeSet::new();
        let mut everything = false;
        let now = std::time::Instant::now();
        while let Some(event) = self.store.take_event() {
            if event.token == BACKEND_TOKEN && self.own_writes.is_echo(&event.path, now) {
                continue;
            }
            if event.token == BACKEND_TOKEN {
                match frontend::scope_of(&event.path) {
                    Scope::Everything => everything = true,
                    Scope::Device(key) => {
                        keys.insert(key);
                    }
                    Scope::Elsewhere => {}
                }
            } else if let Some(key) = event
                .token
                .strip_prefix(FRONTEND_TOKEN)
                .or_else(|| event.token.strip_prefix(FRONTEND_NODES_TOKEN))
                .and_then(token_key)
            {
                keys.insert(key);
                changed.insert(key);
            }
        }
        for key in changed {
            self.set_device(key, |device| {
                device.phase = lifecycle::frontend_changed(device.phase);
                device.check_shape |= device.phase == Phase::InitWait;
            });
        }
        self.look_at(keys, everything);
    }

    /// Looks again at every known and listed device.
    fn rescan(&mut self) {
        self.look_at(BTreeSet::new(), true);
    }

    /// Looks again at the devices `keys` and, with `everything`, at every
    /// known and listed device too.
    fn look_at(&mut self, mut keys: BTreeSet<DeviceKey>, everything: bool) {
        if everything {
            keys.extend(self.devices.keys().copied());
            match self.listed_devices() {
                Ok(listed) => keys.extend(listed),
                Err(error) => eprintln_line!("vdispl-backend: cannot list {BACKEND_ROOT}: {error}"),
            }
        }
        for key in keys {
            if let Err(error) = self.reconcile(key) {
                eprintln_line!("vdispl-backend: {key}: {error}");
            }
        }
    }

    /// Every `<domid>/<dev>` under [`BACKEND_ROOT`].
    fn listed_devices(&mut self) -> Result<Vec<DeviceKey>, xenbus::Error> {
        let mut keys = Vec::new();
        for domid in self.store.directory(BACKEND_ROOT)? {
            let Some(domid) = frontend::number(&domid) else {
                continue;
            };
            for device in self.store.directory(&format!("{BACKEND_ROOT}/{domid}"))? {
                if let Some(device) = frontend::number(&device) {
                    keys.push(DeviceKey { domid, device });
                }
            }
        }
        Ok(keys)
    }

    fn read_state(&mut self, path: &str) -> Result<Option<XenbusState>, String> {
        let value = self.store.read(path).map_err(|error| error.to_string())?;
        Ok(value.map(|value| XenbusState::parse(value.as_bytes()).unwrap_or(XenbusState::Unknown)))
    }

    /// Reads the device's nodes and acts until there is nothing more to do.
    fn reconcile(&mut self, key: DeviceKey) -> Result<(), String> {
        let backend = key.backend_path();
        for _ in 0..4 {
            let backend_state = self.read_state(&format!("{backend}/state"))?;
            if backend_state.is_none() && !self.devices.contains_key(&key) {
                return Ok(());
            }
            if !self.devices.contains_key(&key) {
                let frontend = self
                    .store
                    .read(&format!("{backend}/frontend"))
                    .map_err(|error| error.to_string())?;
                self.devices.insert(
                    key,
                    Device {
                        key,
                        frontend,
                        watching: false,
                        watching_nodes: false,
                        phase: Phase::New,
                        error_node: ErrorNode::Unknown,
                        refusal: RefusalState::default(),
                        check_shape: false,
                        link: None,
                        flips: BTreeMap::new(),
                    },
                );
            }
            self.watch_frontend(key);
            let frontend_path = self.devices.get(&key).and_then(|d| d.frontend.clone());
            let frontend_state = match &frontend_path {
                Some(path) => self.read_state(&format!("{path}/state"))?,
                None => None,
            };
            let online = self
                .store
                .read(&format!("{backend}/online"))
                .map_err(|error| error.to_string())?
                .is_none_or(|value| value.trim() != "0");
            let phase = self.devices.get(&key).map_or(Phase::New, |d| d.phase);
            let action =
                lifecycle::decide_as(self.strict, phase, backend_state, frontend_state, online);
            let why = || match (backend_state, frontend_state) {
                (Some(XenbusState::Closing), _) => "the toolstack removes the device".to_string(),
                (_, None) => "the frontend is gone".to_string(),
                (_, Some(state)) if !online => format!("offline, frontend {state}"),
                (_, Some(state)) => format!("frontend {state}"),
            };
            match action {
                Action::Stay => {
                    let check = phase == Phase::InitWait
                        && self
                            .devices
                            .get(&key)
                            .is_some_and(|device| device.check_shape);
                    if check {
                        self.check_shape(key)?;
                    }
                    return Ok(());
                }
                Action::Offer => {
                    let versions = match self.strict {
                        false => {
                            self.write_guarded(key, field::BE_VERSIONS, VERSIONS)?;
                            VERSIONS
                        }
                        true => "none written",
                    };
                    self.set_state(key, XenbusState::InitWait)?;
                    self.set_device(key, |device| device.check_shape = true);
                    println!(
                        "vdispl-backend: {key}: InitWait (versions {versions}, uptime {} ms)",
                        uptime_ms()
                    );
                }
                Action::Connect => match self.connect(key) {
                    Ok(link) => {
                        let described = describe_link(&link);
                        let refused: Vec<(u32, String)> = link
                            .state
                            .connectors
                            .iter()
                            .filter_map(|connector| {
                                let refusal = connector.config.resolution.as_ref().err()?;
                                Some((connector.config.index, refusal.to_string()))
                            })
                            .collect();
                        self.set_device(key, |device| {
                            device.link = Some(link);
                            device.refusal.replaced();
                        });
                        // Before Connected, so a frontend that reads it then finds it.
                        let messages: Vec<&str> = refused
                            .iter()
                            .map(|(_, refusal)| refusal.as_str())
                            .collect();
                        let message = (!messages.is_empty()).then(|| messages.join("; "));
                        self.set_error_node(key, message.as_deref());
                        self.set_state(key, XenbusState::Connected)?;
                        self.summary.connections += 1;
                        println!(
                            "vdispl-backend: {key}: Connected, {described} (uptime {} ms)",
                            uptime_ms()
                        );
                        for (index, refusal) in &refused {
                            eprintln_line!(
                                "vdispl-backend: {key}: connector {index} refused: {refusal}; \
                                 its requests get -EINVAL"
                            );
                        }
                        let connectors = self.connector_count(key);
                        for index in 0..connectors {
                            self.service(key, index);
                        }
                        // The frontend's next step (ring requests, its Connected) needs no
                        // second look now: a change of its state comes as a watch event.
                        return Ok(());
                    }
                    Err(ConnectError::Refused(refusal)) => {
                        // Not closed: the frontend may put its nodes right, and says so by
                        // changing them.
                        self.refuse(key, &refusal);
                        return Ok(());
                    }
                    Err(error) => {
                        eprintln_line!("vdispl-backend: {key}: cannot connect: {error}");
                        if let ConnectError::Setup(message) = &error {
                            self.set_device(key, |device| device.refusal.replaced());
                            self.set_error_node(key, Some(message));
                        }
                        self.close_device(key, &lifecycle::BACKEND_CLOSE)?;
                    }
                },
                Action::Close => {
                    let steps =
                        lifecycle::close_steps(self.strict, backend_state, frontend_state, online);
                    let flips = self.close_device(key, &steps)?;
                    let again = match steps.last() {
                        Some(Step::Write(XenbusState::InitWait)) => ", then InitWait",
                        _ => "",
                    };
                    println!(
                        "vdispl-backend: {key}: Closed ({}){flips}{again} (uptime {} ms)",
                        why(),
                        uptime_ms()
                    );
                    if frontend_state.is_none() {
                        // Nobody is left to read why the device was refused.
                        self.set_error_node(key, None);
                    }
                }
                Action::Reopen => {
                    self.set_state(key, XenbusState::InitWait)?;
                    self.set_device(key, |device| device.check_shape = true);
                    println!("vdispl-backend: {key}: InitWait again ({})", why());
                }
                Action::Forget => {
                    let flips = self.disconnect(key);
                    if let Some(device) = self.devices.remove(&key) {
                        if let Some(frontend) = &device.frontend {
                            if device.watching {
                                let _ = self.store.unwatch(
                                    &format!("{frontend}/state"),
                                    &device.frontend_token(),
                                );
                            }
                            if device.watching_nodes {
                                let _ =
                                    self.store.unwatch(frontend, &device.frontend_nodes_token());
                            }
                        }
                        // Also one an earlier run of the backend left.
                        if let Err(error) =
                            update_error_node(&mut self.store, key, &device.error_node, None)
                        {
                            eprintln_line!("vdispl-backend: {key}: error node: {error}");
                        }
                    }
                    println!(
                        "vdispl-backend: {key}: removed{flips} (uptime {} ms)",
                        uptime_ms()
                    );
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn set_device(&mut self, key: DeviceKey, f: impl FnOnce(&mut Device)) {
        if let Some(device) = self.devices.get_mut(&key) {
            f(device);
        }
    }

    fn connector_count(&self, key: DeviceKey) -> usize {
        self.devices
            .get(&key)
            .and_then(|device| device.link.as_ref())
            .map_or(0, |link| link.served.len())
    }

    fn watch_frontend(&mut self, key: DeviceKey) {
        let Some(device) = self.devices.get(&key) else {
            return;
        };
        let (Some(frontend), false) = (device.frontend.clone(), device.watching) else {
            return;
        };
        let token = device.frontend_token();
        match self.store.watch(&format!("{frontend}/state"), &token) {
            Ok(()) => self.set_device(key, |device| device.watching = true),
            Err(error) => {
                eprintln_line!("vdispl-backend: {key}: cannot watch the frontend: {error}")
            }
        }
    }

    /// Checks the connectors the frontend's directory lists while the device waits at InitWait
    /// (the toolstack wrote them; the frontend may never get as far as Initialised with them):
    /// a device of a shape this backend cannot serve is refused at once, and one that was
    /// refused and is good now has its error node removed.
    fn check_shape(&mut self, key: DeviceKey) -> Result<(), String> {
        let Some(device) = self.devices.get_mut(&key) else {
            return Ok(());
        };
        device.check_shape = false;
        let Some(frontend_path) = device.frontend.clone() else {
            return Ok(());
        };
        match frontend::connector_count(&mut StoreReader(&mut self.store), &frontend_path) {
            Ok(_) => {
                let refused_before = self
                    .devices
                    .get_mut(&key)
                    .is_some_and(|device| device.refusal.nodes_good());
                if refused_before {
                    self.set_error_node(key, None);
                    self.unwatch_frontend_nodes(key);
                }
                Ok(())
            }
            Err(FrontendError::Refused(refusal)) => {
                self.refuse(key, &refusal);
                Ok(())
            }
            Err(FrontendError::Store(error)) => Err(error.to_string()),
        }
    }

    /// The frontend's nodes are refused: the device stays at InitWait ([`Phase::Refused`]) with
    /// the refusal in its error node, said once, and is looked at again when the frontend
    /// changes its directory (watched) or its state.
    fn refuse(&mut self, key: DeviceKey, refusal: &DeviceRefusal) {
        let message = refusal.to_string();
        let say = self
            .devices
            .get_mut(&key)
            .is_some_and(|device| device.refusal.refused(&message));
        if say {
            eprintln_line!(
                "vdispl-backend: {key}: device refused: {message}; InitWait until the frontend \
                 changes its nodes"
            );
        }
        self.set_error_node(key, Some(&message));
        self.set_device(key, |device| device.phase = Phase::Refused);
        self.watch_frontend_nodes(key);
    }

    /// Watches the frontend's whole directory (a new watch fires once at once, so a change
    /// made before it was set is not missed).
    fn watch_frontend_nodes(&mut self, key: DeviceKey) {
        let Some(device) = self.devices.get(&key) else {
            return;
        };
        let (Some(frontend), false) = (device.frontend.clone(), device.watching_nodes) else {
            return;
        };
        let token = device.frontend_nodes_token();
        match self.store.watch(&frontend, &token) {
            Ok(()) => self.set_device(key, |device| device.watching_nodes = true),
            Err(error) => {
                eprintln_line!("vdispl-backend: {key}: cannot watch the frontend's nodes: {error}")
            }
        }
    }

    fn unwatch_frontend_nodes(&mut self, key: DeviceKey) {
        let Some(device) = self.devices.get(&key) else {
            return;
        };
        let (Some(frontend), true) = (device.frontend.clone(), device.watching_nodes) else {
            return;
        };
        let token = device.frontend_nodes_token();
        if let Err(error) = self.store.unwatch(&frontend, &token) {
            eprintln_line!("vdispl-backend: {key}: {error}");
        }
        self.set_device(key, |device| device.watching_nodes = false);
    }

    /// Makes device `key`'s error node hold `message`, or removes it (see
    /// [`update_error_node`]); a failure is logged.
    fn set_error_node(&mut self, key: DeviceKey, message: Option<&str>) {
        let Some(known) = self
            .devices
            .get(&key)
            .map(|device| device.error_node.clone())
        else {
            return;
        };
        match update_error_node(&mut self.store, key, &known, message) {
            Ok(now) => self.set_device(key, |device| {
                if now == ErrorNode::Absent {
                    device.refusal.replaced();
                }
                device.error_node = now;
            }),
            Err(error) => eprintln_line!("vdispl-backend: {key}: error node: {error}"),
        }
    }

    /// Writes a node of the backend directory, unless the toolstack removed the directory.
    fn write_guarded(&mut self, key: DeviceKey, node: &str, value: &str) -> Result<bool, String> {
        let backend = key.backend_path();
        let path = format!("{backend}/{node}");
        let written = self
            .store
            .write_if_exists(&format!("{backend}/state"), &path, value)
            .map_err(|error| error.to_string())?;
        if written {
            self.own_writes.wrote(&path, std::time::Instant::now());
        }
        Ok(written)
    }

    /// Closes a device by `steps` (see [`lifecycle::close_steps`]): Closing is written before
    /// anything is released, Closed after; returns the release's note for the log.
    fn close_device(&mut self, key: DeviceKey, steps: &[Step]) -> Result<String, String> {
        let mut note = String::new();
        for step in steps {
            match *step {
                Step::Write(state) => self.set_state(key, state)?,
                Step::Release => note = self.disconnect(key),
            }
        }
        Ok(note)
    }

    fn set_state(&mut self, key: DeviceKey, state: XenbusState) -> Result<(), String> {
        self.write_guarded(key, "state", &state_value(state))?;
        let phase = match state {
            XenbusState::InitWait => Phase::InitWait,
            XenbusState::Connected => Phase::Connected,
            _ => Phase::Closed,
        };
        self.set_device(key, |device| {
            device.phase = phase;
            device.refusal.state_written();
        });
        // Refused nodes are watched only while the device waits for them to change.
        self.unwatch_frontend_nodes(key);
        Ok(())
    }

    /// Reads the frontend's nodes, maps every connector's ring and event page and binds its
    /// event channels (a refused connector's too).
    fn connect(&mut self, key: DeviceKey) -> Result<Link, ConnectError> {
        let frontend_path = self
            .devices
            .get(&key)
            .and_then(|device| device.frontend.clone())
            .ok_or_else(|| {
                ConnectError::Setup(format!("{}/frontend is missing", key.backend_path()))
            })?;
        let config = frontend::read_frontend(&mut StoreReader(&mut self.store), &frontend_path)?;
        let strictness = match self.strict {
            true => Strictness::strict(),
            false => Strictness::Lenient,
        };
        let resolutions = config
            .connectors
            .iter()
            .enumerate()
            .filter_map(|(index, connector)| {
                let (width, height) = connector.mode()?;
                Some((index, width, height))
            });
        let mut link = Link::new(LinkState {
            version: config.version,
            strict: self.strict,
            vblank: self.strict.then(|| Vblank {
                epoch_ns: monotonic_ns(),
            }),
            model: BackendModel::for_connectors(strictness, resolutions),
            buffers: HashMap::new(),
            connectors: Vec::new(),
        });
        for connector in config.connectors {
            match self.open_connector(key, connector) {
                Ok(connector) => link.push(connector),
                Err(error) => {
                    self.release(key, link);
                    return Err(ConnectError::Setup(error));
                }
            }
        }
        let earlier = self.devices.get(&key).map(|device| &device.flips);
        for (index, connector) in link.state.connectors.iter_mut().enumerate() {
            self.ports.insert(connector.req_port, (key, index));
            self.ports.insert(connector.evt_port, (key, index));
            connector.flips = earlier
                .and_then(|flips| flips.get(&connector.config.index))
                .copied()
                .unwrap_or(0);
        }
        Ok(link)
    }

    fn open_connector(
        &mut self,
        key: DeviceKey,
        config: ConnectorConfig,
    ) -> Result<(Connector, ServedRing), String> {
        let domid = key.domid;
        let index = config.index;
        let (ring, events) = map_connector_pages(&self.grants, domid, &config)?;
        let req_port = self
            .evtchn
            .bind_interdomain(domid, config.req_port)
            .map_err(|error| format!("connector {index} req-event-channel: {error}"))?;
        let evt_port = match self.evtchn.bind_interdomain(domid, config.evt_port) {
            Ok(port) => port,
            Err(error) => {
                let _ = self.evtchn.unbind(req_port);
                return Err(format!("connector {index} evt-event-channel: {error}"));
            }
        };
        Ok(Connector::new(config, ring, events, req_port, evt_port))
    }

    /// Unbinds and unmaps everything of a link; logs what fails.
    fn release(&mut self, key: DeviceKey, link: Link) {
        for connector in &link.state.connectors {
            for port in [connector.req_port, connector.evt_port] {
                self.ports.remove(&port);
                if let Err(error) = self.evtchn.unbind(port) {
                    eprintln_line!("vdispl-backend: {key}: {error}");
                }
            }
        }
        let held = be_alloc::Held::before(&self.grants);
        unmap_link(key, link, self.copier.as_ref(), &mut self.summary);
        held.report(&format!("{key}"), &self.grants);
    }

    /// Lets go of a device's link, if any; returns a note on what it did for the log.
    fn disconnect(&mut self, key: DeviceKey) -> String {
        let Some(link) = self
            .devices
            .get_mut(&key)
            .and_then(|device| device.link.take())
        else {
            return String::new();
        };
        let flips: Vec<String> = link
            .state
            .connectors
            .iter()
            .map(|c| format!("conn{} {}", c.config.index, c.flips))
            .collect();
        if let Some(device) = self.devices.get_mut(&key) {
            for connector in &link.state.connectors {
                device.flips.insert(connector.config.index, connector.flips);
            }
        }
        let note = format!(
            ", {} buffers unmapped, flips: {}",
            link.state.buffers.len(),
            flips.join(", ")
        );
        self.release(key, link);
        note
    }

    /// Handles the ports that fired, then re-enables them.
    fn service_fired_ports(&mut self) -> Result<(), String> {
        let fired = self.evtchn.fired().map_err(|error| error.to_string())?;
        let targets: BTreeSet<(DeviceKey, usize)> = fired
            .iter()
            .filter_map(|port| self.ports.get(port).copied())
            .collect();
        for (key, index) in targets {
            self.service(key, index);
        }
        self.evtchn
            .unmask(&fired)
            .map_err(|error| error.to_string())
    }

    /// Answers requests on one connector's ring (one flip at most, see `service_ring`; a ring
    /// with more waiting is served again after the others); a broken ring closes the device.
    fn service(&mut self, key: DeviceKey, index: usize) {
        self.waiting.remove(&(key, index));
        let served = self.service_ring(key, index);
        if let Ok(true) = served {
            self.waiting.insert((key, index));
        }
        if let Err(error) = served {
            eprintln_line!("vdispl-backend: {key} conn{index}: {error}; closing the device");
            match self.close_device(key, &lifecycle::BACKEND_CLOSE) {
                Ok(flips) => println!("vdispl-backend: {key}: Closed (broken ring){flips}"),
                Err(error) => eprintln_line!("vdispl-backend: {key}: {error}"),
            }
        }
        if self.state_back.take() == Some(key) {
            let flips = self.disconnect(key);
            match self.set_state(key, XenbusState::InitWait) {
                Ok(()) => println!(
                    "vdispl-backend: {key}: InitWait again (fault state-back: state went from \
                     Connected back to InitWait){flips}"
                ),
                Err(error) => eprintln_line!("vdispl-backend: {key}: {error}"),
            }
        }
    }

    /// Answers the requests on one connector's ring (see [`serve_ring`]); whether requests
    /// are left.
    fn service_ring(&mut self, key: DeviceKey, index: usize) -> Result<bool, RingError> {
        let Some(link) = self
            .devices
            .get_mut(&key)
            .and_then(|device| device.link.as_mut())
        else {
            return Ok(false);
        };
        let mut rings = Rings {
            grants: &self.grants,
            notifier: &self.evtchn,
            fault: self.fault.as_mut(),
            copier: self.copier.as_ref(),
            summary: &mut self.summary,
            state_back: &mut self.state_back,
        };
        serve_ring(&mut rings, key, index, link)
    }

    /// Closes every device (Closing, release, Closed, so frontends notice) and stops the frame
    /// workers.
    fn shutdown(&mut self) {
        let keys: Vec<DeviceKey> = self.devices.keys().copied().collect();
        for key in keys {
            let connected = self
                .devices
                .get(&key)
                .is_some_and(|device| device.link.is_some());
            if !connected {
                continue;
            }
            match self.close_device(key, &lifecycle::BACKEND_CLOSE) {
                Ok(flips) => println!("vdispl-backend: {key}: Closed (backend stopping){flips}"),
                Err(error) => eprintln_line!("vdispl-backend: {key}: {error}"),
            }
        }
        // This backend's error nodes go with it.
        let written: Vec<DeviceKey> = self
            .devices
            .iter()
            .filter(|(_, device)| matches!(device.error_node, ErrorNode::Holds(_)))
            .map(|(key, _)| *key)
            .collect();
        for key in written {
            self.set_error_node(key, None);
        }
        // Every copy was cancelled or withdrawn with its device; the finished ones' frames
        // still go to the workers.
        if let Some(copier) = self.copier.take() {
            for completed in copier.finish() {
                deliver(completed, self.writer.as_ref(), &mut self.summary);
            }
        }
        if let Some(writer) = self.writer.take() {
            match writer.finish_within(FINISH_TIMEOUT) {
                Some(stats) => self.summary.writer = stats,
                None => eprintln_line!(
                    "vdispl-backend: frame workers still busy after {} s; leaving them",
                    FINISH_TIMEOUT.as_secs()
                ),
            }
        }
    }
}

/// Maps a connector's request ring and event page (writable).
fn map_connector_pages(
    grants: &GrantMapper,
    domid: u32,
    config: &ConnectorConfig,
) -> Result<(RingMapping, EventMapping), String> {
    let index = config.index;
    let ring = grants
        .map(domid, &[config.req_ring_ref], Access::ReadWrite)
        .map_err(|error| format!("connector {index} request ring: {error}"))?;
    let ring = RingMapping::new(ring)
        .ok_or_else(|| format!("connector {index} request ring: not one page"))?;
    let events = grants
        .map(domid, &[config.evt_ring_ref], Access::ReadWrite)
        .map_err(|error| format!("connector {index} event page: {error}"))?;
    let events = EventMapping::new(events)
        .ok_or_else(|| format!("connector {index} event page: not one page"))?;
    Ok((ring, events))
}

/// Unmaps every ring, event page and display buffer of a link (its event channels are
/// unbound already); logs what fails. Every grant the link mapped is released in gntdev
/// (munmap, then IOCTL_GNTDEV_UNMAP_GRANT_REF), so the frontend can end them. A copy not
/// started is withdrawn (its frame named as not captured); a running one is cancelled and
/// unmaps its buffer itself when it stops, at its next chunk: this never waits.
fn unmap_link(key: DeviceKey, link: Link, copier: Option<&Copier>, summary: &mut Summary) {
    for (index, connector) in link.state.connectors.iter().enumerate() {
        let (Some(copy), Some(copier)) = (connector.copy, copier) else {
            continue;
        };
        if copier.cancel(copy.job) == JobStatus::Withdrawn {
            summary.not_captured += 1;
            dropped(
                key,
                index,
                copy.seq,
                "the device closed before its copy started",
            );
        }
    }
    for index in 0..link.state.connectors.len() {
        drop_report::flush(connector_key(key, index), &format!("{key} conn{index}"));
    }
    for (connector, ring) in link.state.connectors.into_iter().zip(link.served) {
        // Dropping the ring leaves the page's mapping to `ring_page` alone.
        let events = ring.into_events();
        for result in [connector.ring_page.unmap(), events.unmap()] {
            if let Err(error) = result {
                eprintln_line!("vdispl-backend: {key}: {error}");
            }
        }
    }
    for (cookie, mapping) in link.state.buffers {
        release_buffer(key, cookie, mapping);
    }
}

/// Lets go of a display buffer's mapping: unmaps it now, or, if a copy still reads it, leaves
/// that to the copy (it is the last owner then).
fn release_buffer(key: DeviceKey, cookie: u64, mapping: Arc<GrantMapping>) {
    if let Some(mapping) = Arc::into_inner(mapping) {
        if let Err(error) = mapping.unmap() {
            eprintln_line!("vdispl-backend: {key}: display buffer {cookie:#x}: {error}");
        }
    }
}

impl Connector {
    fn new(
        config: ConnectorConfig,
        ring: RingMapping,
        events: EventMapping,
        req_port: u32,
        evt_port: u32,
    ) -> (Self, ServedRing) {
        let connector = Connector {
            config,
            ring_page: ring.clone(),
            req_port,
            evt_port,
            flips: 0,
            copy: None,
        };
        (connector, ServedConnector::new(ring, events))
    }
}

fn describe_link(link: &Link) -> String {
    let link = &link.state;
    let connectors: Vec<String> = link
        .connectors
        .iter()
        .map(|c| match c.config.mode() {
            Some((width, height)) => format!(
                "conn{} {} {width}x{height}",
                c.config.index, c.config.unique_id
            ),
            None => format!("conn{} {} refused", c.config.index, c.config.unique_id),
        })
        .collect();
    format!(
        "protocol version {}, {} connectors ({})",
        link.version,
        link.connectors.len(),
        connectors.join(", ")
    )
}

/// Sends event channel notifications: the kernel's event channel device, or a recorder in
/// host tests.
trait Notifier {
    /// Notifies the frontend through local `port`; failures are logged.
    fn signal(&self, key: DeviceKey, port: u32);
}

impl Notifier for Evtchn {
    fn signal(&self, key: DeviceKey, port: u32) {
        if let Err(error) = self.notify(port) {
            eprintln_line!("vdispl-backend: {key}: {error}");
        }
    }
}

/// What serving a ring needs besides the ring's link.
struct Rings<'a> {
    grants: &'a GrantMapper,
    notifier: &'a dyn Notifier,
    fault: Option<&'a mut FaultState>,
    /// `None`: frames are not copied, and no answer waits.
    copier: Option<&'a Copier>,
    summary: &'a mut Summary,
    /// Set by a `state-back` fault, for the caller.
    state_back: &'a mut Option<DeviceKey>,
}

/// Answers the requests on connector `index`'s ring through the shared ring loop
/// ([`ServedConnector::serve`]), up to and including one flip (a frontend that flips as fast
/// as it is answered would otherwise keep the backend on its ring); whether requests are
/// left. A request that must wait for a copy (see [`waits_for_copy`]) is held: it and the
/// requests after it are left until the copy is over, when the ring is served again.
fn serve_ring(
    rings: &mut Rings,
    key: DeviceKey,
    index: usize,
    link: &mut Link,
) -> Result<bool, RingError> {
    let Some(ring) = link.served.get_mut(index) else {
        return Ok(false);
    };
    let mut host = RingHost {
        rings,
        key,
        link: &mut link.state,
    };
    let served = ring.serve(index, &mut host)?;
    if served.left {
        *host.rings.state_back = Some(key);
    }
    Ok(served.more)
}

/// The Dom0 backend's side of the shared ring loop for one device: how a request is answered
/// ([`answer`]), which wait for a copy ([`waits_for_copy`]), when EVT_PG_FLIP is due (at
/// once, or at the next vblank in strict mode), and the copy each flip starts
/// ([`start_copy`]).
struct RingHost<'h, 'r> {
    rings: &'h mut Rings<'r>,
    key: DeviceKey,
    link: &'h mut LinkState,
}

impl ServeHost for RingHost<'_, '_> {
    fn now_ns(&self) -> u64 {
        monotonic_ns()
    }

    fn holds(&mut self, index: usize, slot: &Slot, again: bool) -> bool {
        let waits = waits_for_copy(self.rings, self.key, index, self.link, slot);
        if waits && !again {
            self.rings.summary.held += 1;
        }
        waits
    }

    fn fault(&mut self, index: usize, slot: &Slot) -> Option<FaultHit> {
        let hit = self.rings.fault.as_mut()?.hit(index, slot)?;
        println!(
            "vdispl-backend: {} conn{index}: {}",
            self.key,
            hit.describe()
        );
        Some(hit)
    }

    fn answer(&mut self, index: usize, slot: &Slot) -> (Response, Option<u64>) {
        answer(
            self.key,
            index,
            self.link,
            self.rings.grants,
            slot,
            self.rings.summary,
        )
    }

    fn event_due(&self, _index: usize, response_due: u64) -> Option<u64> {
        Some(match self.link.vblank {
            None => response_due,
            Some(clock) => clock.next_after(response_due),
        })
    }

    fn flipped(&mut self, index: usize, fb_cookie: u64) {
        // The flip is complete: the framebuffer is the one shown now. Its answer (and, but in
        // strict mode, its EVT_PG_FLIP) went out; a copy thread copies the shown buffer, which
        // the frontend leaves alone until its next flip completes, and that flip's answer
        // waits for this copy.
        start_copy(self.rings, self.key, index, self.link, fb_cookie);
    }

    fn notify(&mut self, index: usize, channel: Channel) {
        let Some(connector) = self.link.connectors.get(index) else {
            return;
        };
        let port = match channel {
            Channel::Requests => connector.req_port,
            Channel::Events => connector.evt_port,
        };
        self.rings.notifier.signal(self.key, port);
    }

    fn event_lost(&mut self, index: usize, event: Outgoing, error: RingError) {
        let key = self.key;
        match event {
            Outgoing::PageFlip(fb_cookie) => eprintln_line!(
                "vdispl-backend: {key} conn{index}: EVT_PG_FLIP for {fb_cookie:#x} dropped: \
                 {error}"
            ),
            Outgoing::Garbage => {
                eprintln_line!("vdispl-backend: {key} conn{index}: garbage event dropped: {error}")
            }
        }
    }
}

/// Whether `slot` must wait for a copy to be over before it is answered: a flip on connector
/// `index` while the copy of its frame shown before runs (that answer lets the frontend draw
/// into the buffer being copied), or a DBUF_DESTROY of a buffer being copied. A copy that has
/// not started is withdrawn instead: its frame is not captured, and the request goes on.
fn waits_for_copy(
    rings: &mut Rings,
    key: DeviceKey,
    index: usize,
    link: &mut LinkState,
    slot: &Slot,
) -> bool {
    let Some(copier) = rings.copier else {
        return false;
    };
    let (copies, why): (Vec<usize>, String) = match Request::decode(slot) {
        Ok((_, Request::PageFlip { fb_cookie }))
            if link.model.framebuffers.contains_key(&fb_cookie) =>
        {
            let next = link.connectors[index].flips;
            (
                vec![index],
                format!("flip seq {next} came before a copy thread took it"),
            )
        }
        Ok((_, Request::DbufDestroy { dbuf_cookie })) => (
            link.connectors
                .iter()
                .enumerate()
                .filter(|(_, connector)| {
                    connector
                        .copy
                        .is_some_and(|copy| copy.dbuf_cookie == dbuf_cookie)
                })
                .map(|(other, _)| other)
                .collect(),
            format!(
                "its display buffer {dbuf_cookie:#x} was destroyed before a copy thread took it"
            ),
        ),
        _ => return false,
    };
    let mut waits = false;
    for other in copies {
        let Some(copy) = link.connectors[other].copy else {
            continue;
        };
        match copier.withdraw(copy.job) {
            JobStatus::Running => waits = true,
            JobStatus::Done => link.connectors[other].copy = None,
            JobStatus::Withdrawn => {
                link.connectors[other].copy = None;
                rings.summary.not_captured += 1;
                dropped(key, other, copy.seq, &why);
            }
        }
    }
    waits
}

/// Connector `index` of device `key` in the report of frames not captured.
fn connector_key(key: DeviceKey, index: usize) -> drop_report::ConnectorKey {
    (key.domid, key.device, index)
}

/// Reports frame `seq` of connector `index` as not captured (named, or counted in a range
/// line: see [`drop_report`]).
fn dropped(key: DeviceKey, index: usize, seq: u64, why: &str) {
    drop_report::not_captured(
        connector_key(key, index),
        &format!("{key} conn{index}"),
        seq,
        why,
    );
}

/// Counts the flip of `fb_cookie` on connector `index` and hands the copy of the frame now
/// shown to the copy threads (with a share of its buffer's mapping).
fn start_copy(
    rings: &mut Rings,
    key: DeviceKey,
    index: usize,
    link: &mut LinkState,
    fb_cookie: u64,
) {
    let seq = link.connectors[index].flips;
    link.connectors[index].flips += 1;
    rings.summary.flips += 1;
    let Some(copier) = rings.copier else {
        return;
    };
    match copy_source(key, index, link, fb_cookie, seq) {
        Ok((source, dbuf_cookie)) => match copier.submit(source) {
            Some(job) => {
                link.connectors[index].copy = Some(InFlight {
                    job,
                    dbuf_cookie,
                    seq,
                })
            }
            None => {
                rings.summary.not_captured += 1;
                dropped(key, index, seq, "the copy threads have stopped");
            }
        },
        Err(error) => {
            eprintln_line!("vdispl-backend: {key} conn{index}: cannot capture seq {seq}: {error}")
        }
    }
}

/// What the ring thread does with a copy that is over: the frame goes to the workers (never
/// waiting), or a line says why there is none.
fn deliver(completed: Completed, writer: Option<&FrameWriter>, summary: &mut Summary) {
    let key = DeviceKey {
        domid: completed.domid,
        device: completed.device,
    };
    let (index, seq) = (completed.connector, completed.seq);
    if let Some(Err(error)) = completed.unmapped {
        eprintln_line!("vdispl-backend: {key}: display buffer of conn{index} seq {seq}: {error}");
    }
    let frame = match completed.outcome {
        CopyOutcome::Copied(frame) => frame,
        CopyOutcome::Cancelled => {
            summary.not_captured += 1;
            dropped(
                key,
                index as usize,
                seq,
                "the device closed during its copy",
            );
            return;
        }
    };
    summary.copied += 1;
    summary.capture += completed.took;
    // Never waits: when the workers are behind, the connector's oldest waiting frame gives
    // way to this one.
    match writer.map(|writer| writer.submit(frame)) {
        None | Some(Submitted::Queued) => {}
        Some(Submitted::Replaced { seq: dropped_seq }) => {
            summary.not_captured += 1;
            dropped(
                key,
                index as usize,
                dropped_seq,
                &format!("the writers were behind; seq {seq} is newer"),
            );
        }
        Some(Submitted::Stopped) => {
            summary.not_captured += 1;
            dropped(key, index as usize, seq, "the writers have stopped");
        }
    }
}

/// Answers one request on connector `index`: the response and, for a flip, the framebuffer
/// now shown, whose EVT_PG_FLIP is due and whose frame is to be captured.
fn answer(
    key: DeviceKey,
    index: usize,
    link: &mut LinkState,
    grants: &GrantMapper,
    slot: &Slot,
    summary: &mut Summary,
) -> (Response, Option<u64>) {
    let mut reader = GrantReader {
        grants,
        domid: key.domid,
        failure: None,
        allocated: None,
    };
    let decoded = Request::decode(slot);
    let id = u16::from_le_bytes([slot[0], slot[1]]);
    let operation = Operation::try_from(slot[2])
        .map(|operation| operation.to_string())
        .unwrap_or_else(|_| format!("operation {:#04x}", slot[2]));
    // A refused connector (its `resolution` cannot be driven; said once when the device
    // connected) gets -EINVAL for everything that concerns it: SET_CONFIG, PG_FLIP, GET_EDID,
    // and whatever does not decode. The buffer and framebuffer requests displif.h puts on
    // connector 0's ring serve every connector, so they are served there even when connector 0
    // itself is refused.
    let mode = link.connectors[index].config.mode();
    let generic = matches!(
        decoded,
        Ok((
            _,
            Request::DbufCreate(_)
                | Request::DbufDestroy { .. }
                | Request::FbAttach { .. }
                | Request::FbDetach { .. }
        ))
    );
    let (width, height) = match mode {
        Some(mode) => mode,
        None if generic => (0, 0),
        None => {
            summary.rejected += 1;
            return (respond(slot, EINVAL), None);
        }
    };
    let reject = |summary: &mut Summary, rejection: &Rejection, failure: &Option<String>| {
        summary.rejected += 1;
        let detail = failure
            .as_ref()
            .map(|failure| format!(" [{failure}]"))
            .unwrap_or_default();
        eprintln_line!(
            "vdispl-backend: {key} conn{index}: rejected {operation} (id {id}): {rejection}{detail}"
        );
    };
    if let (
        Ok((
            _,
            Request::GetEdid {
                buffer_sz,
                gref_directory,
            },
        )),
        true,
    ) = (decoded, link.version >= 2 || link.strict)
    {
        let outcome = send_edid((width, height), buffer_sz, gref_directory, &mut reader);
        let (status, edid_sz) = match outcome {
            Ok(size) => {
                println!(
                    "vdispl-backend: {key} conn{index}: EDID for {width}x{height} sent ({size} \
                     bytes)"
                );
                (0, size)
            }
            Err(rejection) => {
                reject(summary, &rejection, &reader.failure);
                (rejection.status, 0)
            }
        };
        let response = Response {
            id,
            operation: slot[2],
            status,
            edid_sz,
        };
        return (response, None);
    }
    let (mut response, outcome) = link.model.handle_explained_on(index, slot, &mut reader);
    match outcome {
        Err(rejection) => {
            reject(summary, &rejection, &reader.failure);
            (response, None)
        }
        Ok(Effect::Created(cookie)) => {
            let Some(buffer) = link.model.buffers.get(&cookie) else {
                return (response, None);
            };
            let mapped = match reader.allocated.take() {
                Some(allocated) => {
                    println!(
                        "vdispl-backend: {key}: display buffer {cookie:#x}: {} pages allocated \
                         and granted to domain {} (be-alloc)",
                        buffer.refs.len(),
                        key.domid
                    );
                    Ok(allocated)
                }
                None => grants.map(key.domid, &buffer.refs, Access::ReadOnly),
            };
            match mapped {
                Ok(mapping) => {
                    link.buffers.insert(cookie, Arc::new(mapping));
                }
                Err(error) => {
                    link.model.buffers.remove(&cookie);
                    response.status = EINVAL;
                    let rejection = Rejection {
                        status: EINVAL,
                        reason: format!("its pages cannot be mapped: {error}"),
                    };
                    reject(summary, &rejection, &None);
                }
            }
            (response, None)
        }
        Ok(Effect::Destroyed(cookie)) => {
            // A copy of this buffer was over before this answer (`waits_for_copy`), so this
            // unmaps it now.
            if let Some(mapping) = link.buffers.remove(&cookie) {
                let held = be_alloc::Held::before(grants);
                release_buffer(key, cookie, mapping);
                held.report(&format!("{key}: display buffer {cookie:#x}"), grants);
            }
            (response, None)
        }
        Ok(Effect::Configured(shown)) => {
            let connector = &link.connectors[index].config;
            match shown {
                Some(fb_cookie) => println!(
                    "vdispl-backend: {key} conn{index}: showing framebuffer {fb_cookie:#x} \
                     ({} {width}x{height})",
                    connector.unique_id
                ),
                None => println!("vdispl-backend: {key} conn{index}: disabled"),
            }
            (response, None)
        }
        Ok(Effect::Flipped(fb_cookie)) => (response, Some(fb_cookie)),
        Ok(Effect::None) => (response, None),
    }
}

/// What copying the framebuffer `fb_cookie` out of its display buffer takes, and the buffer's
/// cookie.
fn copy_source(
    key: DeviceKey,
    index: usize,
    link: &LinkState,
    fb_cookie: u64,
    seq: u64,
) -> Result<(CopySource, u64), String> {
    let framebuffer = link
        .model
        .framebuffers
        .get(&fb_cookie)
        .ok_or_else(|| format!("framebuffer {fb_cookie:#x} is unknown"))?;
    let buffer = link
        .model
        .buffers
        .get(&framebuffer.dbuf_cookie)
        .ok_or_else(|| format!("display buffer {:#x} is unknown", framebuffer.dbuf_cookie))?;
    let mapping = link.buffers.get(&framebuffer.dbuf_cookie).ok_or_else(|| {
        format!(
            "display buffer {:#x} is not mapped",
            framebuffer.dbuf_cookie
        )
    })?;
    // The framebuffer starts at the buffer's first byte, its rows at the pitch the buffer's
    // size gave (the frontend's, see `displif::infer_pitch`).
    let layout = FrameLayout::new(
        framebuffer.width,
        framebuffer.height,
        buffer.pitch as usize,
        framebuffer.pixel_format,
    )?;
    let source = CopySource {
        mapping: Arc::clone(mapping),
        layout,
        domid: key.domid,
        device: key.device,
        connector: link.connectors[index].config.index,
        seq,
    };
    Ok((source, framebuffer.dbuf_cookie))
}

/// GET_EDID (version 2): writes a base block for the connector's resolution (`mode`) into the
/// first page of the frontend's buffer; returns the EDID's size.
fn send_edid(
    (width, height): (u32, u32),
    buffer_sz: u32,
    gref_directory: GrantRef,
    reader: &mut GrantReader,
) -> Result<u32, Rejection> {
    let block = edid::base_block(width, height);
    if (buffer_sz as usize) < block.len() {
        return Err(Rejection {
            status: EINVAL,
            reason: format!(
                "EDID buffer of {buffer_sz} bytes cannot hold a {}-byte block",
                block.len()
            ),
        });
    }
    let refs = read_directory(gref_directory, displif::buffer_pages(buffer_sz), reader)?;
    let mapping = reader
        .grants
        .map(reader.domid, &refs[..1], Access::ReadWrite)
        .map_err(|error| Rejection {
            status: EINVAL,
            reason: format!("the EDID buffer cannot be mapped: {error}"),
        })?;
    mapping.write_start(&block);
    if let Err(error) = mapping.unmap() {
        eprintln_line!("vdispl-backend: EDID buffer: {error}");
    }
    Ok(block.len() as u32)
}

impl Summary {
    /// Mean time to copy a flipped frame, in milliseconds.
    pub fn capture_mean_ms(&self) -> u64 {
        match u32::try_from(self.copied) {
            Ok(flips) if flips > 0 => (self.capture / flips).as_millis() as u64,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod be_alloc_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CapturedFrame;
    use crate::frame_copy::{copy_frame, Gate};
    use crate::grant_map::fake::{EndError, FakeGntdev};
    use drivers::xen::displif::{DbufCreate, FOURCC_XRGB8888};
    use drivers::xen::ring::FrontRing;
    use drivers::xen::vdispl::backend::Shown;
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
        let config = config();
        let (ring, events) = map_connector_pages(grants, domid, &config).unwrap();
        let mut model = BackendModel::for_connectors(Strictness::Lenient, [(0, WIDTH, HEIGHT)]);
        // The connector is on, as a SET_CONFIG of framebuffer 0xf0 leaves it: these tests
        // flip right after FB_ATTACH.
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
        let both = format!("{message}; /local/domain/3/device/vdispl/0/2/resolution holds \"\" (not <width>x<height>)");
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
}
