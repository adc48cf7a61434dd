//! The Dom0 input backend (`vkbd-backend`): serves every kbdif device whose backend is Dom0 and
//! plays an input event script ([`drivers::xen::kbdif::script`]) to each, so the rig can drive
//! interactive guests.
//!
//! libxl creates a device for each `vkb = [ 'backend-type=linux,...' ]` entry of an xl config:
//! the frontend directory `/local/domain/<domid>/device/vkbd/<dev>` and the backend directory
//! `<BACKEND_ROOT>/<domid>/<dev>` (`backend/vinput`, libxl's device kind for a Linux-type vkb
//! backend; `backend-type=qemu` would be `backend/vkbd`, served by QEMU), both at state
//! Initialising, the backend's with `online` = 1 and the nodes the config names:
//! `unique-id`, `feature-abs-pointer`, `width`, `height`, `feature-multi-touch` with
//! `multi-touch-width`, `multi-touch-height` and `multi-touch-num-contacts`, the
//! `feature-disable-*` nodes. libxl does not wait for this backend at creation (vkb devices are
//! added without waiting for the backend), but a frontend does: start the backend first.
//!
//! Per device the handshake follows [`lifecycle::decide`], as the display backend's does: a
//! new device goes InitWait (the feature nodes are libxl's, left as they are); when the
//! frontend is Initialised its `page-gref` is mapped writable through `/dev/xen/gntdev` (the
//! backend writes `in_prod` and the events), its `event-channel` is bound, and the device
//! goes Connected. The script starts then: each of the device's events (those of its
//! `unique-id`'s `device` sections and of the sections for every device) is put on the page
//! when its time from Connected has come, with [`kbdif::KbdPage::push_event`] (the event is stored
//! before the producer index, which is published with release ordering), and the channel is
//! notified once per batch. An event the device's negotiation or limits do not allow (a touch
//! without multi-touch requested, an absolute position without `request-abs-pointer`, a
//! coordinate beyond `width`/`height` or the touch area, a contact beyond
//! `multi-touch-num-contacts`) is not sent, and named. When the ring is full (51 events the
//! frontend has not taken) the backend waits for it to take some: it looks again when the
//! frontend notifies the channel, and every [`FULL_RECHECK`] (a frontend need not notify
//! after consuming), never in a busy loop.
//!
//! When the frontend goes Closing or Closed or disappears, or libxl removes the device (it
//! writes `online` = 0 and state Closing, then waits for Closed), the backend writes Closing
//! (unless the toolstack did), unmaps the page, unbinds the channel, and writes Closed
//! ([`lifecycle::close_steps`]). Frontend data the backend cannot use (a missing or bad
//! `page-gref` or `event-channel`, a grant that cannot be mapped, a channel that cannot be
//! bound) is named ([`SetupError`]), written to the device's xenbus error node, and the device
//! is closed; the other devices are served as before.

use crate::evtchn::{self, Evtchn};
use crate::frontend::{self, DeviceKey, Scope};
use crate::grant_map::{self, Access, GrantMapper, KbdMapping};
use crate::lifecycle::{self, Action, OwnWrites, Phase, Step};
use crate::xenbus::{self, Permission, Xenbus};
use drivers::xen::kbdif::script::{EventWords, Script, ScriptEvent};
use drivers::xen::kbdif::{self, field, InputEvent, Limits};
use drivers::xen::xenbus::{error_node, XenbusState};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where libxl puts the backend directories of `backend-type=linux` vkb devices:
/// `<BACKEND_ROOT>/<frontend domid>/<device id>`.
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/vinput";
/// Token of the watch on [`BACKEND_ROOT`].
const ROOT_TOKEN: &str = "vkbd-backend";
/// Prefix of the tokens of the watches on frontend `state` nodes (`frontend:<domid>/<dev>`).
const FRONTEND_TOKEN: &str = "frontend:";
/// Where Dom0's xenbus error nodes live: directories up to it that an error node of this
/// backend leaves empty are removed with it.
const ERROR_ROOT: &str = "/local/domain/0/error";
/// How long one poll(2) waits before the stop flag is looked at again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often every device is looked at again, watch events or not.
const RESCAN_INTERVAL: Duration = Duration::from_secs(2);
/// How often a full ring is looked at again while the frontend has not notified.
pub const FULL_RECHECK: Duration = Duration::from_millis(20);

