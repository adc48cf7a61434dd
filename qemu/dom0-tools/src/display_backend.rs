//! The Dom0 display backend (`vdispl-backend`): serves every vdispl device whose backend is
//! Dom0, any number of frontends and connectors, from one thread that polls xenstore and the
//! event channels; shown frames are copied out by copy threads ([`Copier`]) and written by
//! worker threads ([`FrameWriter`]).
//!
//! Per device it follows the handshake that [`lifecycle::decide`] spells out (this file: the
//! device's lifecycle), maps the connectors' rings and event pages (`/dev/xen/gntdev`), binds
//! their event channels (`/dev/xen/evtchn`), and serves each ring through the ring loop it
//! shares with the host tests' fake backend (`drivers::xen::vdispl::server`; its Dom0 host is
//! [`ring_service`]), answering every request through the shared backend rules
//! (`drivers::xen::vdispl::backend::BackendModel`). A display buffer's pages are mapped when
//! it is created and unmapped when it is destroyed: the frontend's grants, or, for a
//! DBUF_CREATE with XENDISPL_DBUF_FLG_REQ_ALLOC, pages this backend allocates and grants to the
//! frontend itself ([`crate::be_alloc`], through `/dev/xen/gntalloc`). A flip is answered and
//! its EVT_PG_FLIP goes to the connector's event page at once, then a copy thread copies the
//! framebuffer now shown while the ring thread goes on (a ring gets one flip per turn, the
//! rings taking turns; see [`capture`]). The tear-free rule (see [`crate::frame_copy`]): the
//! connector's next flip is answered only once that copy is done (its answer is held
//! meanwhile, the other rings served), or, if the copy had not started yet, the frame is
//! dropped and named in a `not captured` line; a DBUF_DESTROY of a buffer being copied is held
//! the same way. GET_EDID is answered (with a base block for the connector's resolution) only
//! when the frontend asked for protocol version 2, or in strict mode (`--strict`, the
//! xen-troops DRM backend's behaviour). Closing a device writes Closing, releases everything,
//! then writes Closed. Every rejected request is logged with its reason.
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

mod capture;
mod ring_service;

use self::capture::{connector_key, deliver, dropped, release_buffer};
use self::ring_service::{monotonic_ns, serve_ring, Rings, Vblank};
use crate::be_alloc;
use crate::capture::{FrameWriter, WriterStats};
use crate::drop_report;
use crate::evtchn::Evtchn;
use crate::frame_copy::{Copier, JobId, JobStatus};
use crate::frontend::{
    self, ConnectorConfig, DeviceKey, DeviceRefusal, FrontendError, NodeReader, Scope,
    BACKEND_ROOT, VERSIONS,
};
use crate::grant_map::{Access, EventMapping, GrantMapper, GrantMapping, RingMapping};
use crate::lifecycle::{self, Action, OwnWrites, Phase, RefusalState, Step};
use crate::xenbus::{self, Permission, Xenbus};
use drivers::xen::displif::field;
use drivers::xen::ring::RingError;
use drivers::xen::vdispl::backend::{BackendModel, Strictness};
use drivers::xen::vdispl::fault::FaultState;
use drivers::xen::vdispl::server::ServedConnector;
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

/// A copy handed to the copy threads.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    job: JobId,
    /// The display buffer it reads.
    dbuf_cookie: u64,
    seq: u64,
}

/// A connected device: its connectors' rings, served by the shared ring loop, and the rest,
/// which that loop's host (`ring_service::RingHost`) borrows.
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
    /// next one is due ([`monotonic_ns`]).
    fn send_due_events(&mut self) -> Option<u64> {
        let keys: Vec<DeviceKey> = self.devices.keys().copied().collect();
        keys.into_iter()
            .filter_map(|key| {
                self.with_link(key, |rings, link| ring_service::send_due(rings, key, link))?
            })
            .min()
    }

    /// Runs `f` on device `key`'s link, if it is connected, with what serving its rings needs.
    fn with_link<T>(
        &mut self,
        key: DeviceKey,
        f: impl FnOnce(&mut Rings, &mut Link) -> T,
    ) -> Option<T> {
        let link = self.devices.get_mut(&key)?.link.as_mut()?;
        let mut rings = Rings {
            grants: &self.grants,
            notifier: &self.evtchn,
            fault: self.fault.as_mut(),
            copier: self.copier.as_ref(),
            summary: &mut self.summary,
            state_back: &mut self.state_back,
        };
        Some(f(&mut rings, link))
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
            let phase = lifecycle::settle(
                self.devices.get(&key).map_or(Phase::New, |d| d.phase),
                frontend_state,
            );
            self.set_device(key, |device| device.phase = phase);
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
                Ok(()) => {
                    // Not connected again until the frontend noticed (lifecycle::settle).
                    self.set_device(key, |device| device.phase = Phase::Dropped);
                    println!(
                        "vdispl-backend: {key}: InitWait again (fault state-back: state went \
                         from Connected back to InitWait){flips}"
                    )
                }
                Err(error) => eprintln_line!("vdispl-backend: {key}: {error}"),
            }
        }
    }

    /// Answers the requests on one connector's ring (see [`serve_ring`]); whether requests
    /// are left.
    fn service_ring(&mut self, key: DeviceKey, index: usize) -> Result<bool, RingError> {
        self.with_link(key, |rings, link| serve_ring(rings, key, index, link))
            .unwrap_or(Ok(false))
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
mod tests;
