//! A fake display backend for host tests: it plays the backend's side of a
//! device's connectors (each a request ring and an event page) on in-memory
//! pages through the ring loop the Dom0 backend uses too
//! ([`ServedConnector`]), applies requests through [`BackendModel`] (the Dom0
//! backend's rules, one model per device as DBUF_* and FB_* travel on
//! connector 0's ring), and can be told to misbehave: the Dom0 backend's
//! `--fault` modes through [`FaultState`], and blunter ones
//! ([`BackendFaults`]): a mode that hits every request, and a slow backend
//! whose PG_FLIP responses or EVT_PG_FLIP events come late. Time is the
//! test's: [`FakeDisplayBackend::now_ns`], set before each
//! [`FakeDisplayBackend::step`], decides what is due.

use super::backend::{BackendModel, DirectoryReader, Effect};
use super::connector::Wait;
use super::fault::{FaultHit, FaultMode, FaultState};
use super::server::{Channel, Outgoing, ServeHost, ServedConnector};
use crate::xen::displif::{Event, Operation, Request, Response};
use crate::xen::ring::{EventPage, RingError, SharedRing, Slot};
use alloc::vec::Vec;

/// Blunt misbehaviours, all off by default, hitting every connector.
#[derive(Clone, Debug, Default)]
pub struct BackendFaults {
    /// A `--fault` mode that hits every request of this operation (of
    /// every operation for `None`), for as long as it is set; such hits
    /// are not recorded in [`FakeDisplayBackend::fault_hits`].
    pub every: Option<(FaultMode, Option<Operation>)>,
    /// Sends no EVT_PG_FLIP.
    pub no_events: bool,
    /// Sends each PG_FLIP response this long after taking the request
    /// (responses keep their order; other requests are not delayed but
    /// wait behind a delayed response on the same ring).
    pub response_delay_ns: u64,
    /// Sends each EVT_PG_FLIP this long after the flip's response (events
    /// keep their order).
    pub event_delay_ns: u64,
    /// The connector the delays hit; all of them if `None`.
    pub delayed_connector: Option<usize>,
}

impl BackendFaults {
    /// The hit of [`BackendFaults::every`] on the request in `slot`, if it
    /// is one of the operation's.
    fn every_hit(&self, slot: &Slot) -> Option<FaultHit> {
        let (mode, operation) = self.every?;
        if operation.is_some_and(|operation| operation as u8 != slot[2]) {
            return None;
        }
        Some(FaultHit {
            mode,
            id: u16::from_le_bytes([slot[0], slot[1]]),
            operation: slot[2],
            left: u32::MAX,
        })
    }

    /// Whether the delays hit connector `index`.
    fn delays(&self, index: usize) -> bool {
        self.delayed_connector
            .is_none_or(|delayed| delayed == index)
    }
}

/// The backend side of one device's connectors, for one connection.
pub struct FakeDisplayBackend<'a, R: DirectoryReader> {
    connectors: Vec<ServedConnector<&'a SharedRing, &'a EventPage>>,
    /// The objects the frontend created.
    pub model: BackendModel,
    reader: R,
    /// Blunt misbehaviours.
    pub faults: BackendFaults,
    /// The `--fault` misbehaviour and how far it got (move it to the
    /// backend of the next connection to carry on with it).
    pub fault: Option<FaultState>,
    /// The requests faults hit, with their connector, in order.
    pub fault_hits: Vec<(usize, FaultHit)>,
    /// Whether a `state-back` fault let go of the device: nothing more is
    /// served; the backend's state is to go back to InitWait.
    pub left: bool,
    /// Framebuffers flipped, in order, with their connector.
    pub flips: Vec<(usize, u64)>,
    /// Requests taken, decoded, with their connector.
    pub requests: Vec<(usize, Request)>,
    /// EVT_PG_FLIP events that did not fit in the event page.
    pub events_lost: u32,
    /// The clock: what is due by it is sent on the next step.
    pub now_ns: u64,
}

/// The fake's [`ServeHost`]: everything of the backend but its connectors.
struct FakeHost<'h, R: DirectoryReader> {
    model: &'h mut BackendModel,
    reader: &'h mut R,
    faults: &'h BackendFaults,
    fault: &'h mut Option<FaultState>,
    fault_hits: &'h mut Vec<(usize, FaultHit)>,
    flips: &'h mut Vec<(usize, u64)>,
    requests: &'h mut Vec<(usize, Request)>,
    events_lost: &'h mut u32,
    now_ns: u64,
}