/// Event channels to frontends: the kernel's event channel device, or a fake in host tests.
pub trait Channels {
    /// Binds `remote_port` of `domid`; returns the local port.
    fn bind(&self, domid: u32, remote_port: u32) -> Result<u32, evtchn::Error>;
    /// Closes local `port`.
    fn unbind(&self, port: u32) -> Result<(), evtchn::Error>;
    /// Signals the other end of local `port`.
    fn notify(&self, port: u32) -> Result<(), evtchn::Error>;
}

impl Channels for Evtchn {
    fn bind(&self, domid: u32, remote_port: u32) -> Result<u32, evtchn::Error> {
        self.bind_interdomain(domid, remote_port)
    }

    fn unbind(&self, port: u32) -> Result<(), evtchn::Error> {
        Evtchn::unbind(self, port)
    }

    fn notify(&self, port: u32) -> Result<(), evtchn::Error> {
        Evtchn::notify(self, port)
    }
}

/// Why a device could not be connected: frontend data this backend cannot use, or a step
/// that failed. Each names the node it is about.
#[derive(Debug)]
pub enum SetupError {
    /// A node the connection needs is missing.
    Missing {
        /// The node.
        node: String,
    },
    /// A node holds a value that cannot be right.
    BadNode {
        /// The node.
        node: String,
        /// Its value.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// Reading a node failed.
    Store(xenbus::Error),
    /// The page the node names cannot be mapped.
    Map {
        /// The node (`page-gref`).
        node: String,
        /// Why.
        error: grant_map::Error,
    },
    /// The mapping is not one page.
    NotOnePage {
        /// The node.
        node: String,
    },
    /// The event channel the node names cannot be bound.
    Bind {
        /// The node (`event-channel`).
        node: String,
        /// Why.
        error: evtchn::Error,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Missing { node } => write!(f, "{node} is missing"),
            SetupError::BadNode {
                node,
                value,
                expected,
            } => write!(f, "{node} holds {value:?} ({expected})"),
            SetupError::Store(error) => error.fmt(f),
            SetupError::Map { node, error } => write!(f, "{node}: {error}"),
            SetupError::NotOnePage { node } => write!(f, "{node}: the mapping is not one page"),
            SetupError::Bind { node, error } => write!(f, "{node}: {error}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// What one device's script has done: the events it gets, where it is, and when it started.
#[derive(Debug)]
pub struct Playback {
    events: Vec<ScriptEvent>,
    next: usize,
    started: Instant,
    sent: usize,
    skipped: usize,
    /// Times the ring was found full.
    waits: u32,
    /// The ring is full now.
    full: bool,
    /// The summary line was printed.
    finished: bool,
}

impl Playback {
    /// The events of `script` a device whose unique-id is `unique_id` gets, starting at
    /// `started`.
    pub fn new(script: &Script, unique_id: Option<&str>, started: Instant) -> Self {
        Playback {
            events: script.for_device(unique_id).cloned().collect(),
            next: 0,
            started,
            sent: 0,
            skipped: 0,
            waits: 0,
            full: false,
            finished: false,
        }
    }

    /// The device's events.
    pub fn total(&self) -> usize {
        self.events.len()
    }

    /// When `event` is due.
    fn due_at(&self, event: &ScriptEvent) -> Instant {
        self.started + Duration::from_millis(event.at_ms)
    }

    /// The next event, if its time has come at `now`.
    pub fn due(&self, now: Instant) -> Option<&ScriptEvent> {
        self.events
            .get(self.next)
            .filter(|event| self.due_at(event) <= now)
    }

    /// When to look again after `now`: soon while the ring is full, at the next event's time
    /// otherwise; `None` once every event is sent or skipped.
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        let event = self.events.get(self.next)?;
        if self.full {
            return Some(now + FULL_RECHECK);
        }
        Some(self.due_at(event))
    }

    /// Whether every event was sent or skipped.
    pub fn is_done(&self) -> bool {
        self.next >= self.events.len()
    }

    /// Events sent so far.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Events not sent because the device does not allow them.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Times the ring was found full.
    pub fn waits(&self) -> u32 {
        self.waits
    }
}

/// A connected device.
struct Link {
    page: KbdMapping,
    /// The local port bound to the frontend's channel.
    port: u32,
    unique_id: Option<String>,
    /// What its events must keep to (`contacts` is 0 unless multi-touch was negotiated).
    limits: Limits,
    /// Absolute positions negotiated.
    abs_pointer: bool,
    playback: Playback,
}

impl Link {
    /// Whether the device allows `event`; if not, why.
    fn permits(&self, event: &InputEvent) -> Result<(), String> {
        if matches!(event, InputEvent::Position { .. }) && !self.abs_pointer {
            return Err(
                "absolute positions were not negotiated (feature-abs-pointer and \
                 request-abs-pointer)"
                    .to_string(),
            );
        }
        self.limits.check(event).map_err(|error| error.to_string())
    }

    fn describe(&self) -> String {
        let mut parts = vec![format!(
            "unique-id {}",
            self.unique_id.as_deref().unwrap_or("none")
        )];
        if self.abs_pointer {
            parts.push(format!(
                "absolute pointer {}x{}",
                self.limits.width, self.limits.height
            ));
        }
        if self.limits.contacts > 0 {
            parts.push(format!(
                "multi-touch {}x{} {} contacts",
                self.limits.mt_width, self.limits.mt_height, self.limits.contacts
            ));
        }
        parts.join(", ")
    }
}

/// A device this backend knows.
struct Device {
    /// The frontend's device directory (the backend's `frontend` node).
    frontend: Option<String>,
    /// The watch on the frontend's `state` node is set.
    watching: bool,
    phase: Phase,
    /// This backend wrote the device's xenbus error node.
    error_written: bool,
    link: Option<Link>,
}

/// What the backend did, for its last line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Devices connected.
    pub connections: u64,
    /// Events put on pages.
    pub sent: u64,
    /// Events a device did not allow.
    pub skipped: u64,
    /// Scripts played to their end.
    pub scripts_done: u64,
    /// Devices that could not be connected.
    pub failures: u64,
}

/// The backend (see the module documentation).
pub struct InputBackend<C: Channels> {
    store: Xenbus,
    channels: C,
    grants: GrantMapper,
    script: Script,
    devices: BTreeMap<DeviceKey, Device>,
    own_writes: OwnWrites,
    summary: Summary,
    /// Host tests: lines are kept here instead of printed.
    recorded: Option<Vec<String>>,
}

/// The backend directory of a device.
pub fn backend_path(key: DeviceKey) -> String {
    format!("{BACKEND_ROOT}/{}/{}", key.domid, key.device)
}

fn frontend_token(key: DeviceKey) -> String {
    format!("{FRONTEND_TOKEN}{}/{}", key.domid, key.device)
}

/// The device a frontend watch's token names (after its prefix: `<domid>/<dev>`).
fn token_key(rest: &str) -> Option<DeviceKey> {
    let (domid, device) = rest.split_once('/')?;
    Some(DeviceKey {
        domid: frontend::number(domid)?,
        device: frontend::number(device)?,
    })
}

fn state_value(state: XenbusState) -> String {
    (state as u32).to_string()
}

impl InputBackend<Evtchn> {
    /// Opens the Xen devices.
    pub fn open(script: Script) -> Result<Self, String> {
        let store = Xenbus::open().map_err(|error| error.to_string())?;
        let channels = Evtchn::open().map_err(|error| error.to_string())?;
        let grants = GrantMapper::open().map_err(|error| error.to_string())?;
        Ok(Self::over(store, channels, grants, script))
    }

    /// Serves devices until `stop` is set, then closes every connected device.
    pub fn run(mut self, stop: &AtomicBool) -> Result<Summary, String> {
        self.start()?;
        let result = self.serve(stop);
        self.shutdown();
        result.map(|()| self.summary)
    }

    fn serve(&mut self, stop: &AtomicBool) -> Result<(), String> {
        // Every device present now, and again every RESCAN_INTERVAL: a device left Connected
        // by an earlier run is closed at once, and a watch event that never came cannot leave
        // a device unserved.
        let mut rescan_at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= rescan_at {
                self.look_at_everything(now);
                rescan_at = now + RESCAN_INTERVAL;
            }
            let now = Instant::now();
            let wake = self.play(now);
            let timeout = if self.store.has_events() {
                Duration::ZERO
            } else {
                // Whole milliseconds, rounded up: poll(2) would otherwise wake early and spin.
                let until = wake.map_or(POLL_INTERVAL, |at| at.saturating_duration_since(now));
                let millis = u64::try_from(until.as_nanos().div_ceil(1_000_000)).unwrap_or(1);
                Duration::from_millis(millis).min(POLL_INTERVAL)
            };
            let (store_ready, ports_ready) = self.poll(timeout)?;
            if ports_ready {
                // A frontend notified (it took events, say): the next turn looks at the rings.
                let fired = self.channels.fired().map_err(|error| error.to_string())?;
                self.channels
                    .unmask(&fired)
                    .map_err(|error| error.to_string())?;
            }
            if store_ready {
                self.store
                    .receive_events(Duration::ZERO)
                    .map_err(|error| error.to_string())?;
            }
            self.handle_watch_events(Instant::now());
        }
        Ok(())
    }

    /// poll(2) on the xenstore connection and the event channel device.
    fn poll(&self, timeout: Duration) -> Result<(bool, bool), String> {
        let mut fds = [
            libc::pollfd {
                fd: self.store.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.channels.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll(2) on two pollfds we own, for at most `millis` ms.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                return Ok((false, false));
            }
            return Err(format!("poll on xenstore and event channels: {error}"));
        }
        let readable =
            |fd: &libc::pollfd| fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        Ok((readable(&fds[0]), readable(&fds[1])))
    }
}

impl<C: Channels> InputBackend<C> {
    /// A backend over these devices (fakes in host tests).
    pub fn over(store: Xenbus, channels: C, grants: GrantMapper, script: Script) -> Self {
        Self {
            store,
            channels,
            grants,
            script,
            devices: BTreeMap::new(),
            own_writes: OwnWrites::default(),
            summary: Summary::default(),
            recorded: None,
        }
    }

