//! The display frontend's loop: every connector of every vdispl device
//! driven as a double-buffered framebuffer, frames drawn by the
//! application ([`App`]) into the back buffer and page-flipped, each
//! connector on its own so that one that fails does not stall the others;
//! the device torn down and connected again when the backend leaves; the
//! accounting lines that show every grant and heap byte came back. Generic
//! over the OS below it ([`Env`]), so host tests drive this very loop
//! against a fake backend (io/displif.h, "STATE DIAGRAMS" and "Recovery
//! flow").
//!
//! A slow backend costs time, never the connection: a setup request waits
//! for its answer up to [`HANG_NS`] (30 s) unless the backend leaves or a
//! shutdown comes, and flips follow the [`super::flip`] module (an overdue
//! EVT_PG_FLIP releases the flip with a warning; a late response is waited
//! for until the ring counts as stuck). What a failure leads to is decided
//! in [`super::recovery`]: a failed connector never stops the others, and
//! is set up again on its own ring; only a broken ring or a backend that
//! left reconnects the device. A backend that refuses 16 bpp buffers gets
//! XRGB8888 ones for that connector instead, for the rest of the run; the
//! application draws at the depth actually used ([`Screen::bpp`]).

use super::backend::{EINVAL, EOPNOTSUPP};
use super::config::{self, ConnectorConfig, ConnectorTransport, DeviceConfig};
use super::connector::{self, write_directory, Connector, Wait, HANG_NS};
use super::env::{App, Env, Figures, PageMemory, Screen};
use super::failure::{Allocation, BackendBufferError, ConnectorError, DeviceError, Gone, Step};
use super::flip::{FlipPoll, Flipper};
use super::recovery::{self, BufferObjects, Health, Reconnects, Verdict};
use super::{VdisplError, MAX_CONNECTORS};
use crate::framebuffer::{FormatRgb565, FormatXrgb8888, Framebuffer};
use crate::xen::displif::{self, DbufCreate, Operation, Request};
use crate::xen::gnttab::{GrantError, GrantRef};
use crate::xen::hypercall::ShutdownReason;
use crate::xen::vkbd::{self, InputDevice};
use crate::xen::xenbus::{self, StateWatch, XenbusError, XenbusState};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use embedded_graphics::draw_target::DrawTargetExt;
use log::Level;

const NS_PER_MS: u64 = 1_000_000;
/// Input devices whose event channels wake the display loop.
const MAX_INPUTS: usize = 8;
/// How long the backend may take to reach InitWait, then Connected.
pub const HANDSHAKE_TIMEOUT_NS: u64 = 10_000 * NS_PER_MS;
/// How long one slice of a handshake wait lasts: between slices a shutdown
/// request is looked for, so a missing backend does not hold it up.
const HANDSHAKE_SLICE_NS: u64 = 250 * NS_PER_MS;
/// How long a setup request may wait for its response: a backend under load
/// may take seconds to map a buffer, so only a stuck ring reaches it.
const SETUP_TIMEOUT_NS: u64 = HANG_NS;
/// How long GET_EDID may wait (Linux's xen-drm-front request timeout); no
/// answer means no EDID.
pub const EDID_TIMEOUT_NS: u64 = 3_000 * NS_PER_MS;
/// Flip round trips kept per connector for the summary's percentiles.
const ROUND_TRIP_WINDOW: usize = 4096;
/// How long a teardown request may wait: the normal request timeout
/// (Linux's xen-drm-front), as a backend under load answers late.
pub const TEARDOWN_TIMEOUT_NS: u64 = 3_000 * NS_PER_MS;
/// How long teardown waits for the backend's Closed (or InitWait), which it
/// writes once it unmapped everything: generous, as a backend under load
/// may need seconds to unmap (libxenbe writes Closing before it unmaps).
pub const CLOSE_TIMEOUT_NS: u64 = 10_000 * NS_PER_MS;
/// How long ending a grant is retried while the backend still maps it.
pub const RELEASE_TIMEOUT_NS: u64 = 1_500 * NS_PER_MS;

/// What a display run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// A shutdown the toolstack asked for while the display ran.
    pub shutdown: Option<ShutdownReason>,
}

/// Where a display buffer's pixels are.
enum BufferMemory<P, F> {
    /// Pages of this domain, granted to the backend page by page.
    Own(P),
    /// Pages the backend allocated and granted (`be-alloc`), mapped here.
    Foreign(F),
    /// Not mapped (yet): a backend-allocated buffer before its DBUF_CREATE
    /// answer, or after a failed mapping.
    Unmapped,
}

impl<P: PageMemory, F: PageMemory> BufferMemory<P, F> {
    /// Runs `f` on the pages, if there are any.
    fn with_pages<R>(&mut self, f: impl FnOnce(&mut [[u8; 4096]]) -> R) -> Option<R> {
        match self {
            BufferMemory::Own(pages) => Some(pages.with_pages(f)),
            BufferMemory::Foreign(pages) => Some(pages.with_pages(f)),
            BufferMemory::Unmapped => None,
        }
    }
}

/// A double-buffered display buffer and framebuffer pair member.
struct Buffer<P, F> {
    memory: BufferMemory<P, F>,
    directory: P,
    refs: Vec<GrantRef>,
    directory_refs: Vec<GrantRef>,
    dbuf_cookie: u64,
    fb_cookie: u64,
    created: bool,
    attached: bool,
}

/// One connector being driven.
struct Output<E: Env, T> {
    config: ConnectorConfig,
    /// Bits per pixel of its buffers: 32 (XRGB8888) or 16 (RGB565).
    bpp: u32,
    connector: Connector<E::Ring, E::Events>,
    req_port: u32,
    evt_port: u32,
    req_ref: GrantRef,
    evt_ref: GrantRef,
    buffers: Vec<Buffer<E::Pages, E::Foreign>>,
    back: usize,
    /// The flip in flight, with what to report once it is shown.
    flipper: Flipper<T>,
    flips: u32,
    /// Flips on this connection (the summary's frames).
    connection_flips: u32,
    /// Being set up again after a failure (see [`super::recovery`]).
    restart: Option<Restart>,
    /// Flip round trips of the last [`ROUND_TRIP_WINDOW`] flips, a ring
    /// allocated once so that long runs do not grow the heap.
    round_trips_us: Vec<u32>,
    last_round_trip_us: u32,
    first_flip_ns: Option<u64>,
    last_flip_ns: u64,
    /// Whether it works, and the reconnections made for its sake.
    health: Health,
}

impl<E: Env, T> AsMut<Health> for Output<E, T> {
    fn as_mut(&mut self) -> &mut Health {
        &mut self.health
    }
}

impl<E: Env, T> Output<E, T> {
    fn working(&self) -> bool {
        self.health.failed().is_none()
    }
}

/// Stops `output` for `reason` at the env's time, with its error line.
#[inline(never)]
fn fail<E: Env, T>(env: &mut E, output: &mut Output<E, T>, reason: ConnectorError) {
    output.restart = None;
    let (line, error) = output.health.fail(reason, env.now_ns());
    let level = if error { Level::Error } else { Level::Warn };
    env.log(level, format_args!("{line}"));
}

/// A failed connector being set up again on its own ring: the requests
/// awaited, then SET_CONFIG.
struct Restart {
    pending: Vec<Pending>,
    configured: bool,
}

