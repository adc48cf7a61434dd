//! A fake [`Env`] for host tests of the real frontend ([`super::frontend`]):
//! a fake clock that moves only when the frontend waits, fake grants that
//! count those in use (and refuse to end while the backend maps them), fake
//! event channels, page memory whose frames the backend can read, and a
//! fake xenstored whose other end is a fake display backend
//! ([`FakeDisplayBackend`]) driven through the xenbus states as a Dom0
//! backend does: InitWait, Connected once the frontend is Initialised,
//! Closing, Closed and InitWait again once the frontend closes. Everything
//! the backend does happens in [`Transport::wait`], so it runs during the
//! frontend's xenstore waits as well as its ring waits.

use super::backend::{DirectoryReader, Strictness};
use super::env::{App, Env, Figures, ForeignError, PageMemory, Screen};
use super::fake::{BackendFaults, FakeDisplayBackend};
use super::fault::{FaultHit, FaultState};
use crate::xen::displif::{field, Request};
use crate::xen::error::XenError;
use crate::xen::gnttab::{ForeignMapError, GrantError, GrantRef};
use crate::xen::hypercall::ShutdownReason;
use crate::xen::kbdif::{InputEvent, KbdFrame, KbdPage, RawEvent};
use crate::xen::ring::{EventFrame, EventPage, PageBox, RingPage, SharedRing, Slot};
use crate::xen::xenbus::XenbusState;
use crate::xen::xenstore::client::{Client, Transport};
use crate::xen::xenstore::fake::FakeXenstored;
use crate::xen::xenstore::ring::XenstoreInterface;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::ops::Deref;
use embedded_graphics::draw_target::DrawTarget;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{Point, RgbColor};
use embedded_graphics::Pixel;

/// How far the clock moves when the backend did something in a wait.
const ACTIVITY_NS: u64 = 100_000;
/// The frontend's domain in the fake store.
pub const DOMID: u16 = 3;
/// The device's frontend path (relative).
pub const DEVICE: &str = "device/vdispl/0";
/// The device's backend path.
pub const BACKEND: &str = "/local/domain/0/backend/vdispl/3/0";
/// The input device of the fake domain, when a test adds one.
pub const INPUT_DEVICE: &str = "device/vkbd/0";
/// Its backend's directory.
pub const INPUT_BACKEND: &str = "/local/domain/0/backend/vkbd/3/0";

/// Memory, grants and channels, shared by the env and its backend.
#[derive(Default)]
struct Memory {
    next_frame: u64,
    /// Buffers by first frame.
    buffers: BTreeMap<u64, alloc::rc::Weak<RefCell<Vec<[u8; 4096]>>>>,
    rings: BTreeMap<u64, Rc<PageBox<RingPage>>>,
    inputs: BTreeMap<u64, Rc<PageBox<KbdFrame>>>,
    events: BTreeMap<u64, Rc<PageBox<EventFrame>>>,
    grants: BTreeMap<GrantRef, u64>,
    next_gref: GrantRef,
    /// Pages the backend allocated and granted (`be-alloc`): its grant of
    /// each, to the buffer's pages, their first frame and the page's index.
    backend_grants: BTreeMap<GrantRef, (Storage, u64, usize)>,
    next_backend_gref: GrantRef,
    /// Pages of the backend's the frontend maps now.
    foreign_mapped: usize,
    /// Whether the backend allocates buffers when asked (`be-alloc`).
    backend_allocates: bool,
    /// Pages the frontend holds (its heap, for the accounting lines).
    live_pages: usize,
    next_port: u32,
    open_ports: Vec<u32>,
    notifications: u64,
}

impl Memory {
    fn frames(&mut self, count: usize) -> u64 {
        let first = self.next_frame;
        self.next_frame += count as u64 + 1;
        first
    }

    /// Writes guest frame `frame` (the backend filling a frontend's page).
    fn write_frame(&self, frame: u64, page: &[u8; 4096]) -> bool {
        let Some((&first, pages)) = self.buffers.range(..=frame).next_back() else {
            return false;
        };
        let Some(pages) = pages.upgrade() else {
            return false;
        };
        let mut pages = pages.borrow_mut();
        match pages.get_mut((frame - first) as usize) {
            Some(slot) => {
                *slot = *page;
                true
            }
            None => false,
        }
    }

    /// The contents of guest frame `frame`.
    fn read_frame(&self, frame: u64) -> Option<[u8; 4096]> {
        let (&first, pages) = self.buffers.range(..=frame).next_back()?;
        let pages = pages.upgrade()?;
        let pages = pages.borrow();
        pages.get((frame - first) as usize).copied()
    }
}

type Shared = Rc<RefCell<Memory>>;
/// The pages of one buffer, shared by whoever maps them.
type Storage = Rc<RefCell<Vec<[u8; 4096]>>>;