impl<R: DirectoryReader> ServeHost for FakeHost<'_, R> {
    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn fault(&mut self, index: usize, slot: &Slot) -> Option<FaultHit> {
        if let Ok((_, request)) = Request::decode(slot) {
            self.requests.push((index, request));
        }
        if let Some(hit) = self.fault.as_mut().and_then(|state| state.hit(index, slot)) {
            self.fault_hits.push((index, hit));
            return Some(hit);
        }
        self.faults.every_hit(slot)
    }

    fn answer(&mut self, index: usize, slot: &Slot) -> (Response, Option<u64>) {
        let (response, effect) = self.model.handle_on(index, slot, &mut *self.reader);
        match effect {
            Effect::Flipped(fb_cookie) => (response, Some(fb_cookie)),
            _ => (response, None),
        }
    }

    fn response_due(&self, index: usize, slot: &Slot, now_ns: u64) -> u64 {
        match self.faults.delays(index) && slot[2] == Operation::PageFlip as u8 {
            true => now_ns.saturating_add(self.faults.response_delay_ns),
            false => now_ns,
        }
    }

    fn event_due(&self, index: usize, response_due: u64) -> Option<u64> {
        if self.faults.no_events {
            return None;
        }
        Some(match self.faults.delays(index) {
            true => response_due.saturating_add(self.faults.event_delay_ns),
            false => response_due,
        })
    }

    fn flipped(&mut self, index: usize, fb_cookie: u64) {
        self.flips.push((index, fb_cookie));
    }

    fn notify(&mut self, _index: usize, _channel: Channel) {}

    fn event_lost(&mut self, _index: usize, _event: Outgoing, _error: RingError) {
        *self.events_lost += 1;
    }
}

impl<'a, R: DirectoryReader> FakeDisplayBackend<'a, R> {
    /// Serves the ring and event page the frontend set up for connector 0;
    /// `reader` resolves the grants of page directories.
    pub fn new(ring: &'a SharedRing, events: &'a EventPage, reader: R) -> Self {
        let mut backend = FakeDisplayBackend {
            connectors: Vec::new(),
            model: BackendModel::default(),
            reader,
            faults: BackendFaults::default(),
            fault: None,
            fault_hits: Vec::new(),
            left: false,
            flips: Vec::new(),
            requests: Vec::new(),
            events_lost: 0,
            now_ns: 0,
        };
        backend.add_connector(ring, events);
        backend
    }

    /// Serves the next connector's ring and event page; returns its index.
    pub fn add_connector(&mut self, ring: &'a SharedRing, events: &'a EventPage) -> usize {
        self.connectors.push(ServedConnector::new(ring, events));
        self.connectors.len() - 1
    }

    /// Sends an event on connector `index`'s event page as the backend
    /// would, outside any request.
    pub fn send_event(&mut self, index: usize, event: &Event) -> Result<(), RingError> {
        self.connectors[index].send_event(event)
    }

    /// Flips shown on connector `index`.
    pub fn flips_on(&self, index: usize) -> usize {
        self.flips.iter().filter(|(at, _)| *at == index).count()
    }

    /// Responses and events taken but not sent yet (delayed).
    pub fn held(&self) -> usize {
        self.connectors.iter().map(ServedConnector::queued).sum()
    }

    /// When the next delayed response or event is due, if any is held.
    pub fn next_due(&self) -> Option<u64> {
        self.connectors
            .iter()
            .filter_map(ServedConnector::next_due)
            .min()
    }

    /// Takes and answers every pending request on every connector's ring,
    /// and sends what is due by [`FakeDisplayBackend::now_ns`]; returns how
    /// many requests were taken.
    pub fn step(&mut self) -> Result<usize, RingError> {
        let FakeDisplayBackend {
            connectors,
            model,
            reader,
            faults,
            fault,
            fault_hits,
            left,
            flips,
            requests,
            events_lost,
            now_ns,
        } = self;
        let mut host = FakeHost {
            model,
            reader,
            faults,
            fault,
            fault_hits,
            flips,
            requests,
            events_lost,
            now_ns: *now_ns,
        };
        let mut handled = 0;
        for (index, connector) in connectors.iter_mut().enumerate() {
            if *left {
                break;
            }
            // The fake answers everything it can in one step.
            loop {
                let served = connector.serve(index, &mut host)?;
                handled += served.taken;
                *left |= served.left;
                if !served.more || served.left {
                    break;
                }
            }
            connector.send_due(index, &mut host)?;
        }
        Ok(handled)
    }
}

/// A [`Wait`] that runs the fake backend on every wait and keeps a clock
/// that moves 1 ms per wait (the backend's clock follows it).
pub struct FakeWait<'b, 'a, R: DirectoryReader> {
    /// The backend.
    pub backend: &'b mut FakeDisplayBackend<'a, R>,
    /// Fake monotonic clock.
    pub now_ns: u64,
    /// Notifications received.
    pub notifications: u32,
}

impl<R: DirectoryReader> Wait for FakeWait<'_, '_, R> {
    fn notify(&mut self) {
        self.notifications += 1;
    }

    fn wait(&mut self, deadline_ns: u64) {
        self.backend.now_ns = self.now_ns;
        let _ = self.backend.step();
        self.now_ns = (self.now_ns + 1_000_000).min(deadline_ns.max(self.now_ns));
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }
}