/// A frame drawn into a back buffer, to be flipped.
struct Drawn<T> {
    fb_cookie: u64,
    shown: T,
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
struct SetUp<T> {
    pending: Vec<Pending>,
    frames: Vec<Option<Drawn<T>>>,
}

/// How a device's display run ended.
enum ShowEnd {
    /// Every connector showed every frame, or failed for good.
    Finished,
    /// The toolstack asked for a shutdown.
    Shutdown(ShutdownReason),
    /// The backend went away or a ring broke: reconnect.
    Lost(DeviceError),
}

/// Why connecting a device did not get through.
enum ConnectError {
    /// Something failed; a later attempt may succeed.
    Failed(DeviceError),
    /// The toolstack asked for a shutdown while the handshake waited.
    Shutdown(ShutdownReason),
}

impl From<DeviceError> for ConnectError {
    fn from(error: DeviceError) -> Self {
        ConnectError::Failed(error)
    }
}

/// Where each connector (by index) got to, kept across reconnections.
#[derive(Clone, Copy, Default)]
struct Progress {
    next_frame: u64,
    flips: u32,
    retries: u32,
    /// The depth it fell back to, if the backend refused the first one.
    bpp: Option<u32>,
}

/// Runs `f` on the env's xenstore client; a failure is named by `step`.
fn store_call<E: Env, R>(
    env: &mut E,
    step: Step,
    f: impl FnOnce(&mut crate::xen::xenstore::client::Client<E::Transport>) -> Result<R, VdisplError>,
) -> Result<R, DeviceError> {
    env.with_store(f)
        .ok_or(DeviceError::NoXenstore)?
        .map_err(|error| DeviceError::Store(step, error))
}

/// Takes in what xenstored sent and runs the watch callbacks.
fn service_store<E: Env>(env: &mut E) {
    let polled = env.with_store(|client| {
        let polled = client.poll().map(drop);
        client.dispatch_watches();
        polled
    });
    if let Some(Err(error)) = polled {
        env.log(Level::Error, format_args!("xenstore: {error}"));
    }
}

/// Drives every vdispl device until all frames were shown, or the toolstack
/// asks for a shutdown. `depths` are the bits per pixel of each connector's
/// buffers in order, the last one repeating (32 when empty). A device whose
/// backend goes away (or whose ring breaks) is torn down, its grants ended
/// and its event channels closed, and connected again when the backend is
/// back; frames resume where they stopped.
pub fn run<E: Env, A: App>(env: &mut E, app: &mut A, depths: &[u32]) -> Outcome {
    let ids = match store_call(env, Step::Enumerate, config::enumerate) {
        Ok(ids) => ids,
        Err(error) => {
            env.log(Level::Error, format_args!("display: {error}"));
            return Outcome { shutdown: None };
        }
    };
    if ids.is_empty() {
        env.print(format_args!(
            "display: no vdispl device (add vdispl = [...] to the xl config)"
        ));
        return Outcome { shutdown: None };
    }
    let mut inputs = connect_inputs(env);
    let mut shutdown = None;
    for id in ids {
        shutdown = run_device(env, app, &id, depths, &mut inputs);
        if shutdown.is_some() {
            break;
        }
    }
    if !inputs.is_empty() {
        for input in inputs {
            input.disconnect(env);
        }
        match env.grants_in_use() {
            0 => env.print(format_args!("input: all grants returned (0 in use)")),
            in_use => env.print(format_args!("input: {in_use} grants still in use")),
        }
    }
    Outcome { shutdown }
}

/// Connects every input device of the domain; one that cannot be connected
/// is named and left out.
fn connect_inputs<E: Env>(env: &mut E) -> Vec<InputDevice<E>> {
    let ids = match vkbd::enumerate(env) {
        Ok(ids) => ids,
        Err(error) => {
            env.log(Level::Error, format_args!("input: {error}"));
            return Vec::new();
        }
    };
    let mut inputs = Vec::new();
    for id in ids {
        match InputDevice::connect(env, &id) {
            Ok(input) => {
                let config = input.config();
                env.print(format_args!(
                    "input: device {} connected (backend domain {}, connector {}{}{})",
                    config.path,
                    config.backend_id,
                    config.unique_id.as_deref().unwrap_or("none"),
                    if config.abs_pointer {
                        ", absolute pointer"
                    } else {
                        ""
                    },
                    if config.multi_touch {
                        ", multi-touch"
                    } else {
                        ""
                    },
                ));
                inputs.push(input);
            }
            Err(error) => env.log(
                Level::Error,
                format_args!("input: device {}/{id}: {error}; not used", vkbd::DEVICES),
            ),
        }
    }
    inputs
}

/// Runs one device through as many connections as it takes.
fn run_device<E: Env, A: App>(
    env: &mut E,
    app: &mut A,
    id: &str,
    depths: &[u32],
    inputs: &mut [InputDevice<E>],
) -> Option<ShutdownReason> {
    let mut progress = [Progress::default(); MAX_CONNECTORS];
    let mut reconnects = Reconnects::default();
    let mut generation = 0u64;
    // Held across connections: allocated before the baseline is taken.
    let state_node = format!("{}/{id}/state", config::DEVICES);
    service_store(env);
    let baseline = Usage::now(env);
    env.print(format_args!(
        "display: device {id} baseline: {} grants in use, heap in use {} bytes, {} backend \
         pages mapped",
        baseline.grants, baseline.heap_bytes, baseline.foreign_pages
    ));
    write_state(env, &state_node, XenbusState::Initialising);
    loop {
        generation += 1;
        let flips_before: u32 = progress.iter().map(|p| p.flips).sum();
        let end = match Device::connect(env, app, inputs, id, depths, generation, &progress) {
            Err(ConnectError::Shutdown(reason)) => ShowEnd::Shutdown(reason),
            Err(ConnectError::Failed(error)) => ShowEnd::Lost(error),
            Ok(mut device) => {
                let end = device.show();
                for (slot, output) in progress.iter_mut().zip(&device.outputs) {
                    slot.next_frame = output.flipper.next_frame();
                    slot.flips = output.flips;
                    slot.retries = output.health.retries();
                    slot.bpp = Some(output.bpp);
                }
                device.teardown();
                end
            }
        };
        let flips_after: u32 = progress.iter().map(|p| p.flips).sum();
        let lost = match end {
            ShowEnd::Finished => None,
            ShowEnd::Shutdown(reason) => Some(Err(reason)),
            ShowEnd::Lost(reason) if reason.permanent() => {
                env.print(format_args!(
                    "display device {id}: {reason}; this device is not driven"
                ));
                // Where xenbus tools look for why a device is not working.
                let node = format!("{}/{id}", config::DEVICES);
                if let Some(node) = xenbus::error_node(&node) {
                    let said = format!("{reason}");
                    let written = env.with_store(|client| client.write(&node, said.as_bytes()));
                    if let Some(Err(error)) = written {
                        env.log(Level::Warn, format_args!("display: {node}: {error}"));
                    }
                }
                None
            }
            ShowEnd::Lost(reason) => match reconnects.after_loss(flips_after > flips_before) {
                (true, _) => {
                    env.print(format_args!("display device {id}: {reason}; reconnecting"));
                    Some(Ok(()))
                }
                (false, fruitless) => {
                    env.print(format_args!(
                        "display device {id}: giving up after {fruitless} reconnections without \
                         a frame: {reason}"
                    ));
                    None
                }
            },
        };
        // Everything of this connection is gone now: what it held must have
        // gone back (watch events still queued for it are dropped first).
        service_store(env);
        Usage::now(env).report(env, id, generation, baseline);
        match lost {
            None => return None,
            Some(Err(reason)) => return Some(reason),
            Some(Ok(())) => {
                // displif.h's recovery flow: back to Initialising, then a
                // new connection once the backend offers InitWait.
                write_state(env, &state_node, XenbusState::Initialising);
                // Let a restarting backend come back, unless a shutdown
                // comes first.
                let deadline = env.now_ns() + recovery::RECONNECT_PAUSE_NS;
                while env.now_ns() < deadline {
                    if let Some(reason) = env.shutdown_requested() {
                        return Some(reason);
                    }
                    env.wait(&[], deadline);
                    service_store(env);
                }
            }
        }
    }
}

/// Writes the frontend's state, logging a failure.
fn write_state<E: Env>(env: &mut E, node: &str, state: XenbusState) {
    let written = env.with_store(|client| xenbus::write_state(client, node, state));
    if let Some(Err(error)) = written {
        env.log(Level::Warn, format_args!("display: {error}"));
    }
}

/// Grants and heap in use, compared before and after each connection.
#[derive(Clone, Copy)]
struct Usage {
    grants: u32,
    heap_bytes: usize,
    /// Pages of the backend mapped (be-alloc buffers).
    foreign_pages: usize,
}

impl Usage {
    fn now<E: Env>(env: &mut E) -> Usage {
        Usage {
            grants: env.grants_in_use(),
            heap_bytes: env.heap_in_use(),
            foreign_pages: env.foreign_in_use(),
        }
    }