/// Pages of the fake env: shared with the backend, which reads them by
/// frame number.
pub struct FakePages {
    first_frame: u64,
    pages: Rc<RefCell<Vec<[u8; 4096]>>>,
    memory: Shared,
}

impl PageMemory for FakePages {
    fn pages(&self) -> usize {
        self.pages.borrow().len()
    }

    fn frame(&self, index: usize) -> u64 {
        self.first_frame + index as u64
    }

    fn with_pages<R>(&mut self, f: impl FnOnce(&mut [[u8; 4096]]) -> R) -> R {
        f(&mut self.pages.borrow_mut())
    }
}

impl Drop for FakePages {
    fn drop(&mut self) {
        let count = self.pages.borrow().len();
        let mut memory = self.memory.borrow_mut();
        memory.live_pages -= count;
        memory.buffers.remove(&self.first_frame);
    }
}

/// The backend's pages, mapped by the fake env's frontend.
pub struct FakeForeign {
    first_frame: u64,
    pages: Rc<RefCell<Vec<[u8; 4096]>>>,
    count: usize,
    memory: Shared,
}

impl PageMemory for FakeForeign {
    fn pages(&self) -> usize {
        self.count
    }

    fn frame(&self, index: usize) -> u64 {
        self.first_frame + index as u64
    }

    fn with_pages<R>(&mut self, f: impl FnOnce(&mut [[u8; 4096]]) -> R) -> R {
        f(&mut self.pages.borrow_mut()[..self.count])
    }
}

impl Drop for FakeForeign {
    fn drop(&mut self) {
        self.memory.borrow_mut().foreign_mapped -= self.count;
    }
}

/// A ring or event page of the fake env, which its backend maps too.
pub struct SharedPage<P> {
    page: Rc<PageBox<P>>,
    memory: Shared,
}

impl<P: Deref> Deref for SharedPage<P> {
    type Target = P::Target;
    fn deref(&self) -> &P::Target {
        &self.page
    }
}

impl<P> Drop for SharedPage<P> {
    fn drop(&mut self) {
        self.memory.borrow_mut().live_pages -= 1;
    }
}

/// Reads page directories through the fake grants.
#[derive(Clone)]
pub struct Reader(Shared);

impl DirectoryReader for Reader {
    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]> {
        let memory = self.0.borrow();
        let frame = *memory.grants.get(&gref)?;
        memory.read_frame(frame)
    }

    fn allocate(
        &mut self,
        directory: GrantRef,
        pages: usize,
    ) -> Option<Result<Vec<GrantRef>, String>> {
        let mut memory = self.0.borrow_mut();
        if !memory.backend_allocates {
            return None;
        }
        let first_frame = memory.frames(pages);
        let storage = Rc::new(RefCell::new(vec![[0u8; 4096]; pages]));
        memory.buffers.insert(first_frame, Rc::downgrade(&storage));
        let refs: Vec<GrantRef> = (0..pages as u32)
            .map(|index| memory.next_backend_gref + index)
            .collect();
        memory.next_backend_gref += pages as u32 + 1;
        for (index, &gref) in refs.iter().enumerate() {
            memory
                .backend_grants
                .insert(gref, (Rc::clone(&storage), first_frame, index));
        }
        // The grants go into the frontend's directory, whose pages it chained.
        let mut next = directory;
        let mut chunks = refs.chunks(crate::xen::displif::REFS_PER_DIRECTORY_PAGE);
        let mut written = 0;
        while written < pages {
            let Some(&frame) = memory.grants.get(&next) else {
                return Some(Err(format!("directory page grant {next} cannot be mapped")));
            };
            let Some(mut page) = memory.read_frame(frame) else {
                return Some(Err(format!("directory page grant {next} cannot be mapped")));
            };
            let chunk = chunks.next().unwrap_or(&[]);
            let link = u32::from_le_bytes([page[0], page[1], page[2], page[3]]);
            crate::xen::displif::write_directory_page(&mut page, link, chunk);
            memory.write_frame(frame, &page);
            written += chunk.len();
            next = link;
            if written < pages && next == 0 {
                return Some(Err(format!(
                    "the directory ends after {written} of {pages} pages"
                )));
            }
        }
        Some(Ok(refs))
    }

    fn free(&mut self, refs: &[GrantRef]) {
        let mut memory = self.0.borrow_mut();
        for gref in refs {
            memory.backend_grants.remove(gref);
        }
    }
}

/// How the fake backend behaves in the xenbus handshake and at close.
#[derive(Clone, Debug, Default)]
pub struct XenbusBehaviour {
    /// Goes to this state instead of Connected when the frontend is
    /// Initialised.
    pub refuse_with: Option<XenbusState>,
    /// From Closing until it unmapped and wrote Closed (libxenbe's order).
    pub release_delay_ns: u64,
}