    /// What it did so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// A line of what happened (standard output).
    fn say(&mut self, line: String) {
        match &mut self.recorded {
            Some(lines) => lines.push(line),
            None => println!("vkbd-backend: {line}"),
        }
    }

    /// A line of what went wrong (standard error).
    fn warn(&mut self, line: String) {
        match &mut self.recorded {
            Some(lines) => lines.push(line),
            None => crate::eprintln_line!("vkbd-backend: {line}"),
        }
    }

    /// Watches [`BACKEND_ROOT`] and says what it serves.
    pub fn start(&mut self) -> Result<(), String> {
        self.store
            .watch(BACKEND_ROOT, ROOT_TOKEN)
            .map_err(|error| error.to_string())?;
        let events = self.script.events().len();
        let duration = self.script.duration_ms();
        self.say(format!(
            "serving {BACKEND_ROOT} (script: {events} events over {duration} ms)"
        ));
        Ok(())
    }

    /// Looks again at every device a queued watch event concerns (each once).
    pub fn handle_watch_events(&mut self, now: Instant) {
        let mut keys = BTreeSet::new();
        let mut everything = false;
        while let Some(event) = self.store.take_event() {
            if event.token == ROOT_TOKEN {
                if self.own_writes.is_echo(&event.path, now) {
                    continue;
                }
                match frontend::scope_under(BACKEND_ROOT, &event.path) {
                    Scope::Everything => everything = true,
                    Scope::Device(key) => {
                        keys.insert(key);
                    }
                    Scope::Elsewhere => {}
                }
            } else if let Some(key) = event.token.strip_prefix(FRONTEND_TOKEN).and_then(token_key) {
                keys.insert(key);
            }
        }
        if everything {
            self.look_at_everything(now);
        }
        for key in keys {
            self.look_at(key, now);
        }
    }