    /// Prints the figures after connection `generation` of device `id`
    /// ended, and whether they are back at `baseline`.
    fn report<E: Env>(self, env: &mut E, id: &str, generation: u64, baseline: Usage) {
        let heap_bytes = self.heap_bytes;
        let grants = self.grants;
        let foreign = self.foreign_pages;
        if grants == baseline.grants
            && heap_bytes == baseline.heap_bytes
            && foreign == baseline.foreign_pages
        {
            env.print(format_args!(
                "display: device {id} connection {generation} closed: {grants} grants in use, \
                 heap in use {heap_bytes} bytes, {foreign} backend pages mapped, at baseline"
            ));
        } else {
            env.print(format_args!(
                "display: device {id} connection {generation} closed: {grants} grants in use, \
                 heap in use {heap_bytes} bytes, {foreign} backend pages mapped, above baseline \
                 by {} grants, {} bytes, {} backend pages",
                i64::from(grants) - i64::from(baseline.grants),
                heap_bytes as i64 - baseline.heap_bytes as i64,
                foreign as i64 - baseline.foreign_pages as i64
            ));
        }
    }
}

/// A [`Wait`] on one connector's channels through the env.
struct EnvWait<'e, E> {
    env: &'e mut E,
    ports: [u32; 2],
}

impl<E: Env> Wait for EnvWait<'_, E> {
    fn notify(&mut self) {
        self.env.notify(self.ports[0]);
    }

    fn wait(&mut self, deadline_ns: u64) {
        self.env.wait(&self.ports, deadline_ns);
        service_store(self.env);
    }

    fn now_ns(&self) -> u64 {
        self.env.now_ns()
    }
}

/// One device's connection.
struct Device<'r, E: Env, A: App> {
    env: &'r mut E,
    app: &'r mut A,
    /// The domain's input devices, polled between frames.
    inputs: &'r mut [InputDevice<E>],
    config: DeviceConfig,
    version: u32,
    outputs: Vec<Output<E, A::Shown>>,
    generation: u64,
    /// Buffers sent in this connection: part of every cookie, so that a
    /// buffer sent again after a retry never reuses the cookie of one the
    /// backend may yet create.
    buffers_sent: u64,
    /// The watch on the backend's state node, for the whole connection.
    backend_watch: Option<StateWatch>,
    /// Whether the handshake completed (the rings have a backend).
    connected: bool,
    /// When the connection started (the status figures' uptime).
    start_ns: u64,
    /// How the backend left, seen while requests were awaited.
    gone: Option<Gone>,
    /// A shutdown the toolstack asked for while requests were awaited.
    shutdown: Option<ShutdownReason>,
}