/// How the fake backend's rules and events differ from the default.
#[derive(Clone, Debug, Default)]
pub struct BackendRules {
    /// The rules its model applies on every connection (a strict backend
    /// refuses 16 bpp buffers and modes outside its list).
    pub strictness: Strictness,
    /// An event put on a connector's event page as the first connection
    /// starts, before any of the backend's own: (connector, packet).
    pub first_event: Option<(usize, Slot)>,
}

/// What one connection of the fake backend saw.
#[derive(Debug, Default)]
pub struct Served {
    /// Requests taken, with their connector.
    pub requests: Vec<(usize, Request)>,
    /// Flips shown, with their connector.
    pub flips: Vec<(usize, u64)>,
    /// Faults that hit, with their connector and time.
    pub hits: Vec<(usize, FaultHit, u64)>,
    /// Requests taken when the first fault hit.
    pub requests_at_first_hit: usize,
    /// Flips shown when the first fault hit.
    pub flips_at_first_hit: usize,
    /// Display buffers and framebuffers left when it closed.
    pub left_over: (usize, usize),
    /// When the backend connected.
    pub connected_ns: u64,
    /// When it let go.
    pub closed_ns: u64,
}

impl Served {
    /// Flips shown on connector `index`.
    pub fn flips_on(&self, index: usize) -> usize {
        self.flips.iter().filter(|(at, _)| *at == index).count()
    }

    /// Requests taken on connector `index` after the first fault.
    pub fn requests_after_fault(&self, index: usize) -> Vec<Request> {
        self.requests[self.requests_at_first_hit..]
            .iter()
            .filter(|(at, _)| *at == index)
            .map(|(_, request)| *request)
            .collect()
    }

    /// Flips shown on connector `index` after the first fault.
    pub fn flips_after_fault(&self, index: usize) -> usize {
        self.flips[self.flips_at_first_hit..]
            .iter()
            .filter(|(at, _)| *at == index)
            .count()
    }
}

/// The input backend of the fake world: connects when the frontend is
/// Initialised (mapping the page its `page-gref` names), then puts the
/// scripted events on the page as their time comes.
#[derive(Default)]
pub struct FakeInput {
    /// Raw events and the time (ns) from which each may go out, in order
    /// (raw, so that tests can send what no good backend would).
    pub script: alloc::collections::VecDeque<(u64, RawEvent)>,
    /// After this many events went out, the producer index is pushed this
    /// far past the ring (a hostile backend's overrun), once.
    pub overrun_after: Option<(usize, u32)>,
    /// Events put on the page.
    pub pushed: usize,
    /// Connections made.
    pub connections: usize,
    page: Option<Rc<PageBox<KbdFrame>>>,
}

enum Phase {
    /// At InitWait, waiting for the frontend.
    Waiting,
    /// Serving the rings.
    Connected(Box<FakeDisplayBackend<'static, Reader>>, Vec<GrantRef>),
    /// Closing: unmaps and writes Closed at the time given.
    Closing(u64),
}

/// The other side of everything: xenstored, and the display backend behind
/// it. The transport of the env's xenstore client.
pub struct FakeWorld {
    /// The fake xenstored.
    pub xenstored: FakeXenstored,
    memory: Shared,
    phase: Phase,
    /// The backend's misbehaviours on every connection.
    pub faults: BackendFaults,
    /// The `--fault` misbehaviour, carried from one connection to the next.
    pub fault: Option<FaultState>,
    /// Its xenbus behaviour.
    pub xenbus: XenbusBehaviour,
    /// Its rules and extra events.
    pub rules: BackendRules,
    /// What each connection saw.
    pub served: Vec<Served>,
    /// Grants the backend maps now.
    mapped: Vec<GrantRef>,
    /// Attempts to end a grant while the backend mapped it.
    pub ended_while_mapped: Cell<usize>,
    /// The backend states written, in order, with their time.
    pub backend_states: Vec<(u64, XenbusState)>,
    /// The input backend.
    pub input: FakeInput,
}

impl FakeWorld {
    fn state_of(&self, node: &str) -> Option<XenbusState> {
        XenbusState::parse(self.xenstored.get(node)?)
    }

    fn set_backend_state(&mut self, state: XenbusState) {
        let now = self.xenstored.now_ns();
        self.backend_states.push((now, state));
        let value = (state as u32).to_string();
        self.xenstored
            .set(&format!("{BACKEND}/state"), value.as_bytes());
    }