    /// Looks again at every known and listed device.
    pub fn look_at_everything(&mut self, now: Instant) {
        let mut keys: BTreeSet<DeviceKey> = self.devices.keys().copied().collect();
        match self.listed_devices() {
            Ok(listed) => keys.extend(listed),
            Err(error) => self.warn(format!("cannot list {BACKEND_ROOT}: {error}")),
        }
        for key in keys {
            self.look_at(key, now);
        }
    }

    /// Looks again at one device; a failure is logged.
    pub fn look_at(&mut self, key: DeviceKey, now: Instant) {
        if let Err(error) = self.reconcile(key, now) {
            self.warn(format!("{key}: {error}"));
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

    fn read(&mut self, path: &str) -> Result<Option<String>, String> {
        self.store.read(path).map_err(|error| error.to_string())
    }

    fn read_state(&mut self, path: &str) -> Result<Option<XenbusState>, String> {
        let value = self.read(path)?;
        Ok(value.map(|value| XenbusState::parse(value.as_bytes()).unwrap_or(XenbusState::Unknown)))
    }

    fn set_device(&mut self, key: DeviceKey, f: impl FnOnce(&mut Device)) {
        if let Some(device) = self.devices.get_mut(&key) {
            f(device);
        }
    }

    /// Reads the device's nodes and acts until there is nothing more to do.
    fn reconcile(&mut self, key: DeviceKey, now: Instant) -> Result<(), String> {
        let backend = backend_path(key);
        for _ in 0..4 {
            let backend_state = self.read_state(&format!("{backend}/state"))?;
            if backend_state.is_none() && !self.devices.contains_key(&key) {
                return Ok(());
            }
            if !self.devices.contains_key(&key) {
                let frontend = self.read(&format!("{backend}/frontend"))?;
                self.devices.insert(
                    key,
                    Device {
                        frontend,
                        watching: false,
                        phase: Phase::New,
                        error_written: false,
                        link: None,
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
                .read(&format!("{backend}/online"))?
                .is_none_or(|value| value.trim() != "0");
            let phase = self.devices.get(&key).map_or(Phase::New, |d| d.phase);
            let why = match (backend_state, frontend_state) {
                (Some(XenbusState::Closing), _) => "the toolstack removes the device".to_string(),
                (_, None) => "the frontend is gone".to_string(),
                (_, Some(state)) if !online => format!("offline, frontend {state}"),
                (_, Some(state)) => format!("frontend {state}"),
            };
            match lifecycle::decide(phase, backend_state, frontend_state, online) {
                Action::Stay => return Ok(()),
                Action::Offer => {
                    self.set_state(key, XenbusState::InitWait)?;
                    self.say(format!("{key}: InitWait"));
                }
                Action::Connect => match self.connect(key, frontend_path.as_deref(), now) {
                    Ok(link) => {
                        let described = link.describe();
                        let total = link.playback.total();
                        self.set_device(key, |device| device.link = Some(link));
                        self.set_error_node(key, None);
                        self.set_state(key, XenbusState::Connected)?;
                        self.summary.connections += 1;
                        self.say(format!(
                            "{key}: Connected ({described}); script: {total} events for this \
                             device"
                        ));
                        self.play_device(key, now);
                        return Ok(());
                    }
                    Err(error) => {
                        self.summary.failures += 1;
                        self.warn(format!(
                            "{key}: cannot connect: {error}; closing the device"
                        ));
                        self.set_error_node(key, Some(&error.to_string()));
                        self.close_device(key, &lifecycle::BACKEND_CLOSE)?;
                        self.say(format!("{key}: Closed (cannot connect)"));
                    }
                },
                Action::Close => {
                    let steps =
                        lifecycle::close_steps(false, backend_state, frontend_state, online);
                    self.close_device(key, &steps)?;
                    self.say(format!("{key}: Closed ({why})"));
                    if frontend_state.is_none() {
                        // Nobody is left to read why the device was refused.
                        self.set_error_node(key, None);
                    }
                }
                Action::Reopen => {
                    self.set_state(key, XenbusState::InitWait)?;
                    self.say(format!("{key}: InitWait again ({why})"));
                }
                Action::Forget => {
                    self.release(key);
                    self.set_error_node(key, None);
                    if let Some(device) = self.devices.remove(&key) {
                        if let (Some(frontend), true) = (&device.frontend, device.watching) {
                            let _ = self
                                .store
                                .unwatch(&format!("{frontend}/state"), &frontend_token(key));
                        }
                    }
                    self.say(format!("{key}: removed"));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn watch_frontend(&mut self, key: DeviceKey) {
        let Some(device) = self.devices.get(&key) else {
            return;
        };
        let (Some(frontend), false) = (device.frontend.clone(), device.watching) else {
            return;
        };
        match self
            .store
            .watch(&format!("{frontend}/state"), &frontend_token(key))
        {
            Ok(()) => self.set_device(key, |device| device.watching = true),
            Err(error) => self.warn(format!("{key}: cannot watch the frontend: {error}")),
        }
    }

    /// Writes the backend's `state`, unless the toolstack removed the directory.
    fn set_state(&mut self, key: DeviceKey, state: XenbusState) -> Result<(), String> {
        let backend = backend_path(key);
        let path = format!("{backend}/state");
        let written = self
            .store
            .write_if_exists(&path, &path, &state_value(state))
            .map_err(|error| error.to_string())?;
        if written {
            self.own_writes.wrote(&path, Instant::now());
        }
        let phase = match state {
            XenbusState::InitWait => Phase::InitWait,
            XenbusState::Connected => Phase::Connected,
            _ => Phase::Closed,
        };
        self.set_device(key, |device| device.phase = phase);
        Ok(())
    }

    /// Makes the device's xenbus error node hold `message` (owned by Dom0, readable by the
    /// frontend's domain, written only while the backend directory exists), or removes it with
    /// the directories it leaves empty; a failure is logged.
    fn set_error_node(&mut self, key: DeviceKey, message: Option<&str>) {
        let Some(written) = self.devices.get(&key).map(|device| device.error_written) else {
            return;
        };
        let backend = backend_path(key);
        let Some(node) = error_node(&backend) else {
            return;
        };
        let result = match message {
            Some(message) => {
                let permissions = Permission::readable_by(key.domid);
                self.store
                    .write_with_perms_if_exists(
                        &format!("{backend}/state"),
                        &node,
                        message,
                        &permissions,
                    )
                    .map(|written_now| written || written_now)
            }
            None if !written => Ok(false),
            None => self
                .store
                .remove_with_empty_parents(&node, ERROR_ROOT)
                .map(|()| false),
        };
        match result {
            Ok(now) => self.set_device(key, |device| device.error_written = now),
            Err(error) => self.warn(format!("{key}: error node: {error}")),
        }
    }

    /// Closes a device by `steps` (see [`lifecycle::close_steps`]): Closing is written before
    /// anything is released, Closed after.
    fn close_device(&mut self, key: DeviceKey, steps: &[Step]) -> Result<(), String> {
        for step in steps {
            match *step {
                Step::Write(state) => self.set_state(key, state)?,
                Step::Release => self.release(key),
            }
        }
        Ok(())
    }

    /// Reads a decimal node of the frontend.
    fn frontend_number(&mut self, frontend: &str, name: &str) -> Result<u32, SetupError> {
        let node = format!("{frontend}/{name}");
        let value = self
            .store
            .read(&node)
            .map_err(SetupError::Store)?
            .ok_or_else(|| SetupError::Missing { node: node.clone() })?;
        frontend::number(value.trim()).ok_or(SetupError::BadNode {
            node,
            value,
            expected: "a decimal number",
        })
    }

    /// Reads a decimal node of the backend (libxl's), 0 when missing.
    fn backend_number(&mut self, key: DeviceKey, name: &str) -> Result<u32, SetupError> {
        let node = format!("{}/{name}", backend_path(key));
        match self.store.read(&node).map_err(SetupError::Store)? {
            None => Ok(0),
            Some(value) => frontend::number(value.trim()).ok_or(SetupError::BadNode {
                node,
                value,
                expected: "a decimal number",
            }),
        }
    }

    /// Whether a `0`/`1` node says 1 (missing: 0).
    fn flag(&mut self, node: String) -> Result<bool, SetupError> {
        match self.store.read(&node).map_err(SetupError::Store)? {
            None => Ok(false),
            Some(value) => match value.trim() {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(SetupError::BadNode {
                    node,
                    value,
                    expected: "0 or 1",
                }),
            },
        }
    }

    /// Reads what the frontend asked for and what libxl configured, maps the page and binds
    /// the channel.
    fn connect(
        &mut self,
        key: DeviceKey,
        frontend: Option<&str>,
        now: Instant,
    ) -> Result<Link, SetupError> {
        let backend = backend_path(key);
        let frontend = frontend.ok_or_else(|| SetupError::Missing {
            node: format!("{backend}/frontend"),
        })?;
        let gref = self.frontend_number(frontend, field::RING_GREF)?;
        let remote_port = self.frontend_number(frontend, field::EVT_CHANNEL)?;
        let abs_offered = self.flag(format!("{backend}/{}", field::FEAT_ABS_POINTER))?;
        let abs_asked = self.flag(format!("{frontend}/{}", field::REQ_ABS_POINTER))?;
        let touch_offered = self.flag(format!("{backend}/{}", field::FEAT_MTOUCH))?;
        let touch_asked = self.flag(format!("{frontend}/{}", field::REQ_MTOUCH))?;
        let multi_touch = touch_offered && touch_asked;
        let limits = Limits {
            width: self.backend_number(key, field::WIDTH)?,
            height: self.backend_number(key, field::HEIGHT)?,
            mt_width: self.backend_number(key, field::MT_WIDTH)?,
            mt_height: self.backend_number(key, field::MT_HEIGHT)?,
            contacts: match multi_touch {
                true => self.backend_number(key, field::MT_NUM_CONTACTS)?,
                false => 0,
            },
        };
        let unique_id = self
            .store
            .read(&format!("{backend}/{}", field::UNIQUE_ID))
            .map_err(SetupError::Store)?
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty());
        let gref_node = format!("{frontend}/{}", field::RING_GREF);
        let mapping = self
            .grants
            .map(key.domid, &[gref], Access::ReadWrite)
            .map_err(|error| SetupError::Map {
                node: gref_node.clone(),
                error,
            })?;
        let page = KbdMapping::new(mapping).ok_or(SetupError::NotOnePage { node: gref_node })?;
        let port = match self.channels.bind(key.domid, remote_port) {
            Ok(port) => port,
            Err(error) => {
                if let Err(error) = page.unmap() {
                    self.warn(format!("{key}: {error}"));
                }
                return Err(SetupError::Bind {
                    node: format!("{frontend}/{}", field::EVT_CHANNEL),
                    error,
                });
            }
        };
        let playback = Playback::new(&self.script, unique_id.as_deref(), now);
        Ok(Link {
            page,
            port,
            unique_id,
            limits,
            abs_pointer: abs_offered && abs_asked,
            playback,
        })
    }

    /// Lets go of a device's page and channel, if connected; says where its script stopped.
    fn release(&mut self, key: DeviceKey) {
        let Some(link) = self
            .devices
            .get_mut(&key)
            .and_then(|device| device.link.take())
        else {
            return;
        };
        let playback = &link.playback;
        if !playback.is_done() {
            self.say(format!(
                "{key}: script stopped after {} of {} events (the device closed)",
                playback.next,
                playback.total()
            ));
        }
        if let Err(error) = self.channels.unbind(link.port) {
            self.warn(format!("{key}: {error}"));
        }
        if let Err(error) = link.page.unmap() {
            self.warn(format!("{key}: {error}"));
        }
    }

    /// Puts every due event of every connected device on its page; returns when to look
    /// again (the earliest next event, or a recheck of a full ring), `None` if nothing waits.
    pub fn play(&mut self, now: Instant) -> Option<Instant> {
        let keys: Vec<DeviceKey> = self
            .devices
            .iter()
            .filter(|(_, device)| device.link.is_some())
            .map(|(key, _)| *key)
            .collect();
        keys.into_iter()
            .filter_map(|key| self.play_device(key, now))
            .min()
    }

    fn play_device(&mut self, key: DeviceKey, now: Instant) -> Option<Instant> {
        let mut lines = Vec::new();
        let mut pushed = 0u64;
        let mut skipped = 0u64;
        let link = self
            .devices
            .get_mut(&key)
            .and_then(|device| device.link.as_mut())?;
        let total = link.playback.total();
        while let Some(event) = link.playback.due(now) {
            let number = link.playback.next + 1;
            let words = EventWords(&event.event).to_string();
            let line = event.line;
            if let Err(why) = link.permits(&event.event) {
                lines.push((
                    true,
                    format!(
                        "{key}: event {number} of {total} not sent (script line {line}): {why}: \
                         {words}"
                    ),
                ));
                link.playback.next += 1;
                link.playback.skipped += 1;
                skipped += 1;
                continue;
            }
            match link.page.push_event(&kbdif::encode(&event.event)) {
                Ok(()) => {
                    lines.push((false, format!("{key}: event {number} of {total}: {words}")));
                    link.playback.next += 1;
                    link.playback.sent += 1;
                    link.playback.full = false;
                    pushed += 1;
                }
                Err(_full) => {
                    if !link.playback.full {
                        link.playback.full = true;
                        link.playback.waits += 1;
                        if link.playback.waits == 1 {
                            lines.push((
                                false,
                                format!(
                                    "{key}: the ring is full ({} events the frontend has not \
                                     taken); waiting for it to take some",
                                    kbdif::IN_RING_LEN
                                ),
                            ));
                        }
                    }
                    break;
                }
            }
        }
        let port = link.port;
        let finished = link.playback.is_done() && !link.playback.finished;
        if finished {
            link.playback.finished = true;
            let playback = &link.playback;
            let elapsed = now.saturating_duration_since(playback.started).as_millis();
            lines.push((
                false,
                format!(
                    "{key}: script done: {} of {total} events sent, {} not sent, in {elapsed} ms \
                     from Connected; the ring was full {} times",
                    playback.sent, playback.skipped, playback.waits
                ),
            ));
        }
        let wake = link.playback.wake_at(now);
        self.summary.sent += pushed;
        self.summary.skipped += skipped;
        if finished {
            self.summary.scripts_done += 1;
        }
        if pushed > 0 {
            if let Err(error) = self.channels.notify(port) {
                lines.push((true, format!("{key}: {error}")));
            }
        }
        for (error, line) in lines {
            match error {
                true => self.warn(line),
                false => self.say(line),
            }
        }
        wake
    }

    /// Closes every connected device (Closing, release, Closed, so frontends notice) and
    /// removes the error nodes this backend wrote.
    pub fn shutdown(&mut self) {
        let keys: Vec<DeviceKey> = self.devices.keys().copied().collect();
        for key in keys {
            let connected = self
                .devices
                .get(&key)
                .is_some_and(|device| device.link.is_some());
            if connected {
                match self.close_device(key, &lifecycle::BACKEND_CLOSE) {
                    Ok(()) => self.say(format!("{key}: Closed (backend stopping)")),
                    Err(error) => self.warn(format!("{key}: {error}")),
                }
            }
            self.set_error_node(key, None);
        }
    }

    /// Host tests: the mapped page of a connected device, as the frontend sees it.
    #[cfg(test)]
    fn page(&self, key: DeviceKey) -> Option<&kbdif::KbdPage> {
        Some(&self.devices.get(&key)?.link.as_ref()?.page)
    }
}

#[cfg(test)]
mod tests;