impl<'r, E: Env, A: App> Device<'r, E, A> {
    /// The handshake, then every connector set up and its first frame on
    /// its way: the backend's state is watched once for the whole
    /// connection; each connector's first buffer is created and its first
    /// frame drawn while the backend maps it (the second buffer follows the
    /// first flip); the frontend goes Connected once its connectors are set
    /// up, as displif.h's state diagram has it.
    fn connect(
        env: &'r mut E,
        app: &'r mut A,
        inputs: &'r mut [InputDevice<E>],
        id: &str,
        depths: &[u32],
        generation: u64,
        progress: &[Progress],
    ) -> Result<Self, ConnectError> {
        let config = store_call(env, Step::Configuration, |client| {
            config::read_device(client, id)
        })?;
        let node = format!("{}/state", config.backend);
        let watch = env
            .with_store(|client| StateWatch::new(client, &node))
            .ok_or(DeviceError::NoXenstore)?
            .map_err(|error| DeviceError::Store(Step::Watch, error.into()))?;
        let start_ns = env.now_ns();
        let mut device = Device {
            env,
            app,
            inputs,
            config,
            version: 1,
            outputs: Vec::new(),
            generation,
            buffers_sent: 0,
            backend_watch: Some(watch),
            connected: false,
            start_ns,
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
        let path = device.config.path.clone();
        device
            .env
            .print(format_args!("display: device {path} connected"));
        // GET_EDID whatever the version: backends that write no `versions`
        // answer it too; one that cannot leaves the node's resolution.
        for index in 0..device.outputs.len() {
            if device.outputs[index].working() {
                device.read_edid(index);
            }
        }
        let set_up = device.start_set_up();
        // Written while the backend maps the first buffers.
        let connected = store_call(device.env, Step::Connecting, |client| {
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

    /// Waits through the backend watch until the backend's state satisfies
    /// `wanted`, in slices, until [`HANDSHAKE_TIMEOUT_NS`] pass or a
    /// shutdown is requested (looked for between slices, so a missing
    /// backend does not hold it up).
    fn handshake_wait(
        &mut self,
        step: Step,
        mut wanted: impl FnMut(XenbusState) -> bool,
    ) -> Result<(), ConnectError> {
        let start = self.env.now_ns();
        let deadline = start + HANDSHAKE_TIMEOUT_NS;
        loop {
            if let Some(reason) = self.env.shutdown_requested() {
                return Err(ConnectError::Shutdown(reason));
            }
            let slice_ns = deadline
                .saturating_sub(self.env.now_ns())
                .min(HANDSHAKE_SLICE_NS);
            let watch = self.backend_watch.as_ref();
            // Waiting for Connected, a backend that closes has refused the
            // configuration: that ends the wait at once.
            let refusable = step == Step::AwaitConnected;
            let mut refused = None;
            let result = self
                .env
                .with_store(|client| match watch {
                    Some(watch) => watch.wait_for(
                        client,
                        |state| {
                            let closing =
                                matches!(state, XenbusState::Closing | XenbusState::Closed);
                            if refusable && closing {
                                refused = Some(state);
                            }
                            refused.is_some() || wanted(state)
                        },
                        slice_ns,
                    ),
                    None => Err(XenbusError::Missing {
                        node: String::new(),
                    }),
                })
                .ok_or(DeviceError::NoXenstore)?;
            if let Some(state) = refused {
                let said = self.backend_says();
                return Err(DeviceError::Refused(step, Gone::State(state), said).into());
            }
            match result {
                Ok(_) => return Ok(()),
                Err(XenbusError::Timeout { .. }) if self.env.now_ns() < deadline => {}
                // The whole wait, not its last slice.
                Err(XenbusError::Timeout { node, last, .. }) => {
                    let waited_ms = (self.env.now_ns() - start) / NS_PER_MS;
                    let error = XenbusError::Timeout {
                        node,
                        last,
                        waited_ms,
                    };
                    return Err(DeviceError::Store(step, error.into()).into());
                }
                Err(error) => return Err(DeviceError::Store(step, error.into()).into()),
            }
        }
    }

    /// What the backend's xenbus `error` node says, if it wrote one and this
    /// domain may read it.
    fn backend_says(&mut self) -> Option<String> {
        let node = xenbus::error_node(&self.config.backend)?;
        self.env
            .with_store(|client| client.read_string(&node).ok())
            .flatten()
            .map(|said| String::from(said.trim()))
            .filter(|said| !said.is_empty())
    }

    /// Waits for the backend's InitWait and reads the version it offers.
    fn await_backend(&mut self) -> Result<(), ConnectError> {
        // Mostly the backend is at InitWait already (the toolstack waits for
        // it before the domain runs): its state and versions in one go.
        let config = &self.config;
        let ready = store_call(self.env, Step::Version, |client| {
            config::ready_version(client, config)
        })?;
        if let Some(version) = ready {
            self.version = version;
            self.announce();
            return Ok(());
        }
        // The backend publishes `versions` before it reaches InitWait. A
        // backend still Connected to an earlier connection (or left so by a
        // backend that died) is not this frontend's: wait for InitWait.
        self.handshake_wait(Step::AwaitBackend, |state| state == XenbusState::InitWait)?;
        let config = &self.config;
        let ready = store_call(self.env, Step::Version, |client| {
            config::ready_version(client, config)
        })?;
        self.version = ready.ok_or(DeviceError::LeftInitWait)?;
        self.announce();
        Ok(())
    }

    /// Prints the device's line once its backend and version are known.
    fn announce(&mut self) {
        let config = &self.config;
        self.env.print(format_args!(
            "display: device {} backend {} (domain {}), protocol version {}, {} connectors",
            config.path,
            config.backend,
            config.backend_id,
            self.version,
            config.connectors.len()
        ));
    }

    /// Every connector's rings and channels published, Initialised, then the
    /// backend's Connected.
    fn publish_and_connect(
        &mut self,
        depths: &[u32],
        progress: &[Progress],
    ) -> Result<(), ConnectError> {
        for index in 0..self.config.connectors.len() {
            // On failure, what was opened so far is released by teardown.
            let mut output = self.open_output(index)?;
            output.bpp = depths.get(index).or(depths.last()).copied().unwrap_or(32);
            if let Some(done) = progress.get(index) {
                output.flipper = Flipper::new(done.next_frame);
                output.flips = done.flips;
                output.health = Health::new(output.health.name().into(), done.retries);
                output.bpp = done.bpp.unwrap_or(output.bpp);
            }
            // Its rings are published like the others' (the backend reads
            // every connector listed), but nothing is sent on them.
            if let Some(refused) = output.config.refused.clone() {
                fail(self.env, &mut output, ConnectorError::Config(refused));
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
        let (config, version) = (&self.config, self.version);
        store_call(self.env, Step::Publish, |client| {
            config::publish_with_state(
                client,
                config,
                version,
                &transports,
                XenbusState::Initialised,
            )
        })?;
        self.handshake_wait(Step::AwaitConnected, |state| {
            state == XenbusState::Connected
        })?;
        self.connected = true;
        Ok(())
    }

    /// Connector `index`'s rings granted and channels opened.
    fn open_output(&mut self, index: usize) -> Result<Output<E, A::Shown>, DeviceError> {
        let env = &mut *self.env;
        let config = self.config.connectors[index].clone();
        let backend = self.config.backend_id;
        let no_memory = |env: &mut E| DeviceError::NoMemory {
            what: Allocation::Rings,
            asked: 2 * 4096,
            free: env.heap_free(),
        };
        let Some((ring, ring_frame)) = env.ring_page() else {
            return Err(no_memory(env));
        };
        let Some((events, events_frame)) = env.event_page() else {
            let error = no_memory(env);
            drop(ring);
            return Err(error);
        };
        let req_ref = env.grant(backend, ring_frame).map_err(DeviceError::Grant)?;
        let evt_ref = match env.grant(backend, events_frame) {
            Ok(gref) => gref,
            Err(error) => {
                let _ = env.end_grant(req_ref);
                return Err(DeviceError::Grant(error));
            }
        };
        let mut ports = [0u32; 2];
        for slot in 0..2 {
            match env.open_channel(backend) {
                Ok(port) => ports[slot] = port,
                Err(error) => {
                    for port in &ports[..slot] {
                        env.close_channel(*port);
                    }
                    let _ = env.end_grant(req_ref);
                    let _ = env.end_grant(evt_ref);
                    return Err(DeviceError::Channel {
                        node: format!("{}/backend-id", self.config.path),
                        domid: backend,
                        error,
                    });
                }
            }
        }
        let name = recovery::connector_name(config.index, &config.unique_id);
        Ok(Output {
            config,
            bpp: 32,
            connector: Connector::new(ring, events),
            req_port: ports[0],
            evt_port: ports[1],
            req_ref,
            evt_ref,
            buffers: Vec::new(),
            back: 0,
            flipper: Flipper::new(0),
            flips: 0,
            connection_flips: 0,
            restart: None,
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
        let fetched = self.fetch_edid(index);
        let output = &mut self.outputs[index];
        let name = output.health.name();
        match fetched {
            Ok(Some((width, height))) => {
                let config = &mut output.config;
                if (width, height) != (config.width, config.height) {
                    self.env.print(format_args!(
                        "display: {name} EDID prefers {width}x{height} over the configured {}x{}",
                        config.width, config.height
                    ));
                    config.width = width;
                    config.height = height;
                }
            }
            Ok(None) => self.env.log(
                Level::Info,
                format_args!("display {name}: the backend offers no EDID"),
            ),
            Err(error) => self.env.log(
                Level::Warn,
                format_args!("display {name}: GET_EDID: {error}"),
            ),
        }
    }

    fn fetch_edid(&mut self, index: usize) -> Result<Option<(u32, u32)>, EdidError> {
        let backend = self.config.backend_id;
        let pages = displif::buffer_pages(displif::EDID_MAX_SIZE);
        let env = &mut *self.env;
        let mut memory = env.pages(pages).ok_or(EdidError::NoMemory)?;
        let Some(mut directory) = env.pages(1) else {
            drop(memory);
            return Err(EdidError::NoMemory);
        };
        let mut refs = Vec::new();
        let granted = (0..pages)
            .map(|page| memory.frame(page))
            .chain([directory.frame(0)])
            .try_for_each(|frame| env.grant(backend, frame).map(|gref| refs.push(gref)));
        let result = granted.map_err(EdidError::Grant).and_then(|()| {
            let (buffer_refs, directory_ref) = refs.split_at(pages);
            directory.with_pages(|pages| write_directory(pages, directory_ref, buffer_refs));
            let request = Request::GetEdid {
                buffer_sz: displif::EDID_MAX_SIZE,
                gref_directory: directory_ref[0],
            };
            let output = &mut self.outputs[index];
            let mut wait = EnvWait {
                env: &mut *self.env,
                ports: [output.req_port, output.evt_port],
            };
            match connector::call(&mut output.connector, &mut wait, &request, EDID_TIMEOUT_NS) {
                Ok(response) => memory.with_pages(|pages| {
                    let bytes = pages.as_flattened();
                    let size = (response.edid_sz as usize).min(bytes.len());
                    crate::xen::edid::preferred_resolution(&bytes[..size])
                        .map(Some)
                        .map_err(EdidError::Edid)
                }),
                Err(VdisplError::Status { status, .. }) if status == -95 || status == -38 => {
                    Ok(None)
                }
                Err(error) => Err(EdidError::Request(error)),
            }
        });
        let deadline = self.env.now_ns() + RELEASE_TIMEOUT_NS;
        if end_all(self.env, &refs, deadline) {
            drop((memory, directory));
        } else {
            self.env.log(
                Level::Warn,
                format_args!(
                    "display: the EDID buffer is still mapped by the backend; it stays allocated"
                ),
            );
            self.env.leak(memory);
            self.env.leak(directory);
        }
        result
    }

    /// The first half of setting up the connectors: for each, its first
    /// buffer granted and its DBUF_CREATE and FB_ATTACH sent, then its first
    /// frame drawn into it while the backend maps it. Connector 0's
    /// SET_CONFIG and first PG_FLIP follow at once on the same ring, which the
    /// backend serves in order; other connectors' wait for ring 0's answers
    /// ([`Device::finish_set_up`]).
    fn start_set_up(&mut self) -> SetUp<A::Shown> {
        let mut set_up = SetUp {
            pending: Vec::new(),
            frames: Vec::new(),
        };
        for index in 0..self.outputs.len() {
            let mut frame = None;
            if !self.outputs[index].working() {
                set_up.frames.push(frame);
                continue;
            }
            match self.send_buffer(index) {
                Ok(sent) if !self.outputs[index].working() => set_up.pending.extend(sent),
                Ok(sent) => {
                    set_up.pending.extend(sent);
                    frame = self.render(index);
                    if index == 0 && self.outputs[0].working() {
                        set_up.pending.extend(self.send_set_config(0));
                        self.flip_first(0, frame.take());
                    }
                }
                Err(error) => fail(self.env, &mut self.outputs[index], error),
            }
            set_up.frames.push(frame);
        }
        set_up
    }

    /// The rest: every answer awaited, then the other connectors' SET_CONFIG
    /// and first PG_FLIP, their answers awaited too.
    fn finish_set_up(&mut self, set_up: SetUp<A::Shown>) {
        self.await_answers(set_up.pending, SETUP_TIMEOUT_NS);
        let mut pending = Vec::new();
        for (index, frame) in set_up.frames.into_iter().enumerate() {
            // Connector 0's went with its buffer.
            if index > 0 && self.outputs[index].working() {
                pending.extend(self.send_set_config(index));
            }
            self.flip_first(index, frame);
        }
        self.await_answers(pending, SETUP_TIMEOUT_NS);
        for index in 0..self.outputs.len() {
            if self.outputs[index].working() {
                self.print_ready(index);
            }
        }
    }

    /// Prints output `index`'s line once it is set up.
    fn print_ready(&mut self, index: usize) {
        let output = &self.outputs[index];
        let (width, height, bpp) = (output.config.width, output.config.height, output.bpp);
        self.env.print(format_args!(
            "display: {} {width}x{height} {bpp} bpp ready, buffers of {} KiB",
            output.health.name(),
            displif::stride(width, bpp) * height / 1024
        ));
    }

    /// Sets failed output `index` up again on its own ring (see
    /// [`super::recovery`]): its flip in flight given up, its display
    /// buffers the backend did not create released (all of them, at the
    /// new depth, after a refused depth), the missing ones created and
    /// attached again; [`Device::advance_restart`] does the rest.
    fn retry(&mut self, index: usize) {
        let deadline = self.env.now_ns() + RELEASE_TIMEOUT_NS;
        let output = &mut self.outputs[index];
        let reason = output.health.restart();
        output.flipper.abandon(&mut output.connector);
        // Its error line said the retry was coming.
        if let Some(ConnectorError::DepthRefused { .. }) = reason {
            output.bpp = 32;
        }
        let mut leaked = 0;
        while let Some(slot) = self.outputs[index]
            .buffers
            .iter()
            .position(|buffer| !buffer.created)
        {
            let buffer = self.outputs[index].buffers.remove(slot);
            leaked += release_buffer(self.env, buffer, deadline);
        }
        if self.outputs[index].buffers.is_empty() {
            self.outputs[index].back = 0;
        }
        if leaked > 0 {
            self.env.log(
                Level::Warn,
                format_args!("display: {leaked} pages are still mapped by the backend"),
            );
        }
        let output = &self.outputs[index];
        let pending = if output.buffers.is_empty() {
            match self.send_buffer(index) {
                Ok(sent) => sent,
                Err(error) => return fail(self.env, &mut self.outputs[index], error),
            }
        } else {
            let attach: Vec<(usize, Request, Mark)> = (0..output.buffers.len())
                .filter(|&slot| !output.buffers[slot].attached)
                .map(|slot| (0, buffer_requests(output, slot).1, Mark::Attached(slot)))
                .collect();
            self.send_all(Some(index), &attach)
        };
        if self.outputs[index].working() {
            self.outputs[index].restart = Some(Restart {
                pending,
                configured: false,
            });
        }
    }

    /// Takes in the answers to output `index`'s restart, then sends its
    /// SET_CONFIG; returns whether the output is set up again.
    fn advance_restart(&mut self, index: usize) -> bool {
        let Some(mut restart) = self.outputs[index].restart.take() else {
            return true;
        };
        self.take_answers(&mut restart.pending, SETUP_TIMEOUT_NS);
        if restart.pending.is_empty() && !restart.configured {
            restart.configured = true;
            restart.pending.extend(self.send_set_config(index));
        }
        if !self.outputs[index].working() {
            return false;
        }
        if restart.pending.is_empty() {
            self.print_ready(index);
            return true;
        }
        self.outputs[index].restart = Some(restart);
        false
    }

    /// Flips output `index`'s first frame, drawn during setup, unless the
    /// output failed meanwhile: then the frame is drawn again on the next
    /// connection.
    fn flip_first(&mut self, index: usize, frame: Option<Drawn<A::Shown>>) {
        let Some(frame) = frame else {
            return;
        };
        if self.outputs[index].working() {
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
        let now = self.env.now_ns();
        let mut sent = Vec::new();
        let mut notify = [false; MAX_CONNECTORS];
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
                    self.failed(index, request.operation(), error);
                    if index.is_some() {
                        break;
                    }
                }
            }
        }
        for (ring, wanted) in notify.iter().enumerate() {
            if *wanted {
                self.env.notify(self.outputs[ring].req_port);
            }
        }
        sent
    }

    /// A request of output `index` failed: the output fails (once; a
    /// DBUF_CREATE refused at a depth other than 32 bpp is a refused depth);
    /// during teardown (`None`) it is logged.
    fn failed(&mut self, index: Option<usize>, operation: Operation, error: VdisplError) {
        match index {
            Some(index) if self.outputs[index].working() => {
                let output = &mut self.outputs[index];
                let reason = match error {
                    VdisplError::Status {
                        operation: Operation::DbufCreate,
                        status: status @ (EINVAL | EOPNOTSUPP),
                    } if output.bpp != 32 => ConnectorError::DepthRefused {
                        bpp: output.bpp,
                        status,
                    },
                    error => error.into(),
                };
                fail(self.env, output, reason)
            }
            Some(_) => {}
            None => self.env.log(
                Level::Warn,
                format_args!("display: {operation} during teardown: {error}"),
            ),
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
            all &= self.take_answers(&mut pending, timeout_ns);
            if let Some(deadline) = pending
                .iter()
                .map(|request| request.sent_ns + timeout_ns)
                .min()
            {
                self.wait_on(false, deadline);
            }
        }
        all
    }

    /// Takes the answers to `pending` that came, and gives up on those
    /// older than `timeout_ns`, as [`Device::await_answers`] does, without
    /// waiting; returns whether none was given up on.
    fn take_answers(&mut self, pending: &mut Vec<Pending>, timeout_ns: u64) -> bool {
        let mut all = true;
        let now = self.env.now_ns();
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
                (Err(error), output, _) => self.failed(output, request.operation, error),
            }
        }
        all
    }

    /// Cookies for output `index`'s buffer `slot`: connection, buffer
    /// serial, connector and slot, so that a buffer sent again after a
    /// retry never reuses the cookie of one the backend may yet create; bit
    /// 3 marks the framebuffer's.
    fn next_cookies(&mut self, index: usize, slot: usize) -> (u64, u64) {
        self.buffers_sent += 1;
        let dbuf_cookie = (self.generation << 40)
            | (self.buffers_sent << 8)
            | ((index as u64 + 1) << 4)
            | (slot as u64 + 1);
        (dbuf_cookie, dbuf_cookie | 0x8)
    }

    /// One more display buffer and framebuffer for output `index`: its pages
    /// granted, then DBUF_CREATE and FB_ATTACH sent on connector 0's ring
    /// (displif.h wants them there), one after the other without waiting.
    /// With `be-alloc`, [`Device::send_backend_buffer`] instead.
    fn send_buffer(&mut self, index: usize) -> Result<Vec<Pending>, ConnectorError> {
        if self.config.be_alloc {
            return self.send_backend_buffer(index);
        }
        let output = &self.outputs[index];
        let (width, height, bpp) = (output.config.width, output.config.height, output.bpp);
        let slot = output.buffers.len();
        let size = displif::stride(width, bpp) * height;
        let backend = self.config.backend_id;
        let pages = displif::buffer_pages(size);
        let env = &mut *self.env;
        let what = Allocation::Buffer { width, height };
        let directory_pages = displif::directory_pages(pages);
        let Some(memory) = env.pages(pages) else {
            return Err(ConnectorError::NoMemory {
                what,
                asked: pages * 4096,
                free: env.heap_free(),
            });
        };
        let Some(mut directory) = env.pages(directory_pages) else {
            let free = env.heap_free();
            drop(memory);
            return Err(ConnectorError::NoMemory {
                what: Allocation::Directory,
                asked: directory_pages * 4096,
                free,
            });
        };
        let mut refs = Vec::with_capacity(pages);
        let mut directory_refs = Vec::new();
        let mut granted = || -> Result<(), GrantError> {
            for page in 0..pages {
                refs.push(env.grant(backend, memory.frame(page))?);
            }
            for page in 0..directory.pages() {
                directory_refs.push(env.grant(backend, directory.frame(page))?);
            }
            Ok(())
        };
        if let Err(error) = granted() {
            let error = ConnectorError::Grants {
                what,
                asked: pages + directory_pages,
                error,
            };
            // The backend has not heard of these references: they end at
            // once, and the pages go back, so that other connectors can have
            // them.
            let all: Vec<GrantRef> = refs.iter().chain(&directory_refs).copied().collect();
            if end_all(env, &all, env.now_ns()) {
                drop((memory, directory));
                return Err(error);
            }
            // Never expected; kept for teardown to end like any buffer.
            self.outputs[index].buffers.push(Buffer {
                memory: BufferMemory::Own(memory),
                directory,
                refs,
                directory_refs,
                dbuf_cookie: 0,
                fb_cookie: 0,
                created: false,
                attached: false,
            });
            return Err(error);
        }
        directory.with_pages(|pages| write_directory(pages, &directory_refs, &refs));
        let (dbuf_cookie, fb_cookie) = self.next_cookies(index, slot);
        let complete = !directory_refs.is_empty();
        self.outputs[index].buffers.push(Buffer {
            memory: BufferMemory::Own(memory),
            directory,
            refs,
            directory_refs,
            dbuf_cookie,
            fb_cookie,
            created: false,
            attached: false,
        });
        if !complete {
            return Err(ConnectorError::NoBuffers);
        }
        let (create, attach) = buffer_requests(&self.outputs[index], slot);
        let sent = self.send_all(
            Some(index),
            &[
                (0, create, Mark::Created(slot)),
                (0, attach, Mark::Attached(slot)),
            ],
        );
        Ok(sent)
    }

    /// A display buffer the backend allocates (`be-alloc`, displif.h's
    /// XENDISPL_DBUF_FLG_REQ_ALLOC): the frontend grants only the page
    /// directory, chained and empty; DBUF_CREATE asks the backend to fill it
    /// with the grants of the pages it allocated; once answered, those
    /// pages are mapped into the guest's window and FB_ATTACH is sent. A
    /// directory short of references or pages that cannot be mapped stop
    /// this connector, named.
    fn send_backend_buffer(&mut self, index: usize) -> Result<Vec<Pending>, ConnectorError> {
        let output = &self.outputs[index];
        let (width, height, bpp) = (output.config.width, output.config.height, output.bpp);
        let slot = output.buffers.len();
        let pages = displif::buffer_pages(displif::stride(width, bpp) * height);
        let directory_pages = displif::directory_pages(pages);
        let backend = self.config.backend_id;
        let env = &mut *self.env;
        let Some(mut directory) = env.pages(directory_pages) else {
            return Err(ConnectorError::NoMemory {
                what: Allocation::Directory,
                asked: directory_pages * 4096,
                free: env.heap_free(),
            });
        };
        let mut directory_refs = Vec::with_capacity(directory_pages);
        for page in 0..directory_pages {
            match env.grant(backend, directory.frame(page)) {
                Ok(gref) => directory_refs.push(gref),
                Err(error) => {
                    if end_all(env, &directory_refs, env.now_ns()) {
                        drop(directory);
                    } else {
                        env.leak(directory);
                    }
                    return Err(ConnectorError::Grants {
                        what: Allocation::Directory,
                        asked: directory_pages,
                        error,
                    });
                }
            }
        }
        directory.with_pages(|pages| write_directory(pages, &directory_refs, &[]));
        let (dbuf_cookie, fb_cookie) = self.next_cookies(index, slot);
        self.outputs[index].buffers.push(Buffer {
            memory: BufferMemory::Unmapped,
            directory,
            refs: Vec::new(),
            directory_refs,
            dbuf_cookie,
            fb_cookie,
            created: false,
            attached: false,
        });
        let (create, attach) = buffer_requests(&self.outputs[index], slot);
        let create = match create {
            Request::DbufCreate(create) => Request::DbufCreate(DbufCreate {
                flags: displif::DBUF_FLAG_REQ_ALLOC,
                ..create
            }),
            other => other,
        };
        let sent = self.send_all(Some(index), &[(0, create, Mark::Created(slot))]);
        self.await_answers(sent, SETUP_TIMEOUT_NS);
        if !self.outputs[index].working() || !self.outputs[index].buffers[slot].created {
            // Its failure was said when the answer came.
            return Ok(Vec::new());
        }
        self.map_backend_buffer(index, slot, pages)?;
        Ok(self.send_all(Some(index), &[(0, attach, Mark::Attached(slot))]))
    }

    /// Reads the references the backend wrote into buffer `slot`'s
    /// directory and maps the `pages` they grant.
    fn map_backend_buffer(
        &mut self,
        index: usize,
        slot: usize,
        pages: usize,
    ) -> Result<(), ConnectorError> {
        let backend = self.config.backend_id;
        let buffer = &mut self.outputs[index].buffers[slot];
        let refs = buffer.directory.with_pages(|directory| {
            let mut refs = Vec::with_capacity(pages);
            for page in directory.iter() {
                let want = (pages - refs.len()).min(displif::REFS_PER_DIRECTORY_PAGE);
                let (_, page_refs) = displif::read_directory_page(page, want);
                refs.extend(page_refs);
            }
            refs
        });
        let listed = refs.iter().take_while(|&&gref| gref != 0).count();
        if listed < pages {
            return Err(ConnectorError::BackendBuffer(
                BackendBufferError::ShortDirectory { listed, pages },
            ));
        }
        let mapped = self
            .env
            .map_foreign(backend, &refs)
            .map_err(|error| ConnectorError::BackendBuffer(BackendBufferError::Map(error)))?;
        self.outputs[index].buffers[slot].memory = BufferMemory::Foreign(mapped);
        Ok(())
    }

    /// Renders and flips frames on every healthy connector until all are
    /// done; returns a shutdown request if one came in.
    fn show(&mut self) -> ShowEnd {
        let end = loop {
            if let Some(reason) = self.shutdown.take() {
                break ShowEnd::Shutdown(reason);
            }
            if let Some(gone) = self.gone.take() {
                break ShowEnd::Lost(DeviceError::Gone(gone));
            }
            self.poll_inputs();
            // The rings first: a flip that completed is not held up by the
            // xenstore round trips below.
            let mut busy = false;
            for index in 0..self.outputs.len() {
                busy |= self.step(index);
            }
            if let Some(reason) = self.env.shutdown_requested() {
                break ShowEnd::Shutdown(reason);
            }
            if self
                .backend_watch
                .as_ref()
                .is_some_and(StateWatch::take_change)
            {
                if let Some(gone) = self.backend_gone() {
                    break ShowEnd::Lost(DeviceError::Gone(gone));
                }
            }
            let now = self.env.now_ns();
            match recovery::decide(&mut self.outputs, busy, now) {
                Verdict::Continue => {}
                Verdict::Retry(index) => self.retry(index),
                Verdict::Reconnect(reason) => break ShowEnd::Lost(reason),
                Verdict::Finished => break ShowEnd::Finished,
            }
            self.wait_on(true, self.next_deadline());
        };
        for output in &self.outputs {
            summarize(self.env, output);
        }
        end
    }

    /// Whether the backend left the connection, and how.
    fn backend_gone(&mut self) -> Option<Gone> {
        let config = &self.config;
        self.env
            .with_store(|client| config::backend_gone(client, config))
            .flatten()
    }

    /// When the loop next needs to look without anything coming in.
    fn next_deadline(&self) -> u64 {
        self.outputs
            .iter()
            .filter_map(|output| output.flipper.deadline())
            .chain(
                self.outputs
                    .iter()
                    .filter_map(|output| output.health.retry_at()),
            )
            .chain(
                self.outputs
                    .iter()
                    .filter_map(|output| output.restart.as_ref())
                    .flat_map(|restart| &restart.pending)
                    .map(|request| request.sent_ns + SETUP_TIMEOUT_NS + 1),
            )
            .min()
            .unwrap_or(self.env.now_ns() + 1_000 * NS_PER_MS)
    }

    /// Advances one connector; returns whether it still has work.
    fn step(&mut self, index: usize) -> bool {
        if !self.outputs[index].working() {
            return false;
        }
        if !self.advance_restart(index) {
            return self.outputs[index].working();
        }
        let now = self.env.now_ns();
        let output = &mut self.outputs[index];
        let poll = output
            .flipper
            .poll(&mut output.connector, output.health.name(), now);
        for ignored in output.connector.take_ignored() {
            self.env.log(
                Level::Warn,
                format_args!("display {}: {ignored}", output.health.name()),
            );
        }
        match poll {
            FlipPoll::Failed(error) => {
                fail(self.env, output, error.into());
                return false;
            }
            FlipPoll::Pending => return true,
            FlipPoll::Released { tag, release } => {
                // As Linux's xen-drm-front: the frame counts as shown.
                self.env.log(
                    Level::Warn,
                    format_args!("display {}: {release}", output.health.name()),
                );
                self.shown(index, tag, None, now);
            }
            FlipPoll::Done { tag, round_trip_ns } => {
                self.shown(index, tag, Some(round_trip_ns), now)
            }
            FlipPoll::Idle => {}
        }
        match self.render(index) {
            Some(frame) => {
                self.send_flip(index, frame);
                self.outputs[index].working()
            }
            None => false,
        }
    }

    /// Output `index`'s flip of `shown` completed at `now` (after
    /// `round_trip_ns`; `None` when released without its event): counted,
    /// reported, and the other buffer is the back one.
    fn shown(&mut self, index: usize, shown: A::Shown, round_trip_ns: Option<u64>, now: u64) {
        let output = &mut self.outputs[index];
        if let Some(round_trip_ns) = round_trip_ns {
            let round_trip_us = (round_trip_ns / 1000) as u32;
            if output.round_trips_us.len() < ROUND_TRIP_WINDOW {
                output.round_trips_us.push(round_trip_us);
            } else {
                let slot = output.flips as usize % ROUND_TRIP_WINDOW;
                output.round_trips_us[slot] = round_trip_us;
            }
            output.last_round_trip_us = round_trip_us;
        }
        output.flips += 1;
        output.connection_flips += 1;
        output.health.flipped();
        output.first_flip_ns.get_or_insert(now);
        output.last_flip_ns = now;
        output.back ^= 1;
        let last = output.flipper.next_frame() >= self.app.total_frames();
        self.app.shown(shown, last);
    }

    /// Draws output `index`'s next frame into its back buffer (made first if
    /// it is the second buffer, not made yet); `None` when every frame was
    /// shown or the output failed.
    fn render(&mut self, index: usize) -> Option<Drawn<A::Shown>> {
        let number = self.outputs[index].flipper.next_frame();
        if number >= self.app.total_frames() || self.app.finished() {
            return None;
        }
        if self.outputs[index].back >= self.outputs[index].buffers.len() {
            // The second buffer, once the first frame is shown.
            match self.send_buffer(index) {
                Ok(sent) => {
                    self.await_answers(sent, SETUP_TIMEOUT_NS);
                }
                Err(error) => fail(self.env, &mut self.outputs[index], error),
            }
            if !self.outputs[index].working() || self.interrupted() {
                return None;
            }
        }
        let figures = Figures {
            uptime_ms: self.env.now_ns().saturating_sub(self.start_ns) / NS_PER_MS,
            flips: u64::from(self.outputs[index].flips),
            flip_rtt_us: u64::from(self.outputs[index].last_round_trip_us),
            heap_bytes: self.env.heap_in_use() as u64,
            grants: u64::from(self.env.grants_in_use()),
        };
        let output = &mut self.outputs[index];
        let screen = Screen {
            index: output.config.index,
            name: &output.config.unique_id,
            width: output.config.width,
            height: output.config.height,
            bpp: output.bpp,
        };
        let app = &mut *self.app;
        let Some(buffer) = output.buffers.get_mut(output.back) else {
            fail(self.env, output, ConnectorError::NoBuffers);
            return None;
        };
        let fb_cookie = buffer.fb_cookie;
        let Some(drawn) = buffer.memory.with_pages(|pages| {
            let bytes = pages.as_flattened_mut();
            let (width, height) = (screen.width, screen.height);
            if screen.bpp == 16 {
                Framebuffer::<FormatRgb565>::packed(bytes, width, height).map(|mut target| {
                    app.draw(&screen, number, figures, &mut target.color_converted())
                })
            } else {
                Framebuffer::<FormatXrgb8888>::packed(bytes, width, height)
                    .map(|mut target| app.draw(&screen, number, figures, &mut target))
            }
        }) else {
            fail(self.env, output, ConnectorError::NoBuffers);
            return None;
        };
        match drawn {
            Ok(shown) => Some(Drawn { fb_cookie, shown }),
            Err(error) => {
                fail(self.env, output, ConnectorError::Framebuffer(error));
                None
            }
        }
    }

    /// Sends PG_FLIP for a drawn frame; it is then in flight.
    fn send_flip(&mut self, index: usize, drawn: Drawn<A::Shown>) {
        let now = self.env.now_ns();
        let output = &mut self.outputs[index];
        match output
            .flipper
            .send(&mut output.connector, drawn.fb_cookie, now, drawn.shown)
        {
            Ok(true) => self.env.notify(output.req_port),
            Ok(false) => {}
            Err(error) => fail(self.env, output, error.into()),
        }
    }

    /// Sleeps until an event channel of a connector (only working ones if
    /// `working_only`) or xenstore fires, or `deadline_ns`; then takes in
    /// what xenstore sent.
    /// Hands every input event waiting on the input devices to the
    /// application, with the connector its device names.
    fn poll_inputs(&mut self) {
        let Device {
            env,
            app,
            inputs,
            config,
            ..
        } = self;
        for input in inputs.iter_mut() {
            let connector = input.config().unique_id.as_ref().and_then(|id| {
                config
                    .connectors
                    .iter()
                    .find(|connector| connector.unique_id == *id)
                    .map(|connector| connector.index)
            });
            input.poll(env, |event| app.input(connector, event));
        }
    }

    fn wait_on(&mut self, working_only: bool, deadline_ns: u64) {
        let mut ports = [0u32; 2 * MAX_CONNECTORS + MAX_INPUTS];
        let mut count = 0;
        // A restart may await answers on another connector's ring (connector
        // 0's carries the buffers'): every ring then.
        let working_only = working_only && self.outputs.iter().all(|o| o.restart.is_none());
        for output in &self.outputs {
            if (!working_only || output.working()) && count + 2 <= ports.len() {
                ports[count] = output.req_port;
                ports[count + 1] = output.evt_port;
                count += 2;
            }
        }
        for input in self.inputs.iter().take(MAX_INPUTS) {
            ports[count] = input.port();
            count += 1;
        }
        self.env.wait(&ports[..count], deadline_ns);
        service_store(self.env);
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
            self.shutdown = self.env.shutdown_requested();
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
            if let Some(Err(error)) = self.env.with_store(|client| watch.remove(client)) {
                self.env.log(
                    Level::Warn,
                    format_args!("display: unwatching the backend: {error}"),
                );
            }
        }
    }

    /// Undoes everything: disable, detach, destroy, close the connection
    /// (Closing, then the backend's Closed or InitWait awaited, then
    /// Closed), then end every grant once the backend let go of it.
    fn teardown(&mut self) {
        self.unwatch_backend();
        // Undo on the rings only while the backend is there to answer, in two
        // batches (one round trip each): switch the connectors off, then
        // detach and destroy the buffers on connector 0's ring, in order.
        let working: Vec<bool> = self.outputs.iter().map(Output::working).collect();
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
        let closed = store_call(self.env, Step::Connecting, |client| {
            config::set_state(client, config, XenbusState::Closing)?;
            let node = format!("{}/state", config.backend);
            let _ = xenbus::wait_for_state(
                client,
                &node,
                |state| matches!(state, XenbusState::Closed | XenbusState::InitWait),
                CLOSE_TIMEOUT_NS,
            );
            config::set_state(client, config, XenbusState::Closed)
        });
        if let Err(error) = closed {
            self.env
                .log(Level::Warn, format_args!("display: closing: {error}"));
        }
        let deadline = self.env.now_ns() + RELEASE_TIMEOUT_NS;
        let mut kept = 0usize;
        for output in core::mem::take(&mut self.outputs) {
            kept += release_output(self.env, output, deadline);
        }
        let in_use = self.env.grants_in_use();
        // Each input device holds its page's grant until the end of the run.
        let inputs = self.inputs.len() as u32;
        if kept == 0 {
            let heap = self.env.heap_in_use();
            if in_use == 0 {
                self.env.print(format_args!(
                    "display: all grants returned (0 in use), heap in use {heap} bytes"
                ));
            } else if in_use == inputs {
                self.env.print(format_args!(
                    "display: the connection's grants returned ({in_use} in use, the input \
                     devices' pages), heap in use {heap} bytes"
                ));
            } else {
                self.env.print(format_args!(
                    "display: the connection's grants returned, but {in_use} grants are in \
                     use ({inputs} by input devices), heap in use {heap} bytes"
                ));
            }
        } else {
            self.env.print(format_args!(
                "display: {kept} pages are still mapped by the backend and stay allocated \
                 ({in_use} grants in use)"
            ));
        }
    }
}

/// Why GET_EDID gave no EDID.
enum EdidError {
    NoMemory,
    Grant(GrantError),
    Request(VdisplError),
    Edid(crate::xen::edid::EdidError),
}

impl fmt::Display for EdidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdidError::NoMemory => f.write_str("no memory for the EDID"),
            EdidError::Grant(error) => write!(f, "{error}"),
            EdidError::Request(error) => write!(f, "{error}"),
            EdidError::Edid(error) => write!(f, "{error}"),
        }
    }
}