    /// The input backend's xenbus side, then its script; whether it did
    /// anything.
    fn step_input(&mut self) -> bool {
        let back_node = format!("{INPUT_BACKEND}/state");
        let Some(back) = self.state_of(&back_node) else {
            return false;
        };
        let front = self.state_of(&format!("{INPUT_DEVICE}/state"));
        let set = |world: &mut FakeWorld, state: XenbusState| {
            let value = (state as u32).to_string();
            world.xenstored.set(&back_node, value.as_bytes());
        };
        if self.input.page.is_none() {
            if front == Some(XenbusState::Initialised) && back == XenbusState::InitWait {
                let gref = self
                    .xenstored
                    .get(&format!("{INPUT_DEVICE}/page-gref"))
                    .and_then(|value| core::str::from_utf8(value).ok()?.trim().parse().ok());
                let memory = self.memory.borrow();
                let page = gref
                    .and_then(|gref: GrantRef| memory.grants.get(&gref))
                    .and_then(|frame| memory.inputs.get(frame))
                    .cloned();
                drop(memory);
                if let Some(page) = page {
                    self.input.page = Some(page);
                    self.input.connections += 1;
                    set(self, XenbusState::Connected);
                    return true;
                }
            }
            return false;
        }
        if matches!(
            front,
            Some(XenbusState::Closing | XenbusState::Closed) | None
        ) {
            self.input.page = None;
            set(self, XenbusState::Closed);
            return true;
        }
        let now = self.xenstored.now_ns();
        let mut pushed = false;
        while let Some(&(at, raw)) = self.input.script.front() {
            let Some(page) = &self.input.page else { break };
            if at > now || page.push_event(&raw).is_err() {
                break;
            }
            self.input.script.pop_front();
            self.input.pushed += 1;
            pushed = true;
            if let Some((after, ahead)) = self.input.overrun_after {
                if self.input.pushed == after {
                    let producer = page.producer_index();
                    page.force_in_prod(producer.wrapping_add(ahead));
                    self.input.overrun_after = None;
                }
            }
        }
        pushed
    }

    /// The frontend's grant `node` under connector `index`.
    fn published(&self, index: usize, node: &str) -> Option<u32> {
        let value = self.xenstored.get(&format!("{DEVICE}/{index}/{node}"))?;
        core::str::from_utf8(value).ok()?.trim().parse().ok()
    }

    /// The xenbus side of the backend, then its rings; whether it did
    /// anything.
    fn step_backend(&mut self) -> bool {
        let now = self.xenstored.now_ns();
        let front = self.state_of(&format!("{DEVICE}/state"));
        match &self.phase {
            Phase::Waiting => {
                let back = self.state_of(&format!("{BACKEND}/state"));
                let front_closed = matches!(
                    front,
                    Some(XenbusState::Closing | XenbusState::Closed | XenbusState::Initialising)
                );
                if front_closed && back == Some(XenbusState::Closing) {
                    self.set_backend_state(XenbusState::Closed);
                    return true;
                }
                if front_closed
                    && front != Some(XenbusState::Closing)
                    && back == Some(XenbusState::Closed)
                {
                    // The frontend closed too: offer a new connection.
                    self.set_backend_state(XenbusState::InitWait);
                    return true;
                }
                if front != Some(XenbusState::Initialised) {
                    return false;
                }
                if let Some(state) = self.xenbus.refuse_with {
                    if self.state_of(&format!("{BACKEND}/state")) != Some(state) {
                        self.set_backend_state(state);
                        return true;
                    }
                    return false;
                }
                if !self.connect() {
                    return false;
                }
                self.set_backend_state(XenbusState::Connected);
            }
            Phase::Connected(backend, _) => {
                if backend.left {
                    self.disconnect();
                    self.set_backend_state(XenbusState::InitWait);
                    return true;
                }
                if matches!(
                    front,
                    Some(XenbusState::Closing | XenbusState::Closed | XenbusState::Initialising)
                ) {
                    // libxenbe's order: Closing, unmap, Closed, InitWait.
                    let mapped = core::mem::take(&mut self.mapped);
                    self.disconnect();
                    self.mapped = mapped;
                    self.set_backend_state(XenbusState::Closing);
                    self.phase = Phase::Closing(now + self.xenbus.release_delay_ns);
                    return true;
                }
            }
            Phase::Closing(at) => {
                if now < *at {
                    return false;
                }
                self.phase = Phase::Waiting;
                self.mapped.clear();
                self.set_backend_state(XenbusState::Closed);
                self.set_backend_state(XenbusState::InitWait);
                return true;
            }
        }
        let Phase::Connected(backend, rings) = &mut self.phase else {
            return true;
        };
        backend.now_ns = now;
        let hits = backend.fault_hits.len();
        let flips = backend.flips.len();
        let requests = backend.requests.len();
        let held = backend.held();
        let answered = backend.step().unwrap_or(0);
        let active = answered > 0 || backend.held() < held;
        let served = self.served.last_mut().expect("a connection");
        for &(index, hit) in &backend.fault_hits[hits..] {
            if served.hits.is_empty() {
                // Up to the hit request, the last its ring took.
                served.requests_at_first_hit = backend.requests[requests..]
                    .iter()
                    .rposition(|(at, _)| *at == index)
                    .map_or(backend.requests.len(), |hit| requests + hit + 1);
                served.flips_at_first_hit = flips;
            }
            served.hits.push((index, hit, now));
        }
        self.mapped.clear();
        self.mapped.extend(rings.iter().copied());
        for buffer in backend.model.buffers.values() {
            self.mapped.extend(buffer.refs.iter().copied());
        }
        active
    }

    /// Maps the published rings and starts serving them.
    fn connect(&mut self) -> bool {
        let memory = self.memory.borrow();
        let mut pages: Vec<(&'static SharedRing, &'static EventPage)> = Vec::new();
        let mut refs = Vec::new();
        for index in 0.. {
            let (Some(req), Some(evt)) = (
                self.published(index, field::REQ_RING_REF),
                self.published(index, field::EVT_RING_REF),
            ) else {
                break;
            };
            let ring = memory
                .grants
                .get(&req)
                .and_then(|frame| memory.rings.get(frame));
            let events = memory
                .grants
                .get(&evt)
                .and_then(|frame| memory.events.get(frame));
            let (Some(ring), Some(events)) = (ring, events) else {
                return false;
            };
            // The backend's mapping outlives the frontend's page: leaked.
            let ring: &'static PageBox<RingPage> = Box::leak(Box::new(Rc::clone(ring)));
            let events: &'static PageBox<EventFrame> = Box::leak(Box::new(Rc::clone(events)));
            pages.push((ring, events));
            refs.extend([req, evt]);
        }
        drop(memory);
        let Some(&(ring, events)) = pages.first() else {
            return false;
        };
        let mut backend = FakeDisplayBackend::new(ring, events, Reader(Rc::clone(&self.memory)));
        for &(ring, events) in &pages[1..] {
            backend.add_connector(ring, events);
        }
        backend.model.strictness = self.rules.strictness.clone();
        if let Some((index, slot)) = self.rules.first_event.take() {
            if let Some((_, events)) = pages.get(index) {
                let _ = events.push_event(&slot);
            }
        }
        backend.faults = self.faults.clone();
        backend.fault = self.fault.take();
        backend.now_ns = self.xenstored.now_ns();
        self.served.push(Served {
            connected_ns: self.xenstored.now_ns(),
            ..Served::default()
        });
        self.mapped = refs.clone();
        self.phase = Phase::Connected(Box::new(backend), refs);
        true
    }

    /// Lets go of the connection, recording what it saw.
    fn disconnect(&mut self) {
        let phase = core::mem::replace(&mut self.phase, Phase::Waiting);
        if let Phase::Connected(mut backend, _) = phase {
            let served = self.served.last_mut().expect("a connection");
            served.requests = core::mem::take(&mut backend.requests);
            served.flips = core::mem::take(&mut backend.flips);
            served.left_over = (
                backend.model.buffers.len(),
                backend.model.framebuffers.len(),
            );
            // A backend lets go of the buffers it allocated when the
            // connection ends (the frontend has unmapped them by then).
            let mut memory = self.memory.borrow_mut();
            for buffer in backend.model.buffers.values() {
                if buffer.backend_allocated {
                    for gref in &buffer.refs {
                        memory.backend_grants.remove(gref);
                    }
                }
            }
            drop(memory);
            served.closed_ns = self.xenstored.now_ns();
            self.fault = backend.fault.take();
        }
        self.mapped.clear();
    }

    /// The backend serving now, if connected.
    pub fn backend(&self) -> Option<&FakeDisplayBackend<'static, Reader>> {
        match &self.phase {
            Phase::Connected(backend, _) => Some(backend),
            _ => None,
        }
    }

    fn next_due(&self) -> Option<u64> {
        match &self.phase {
            Phase::Connected(backend, _) => backend.next_due(),
            Phase::Closing(at) => Some(*at),
            Phase::Waiting => None,
        }
    }
}

impl Transport for FakeWorld {
    fn interface(&self) -> &XenstoreInterface {
        self.xenstored.interface()
    }

    fn notify(&mut self) {
        self.xenstored.notify();
    }

    fn wait(&mut self, deadline_ns: u64) {
        let active = self.step_backend() | self.step_input();
        let now = self.xenstored.now_ns();
        let mut wake = deadline_ns.max(now + 1_000);
        if active {
            wake = wake.min(now + ACTIVITY_NS);
        }
        if let Some(due) = self.next_due() {
            wake = wake.min(due.max(now + 1_000));
        }
        if let Some(&(at, _)) = self.input.script.front() {
            if self.input.page.is_some() {
                wake = wake.min(at.max(now + 1_000));
            }
        }
        self.xenstored.wait(wake);
        // What fell due meanwhile goes out before the frontend looks.
        self.step_backend();
        self.step_input();
    }

    fn now_ns(&self) -> u64 {
        self.xenstored.now_ns()
    }
}