/// Ends every grant of `output`, retrying until `deadline` while the backend
/// maps them; frees what was released and keeps (leaks) what was not.
/// Returns how many pages are kept.
fn release_output<E: Env, T>(env: &mut E, output: Output<E, T>, deadline: u64) -> usize {
    env.close_channel(output.req_port);
    env.close_channel(output.evt_port);
    let mut kept = 0;
    for buffer in output.buffers {
        kept += release_buffer(env, buffer, deadline);
    }
    if end_all(env, &[output.req_ref, output.evt_ref], deadline) {
        drop(output.connector);
    } else {
        kept += 2;
        let (ring, events) = output.connector.into_pages();
        env.leak_rings(ring, events);
    }
    kept
}

/// Ends the grants of `buffer`, as [`release_output`] does, or unmaps the
/// backend's pages of a backend-allocated one; returns how many of its pages
/// are kept.
fn release_buffer<E: Env>(
    env: &mut E,
    buffer: Buffer<E::Pages, E::Foreign>,
    deadline: u64,
) -> usize {
    let mut kept = 0;
    match buffer.memory {
        BufferMemory::Own(memory) => {
            if end_all(env, &buffer.refs, deadline) {
                drop(memory);
            } else {
                kept += memory.pages();
                env.leak(memory);
            }
        }
        BufferMemory::Foreign(mapped) => {
            let pages = mapped.pages();
            if let Err(error) = env.unmap_foreign(mapped) {
                env.log(
                    Level::Warn,
                    format_args!("display: unmapping the backend's buffer: {error}"),
                );
                kept += pages;
            }
        }
        BufferMemory::Unmapped => {}
    }
    if end_all(env, &buffer.directory_refs, deadline) {
        drop(buffer.directory);
    } else {
        kept += buffer.directory.pages();
        env.leak(buffer.directory);
    }
    kept
}