/// The fake env: see the module documentation.
pub struct FakeEnv {
    /// The xenstore client, whose transport is the rest of the world.
    pub client: Client<FakeWorld>,
    memory: Shared,
    /// Console lines printed.
    pub lines: Vec<String>,
    /// Lines logged, with their level.
    pub logs: Vec<(log::Level, String)>,
    /// A shutdown the toolstack asks for at this time.
    pub shutdown_at: Option<(u64, ShutdownReason)>,
    /// References the grant table can hand out at most, as a domain at its
    /// `max_grant_frames` (None: no limit).
    pub grant_limit: Option<u32>,
    /// Pages the heap holds at most (None: no limit).
    pub page_limit: Option<usize>,
    /// Pages the window for foreign pages holds (None: no limit).
    pub foreign_window: Option<usize>,
    /// Fails resource calls (pages, grants, event channels) number
    /// `first..first + count`, counting from 1 (see [`FakeEnv::resource_calls`]).
    pub fail_calls: Option<(u32, u32)>,
    /// Resource calls made so far.
    pub resource_calls: u32,
}

impl FakeEnv {
    /// Device 0 of domain 3 with `connectors` (resolution, unique-id), its
    /// backend at InitWait offering versions 1 and 2.
    pub fn new(connectors: &[(&str, &str)]) -> FakeEnv {
        let mut store = FakeXenstored::with_domid(DOMID);
        store.set(&format!("{DEVICE}/backend"), BACKEND.as_bytes());
        store.set(&format!("{DEVICE}/backend-id"), b"0");
        store.set(&format!("{DEVICE}/state"), b"1");
        store.set(&format!("{DEVICE}/be-alloc"), b"0");
        for (index, (resolution, unique_id)) in connectors.iter().enumerate() {
            store.set(
                &format!("{DEVICE}/{index}/resolution"),
                resolution.as_bytes(),
            );
            store.set(&format!("{DEVICE}/{index}/unique-id"), unique_id.as_bytes());
        }
        store.set(&format!("{BACKEND}/state"), b"2");
        store.set(&format!("{BACKEND}/versions"), b"1,2");
        let memory = Shared::default();
        memory.borrow_mut().next_gref = 8;
        memory.borrow_mut().next_backend_gref = 0x10_0000;
        memory.borrow_mut().next_port = 10;
        memory.borrow_mut().next_frame = 0x1000;
        let world = FakeWorld {
            xenstored: store,
            memory: Rc::clone(&memory),
            phase: Phase::Waiting,
            faults: BackendFaults::default(),
            fault: None,
            xenbus: XenbusBehaviour::default(),
            rules: BackendRules::default(),
            served: Vec::new(),
            mapped: Vec::new(),
            ended_while_mapped: Cell::new(0),
            backend_states: Vec::new(),
            input: FakeInput::default(),
        };
        FakeEnv {
            client: Client::new(world),
            memory,
            lines: Vec::new(),
            logs: Vec::new(),
            shutdown_at: None,
            grant_limit: None,
            page_limit: None,
            foreign_window: None,
            fail_calls: None,
            resource_calls: 0,
        }
    }

    /// The world behind the store.
    pub fn world(&mut self) -> &mut FakeWorld {
        self.client.transport_mut()
    }

    /// Ends the last connection's record (call after the run).
    pub fn finish(&mut self) {
        let world = self.client.transport_mut();
        if matches!(world.phase, Phase::Connected(..)) {
            world.disconnect();
        }
    }

    /// Lines logged at `level`.
    pub fn logged(&self, level: log::Level) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|(at, _)| *at == level)
            .map(|(_, line)| line.as_str())
            .collect()
    }

    /// Adds input device 0 with its backend at InitWait offering `nodes`
    /// (features and limits, `unique-id`).
    pub fn add_input(&mut self, nodes: &[(&str, &str)]) {
        let store = &mut self.world().xenstored;
        store.set(&format!("{INPUT_DEVICE}/backend"), INPUT_BACKEND.as_bytes());
        store.set(&format!("{INPUT_DEVICE}/backend-id"), b"0");
        store.set(&format!("{INPUT_DEVICE}/state"), b"1");
        for (name, value) in nodes {
            store.set(&format!("{INPUT_BACKEND}/{name}"), value.as_bytes());
        }
        store.set(&format!("{INPUT_BACKEND}/state"), b"2");
    }

    /// Counts a resource call; whether [`FakeEnv::fail_calls`] fails it.
    fn fails_now(&mut self) -> bool {
        self.resource_calls += 1;
        self.fail_calls.is_some_and(|(first, count)| {
            (first..first.saturating_add(count)).contains(&self.resource_calls)
        })
    }

    /// A new page of the kind `pages` keeps, shared with the backend, and
    /// its frame; `None` when a failure is scripted or memory is short.
    fn shared_page<P>(
        &mut self,
        new: fn() -> PageBox<P>,
        pages: fn(&mut Memory) -> &mut BTreeMap<u64, Rc<PageBox<P>>>,
    ) -> Option<(SharedPage<P>, u64)> {
        if self.fails_now() || !self.pages_fit(1) {
            return None;
        }
        let mut memory = self.memory.borrow_mut();
        let frame = memory.frames(1);
        let page = Rc::new(new());
        pages(&mut memory).insert(frame, Rc::clone(&page));
        memory.live_pages += 1;
        drop(memory);
        let memory = Rc::clone(&self.memory);
        Some((SharedPage { page, memory }, frame))
    }

    /// Whether `count` more pages fit under [`FakeEnv::page_limit`].
    fn pages_fit(&self, count: usize) -> bool {
        self.page_limit
            .is_none_or(|limit| self.memory.borrow().live_pages + count <= limit)
    }

    /// Makes the backend allocate buffers when asked, and writes
    /// `be-alloc = 1` for the frontend.
    pub fn backend_allocates(&mut self) {
        self.memory.borrow_mut().backend_allocates = true;
        self.world()
            .xenstored
            .set(&format!("{DEVICE}/be-alloc"), b"1");
    }

    /// Pages the backend allocated and still holds, and pages of them the
    /// frontend maps.
    pub fn backend_pages(&self) -> (usize, usize) {
        let memory = self.memory.borrow();
        (memory.backend_grants.len(), memory.foreign_mapped)
    }

    /// Event channels open.
    pub fn open_channels(&self) -> usize {
        self.memory.borrow().open_ports.len()
    }
}

impl Env for FakeEnv {
    type Transport = FakeWorld;
    type Ring = SharedPage<RingPage>;
    type Events = SharedPage<EventFrame>;
    type Pages = FakePages;
    type Input = SharedPage<KbdFrame>;
    type Foreign = FakeForeign;

    fn now_ns(&self) -> u64 {
        self.client.now_ns()
    }

    fn wait(&mut self, _ports: &[u32], deadline_ns: u64) {
        self.client.transport_mut().wait(deadline_ns);
    }

    fn with_store<R>(&mut self, f: impl FnOnce(&mut Client<FakeWorld>) -> R) -> Option<R> {
        Some(f(&mut self.client))
    }

    fn grant(&mut self, _domid: u16, frame: u64) -> Result<GrantRef, GrantError> {
        if self.fails_now() {
            let capacity = self.memory.borrow().grants.len() as u32;
            return Err(GrantError::Exhausted {
                capacity,
                frames: (capacity + 8).div_ceil(512),
            });
        }
        let mut memory = self.memory.borrow_mut();
        if let Some(limit) = self.grant_limit {
            if memory.grants.len() as u32 >= limit {
                return Err(GrantError::Exhausted {
                    capacity: limit,
                    frames: (limit + 8).div_ceil(512),
                });
            }
        }
        memory.next_gref += 1;
        let gref = memory.next_gref;
        memory.grants.insert(gref, frame);
        Ok(gref)
    }

    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        if self.client.transport().mapped.contains(&gref) {
            let world = self.client.transport();
            world
                .ended_while_mapped
                .set(world.ended_while_mapped.get() + 1);
            return Err(GrantError::InUse(gref));
        }
        match self.memory.borrow_mut().grants.remove(&gref) {
            Some(_) => Ok(()),
            None => Err(GrantError::NotGranted(gref)),
        }
    }

    fn grants_in_use(&mut self) -> u32 {
        self.memory.borrow().grants.len() as u32
    }

    fn open_channel(&mut self, remote: u16) -> Result<u32, XenError> {
        if self.fails_now() {
            return Err(XenError::NoSpace);
        }
        // Domain 0 runs the backend; no other domain exists.
        if remote != 0 {
            return Err(XenError::NoSuchObject);
        }
        let mut memory = self.memory.borrow_mut();
        memory.next_port += 1;
        let port = memory.next_port;
        memory.open_ports.push(port);
        Ok(port)
    }

    fn notify(&mut self, _port: u32) {
        self.memory.borrow_mut().notifications += 1;
    }

    fn close_channel(&mut self, port: u32) {
        self.memory
            .borrow_mut()
            .open_ports
            .retain(|&open| open != port);
    }

    fn ring_page(&mut self) -> Option<(Self::Ring, u64)> {
        self.shared_page(RingPage::new_boxed, |memory| &mut memory.rings)
    }

    fn event_page(&mut self) -> Option<(Self::Events, u64)> {
        self.shared_page(EventFrame::new_boxed, |memory| &mut memory.events)
    }

    fn input_page(&mut self) -> Option<(Self::Input, u64)> {
        self.shared_page(KbdPage::new_boxed, |memory| &mut memory.inputs)
    }

    fn map_foreign(&mut self, domid: u16, refs: &[GrantRef]) -> Result<FakeForeign, ForeignError> {
        let mut memory = self.memory.borrow_mut();
        if let Some(window) = self.foreign_window {
            let free = window.saturating_sub(memory.foreign_mapped);
            if refs.len() > free {
                return Err(ForeignError::Window {
                    pages: refs.len(),
                    free,
                });
            }
        }
        let refused = |index: usize, gref: GrantRef, status: i16| {
            ForeignError::Map(ForeignMapError::Status {
                index,
                gref,
                status,
            })
        };
        let mut first = None;
        for (index, &gref) in refs.iter().enumerate() {
            if domid != 0 {
                return Err(refused(index, gref, -2));
            }
            let Some((storage, frame, at)) = memory.backend_grants.get(&gref) else {
                return Err(refused(index, gref, -4));
            };
            // One buffer's pages, in order: what the fake backend hands out.
            let (_, _, _, start) = *first.get_or_insert((Rc::clone(storage), *frame, *at, *at));
            if *at != start + index {
                return Err(refused(index, gref, -1));
            }
        }
        let Some((pages, first_frame, _, _)) = first else {
            return Err(ForeignError::Window { pages: 0, free: 0 });
        };
        memory.foreign_mapped += refs.len();
        Ok(FakeForeign {
            first_frame,
            pages,
            count: refs.len(),
            memory: Rc::clone(&self.memory),
        })
    }

    fn foreign_in_use(&mut self) -> usize {
        self.memory.borrow().foreign_mapped
    }

    fn unmap_foreign(&mut self, pages: FakeForeign) -> Result<(), ForeignError> {
        drop(pages);
        Ok(())
    }

    fn pages(&mut self, count: usize) -> Option<FakePages> {
        if self.fails_now() || !self.pages_fit(count) {
            return None;
        }
        let mut memory = self.memory.borrow_mut();
        let first_frame = memory.frames(count);
        let pages = Rc::new(RefCell::new(vec![[0u8; 4096]; count]));
        memory.buffers.insert(first_frame, Rc::downgrade(&pages));
        memory.live_pages += count;
        drop(memory);
        Some(FakePages {
            first_frame,
            pages,
            memory: Rc::clone(&self.memory),
        })
    }

    fn heap_in_use(&mut self) -> usize {
        self.memory.borrow().live_pages * 4096
    }

    fn heap_free(&mut self) -> usize {
        let used = self.memory.borrow().live_pages;
        self.page_limit
            .map_or(usize::MAX, |limit| limit.saturating_sub(used) * 4096)
    }

    fn shutdown_requested(&mut self) -> Option<ShutdownReason> {
        match self.shutdown_at {
            Some((at, reason)) if self.now_ns() >= at => {
                self.shutdown_at = None;
                Some(reason)
            }
            _ => None,
        }
    }

    fn print(&mut self, line: fmt::Arguments<'_>) {
        self.lines.push(format!("{line}"));
    }

    fn log(&mut self, level: log::Level, line: fmt::Arguments<'_>) {
        self.logs.push((level, format!("{line}")));
    }
}