/// DBUF_CREATE and FB_ATTACH of output `output`'s buffer `slot`, at the
/// output's size and depth.
fn buffer_requests<E: Env, T>(output: &Output<E, T>, slot: usize) -> (Request, Request) {
    let (width, height, bpp) = (output.config.width, output.config.height, output.bpp);
    let buffer = &output.buffers[slot];
    let pixel_format = if bpp == 16 {
        displif::FOURCC_RGB565
    } else {
        displif::FOURCC_XRGB8888
    };
    let create = Request::DbufCreate(DbufCreate {
        dbuf_cookie: buffer.dbuf_cookie,
        width,
        height,
        bpp,
        buffer_sz: displif::stride(width, bpp) * height,
        flags: 0,
        gref_directory: buffer.directory_refs.first().copied().unwrap_or(0),
        data_ofs: 0,
    });
    let attach = Request::FbAttach {
        dbuf_cookie: buffer.dbuf_cookie,
        fb_cookie: buffer.fb_cookie,
        width,
        height,
        pixel_format,
    };
    (create, attach)
}

/// Ends each grant, retrying busy ones until `deadline`; true if all ended.
fn end_all<E: Env>(env: &mut E, refs: &[GrantRef], deadline: u64) -> bool {
    let mut pending: Vec<GrantRef> = refs.to_vec();
    loop {
        pending.retain(|&gref| {
            !matches!(env.end_grant(gref), Ok(()) | Err(GrantError::NotGranted(_)))
        });
        if pending.is_empty() {
            return true;
        }
        let now = env.now_ns();
        if now >= deadline {
            return false;
        }
        env.wait(&[], (now + NS_PER_MS).min(deadline));
    }
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

/// What the summary line adds for a failed connector.
struct FailedSuffix<'a>(Option<&'a ConnectorError>);

impl fmt::Display for FailedSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(reason) => write!(f, " failed: {reason}"),
            None => Ok(()),
        }
    }
}

/// Prints output's summary line for this connection: the frames flipped
/// on it, and the rate from its first flip to its last (the same span).
fn summarize<E: Env, T>(env: &mut E, output: &Output<E, T>) {
    let mut sorted = output.round_trips_us.clone();
    sorted.sort_unstable();
    let frames = output.connection_flips;
    let elapsed_ns = output
        .first_flip_ns
        .map_or(0, |first| output.last_flip_ns.saturating_sub(first));
    let fps_milli = if elapsed_ns > 0 && frames > 1 {
        u64::from(frames - 1) * 1_000_000_000_000 / elapsed_ns
    } else {
        0
    };
    env.print(format_args!(
        "display: summary conn={} {}x{} frames={} fps={}.{:03} rtt_p50_us={} rtt_p99_us={}{}",
        output.config.index,
        output.config.width,
        output.config.height,
        frames,
        fps_milli / 1000,
        fps_milli % 1000,
        percentile(&sorted, 50),
        percentile(&sorted, 99),
        FailedSuffix(output.health.failed())
    ));
}