/// A frame drawn, as the fake app keeps it until shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeFrame {
    /// The connector's index.
    pub connector: u32,
    /// The frame's number.
    pub number: u64,
    /// The depth it was drawn at.
    pub bpp: u32,
}

/// An app that shows `frames` frames per connector, drawing one pixel each,
/// and records what was shown.
#[derive(Debug, Default)]
pub struct FakeApp {
    /// Frames per connector.
    pub frames: u64,
    /// Frames shown per connector index, in order.
    pub shown: BTreeMap<u32, Vec<u64>>,
    /// The depths frames were drawn at, per connector index.
    pub depths: BTreeMap<u32, Vec<u32>>,
    /// Input events taken, with their connector, in order.
    pub inputs: Vec<(Option<u32>, InputEvent)>,
    /// Whether it stopped: Escape (`KEY_ESC`, 1) was pressed.
    pub stopped: bool,
}

impl App for FakeApp {
    type Shown = FakeFrame;

    fn total_frames(&self) -> u64 {
        self.frames
    }

    fn draw<D: DrawTarget<Color = Rgb888>>(
        &mut self,
        screen: &Screen<'_>,
        number: u64,
        _figures: Figures,
        target: &mut D,
    ) -> FakeFrame {
        let _ = target.draw_iter([Pixel(Point::new(0, 0), Rgb888::WHITE)]);
        FakeFrame {
            connector: screen.index,
            number,
            bpp: screen.bpp,
        }
    }

    fn shown(&mut self, shown: FakeFrame, _last: bool) {
        self.shown
            .entry(shown.connector)
            .or_default()
            .push(shown.number);
        self.depths
            .entry(shown.connector)
            .or_default()
            .push(shown.bpp);
    }

    fn input(&mut self, connector: Option<u32>, event: InputEvent) {
        if let InputEvent::Key {
            pressed: true,
            keycode,
        } = event
        {
            self.stopped |= keycode == 1;
        }
        self.inputs.push((connector, event));
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

/// Frames shown by `app` on connector `index`.
pub fn shown(app: &FakeApp, index: u32) -> Vec<u64> {
    app.shown.get(&index).cloned().unwrap_or_default()
}
