//! A fake display backend for host tests: it plays the backend's side of a
//! device's connectors (each a request ring and an event page) on in-memory
//! pages, applies requests through [`BackendModel`] (the Dom0 backend's
//! rules, one model per device as DBUF_* and FB_* travel on connector 0's
//! ring), and can be told to misbehave: the Dom0 backend's `--fault` modes
//! through [`FaultState`], and a few blunter ones ([`BackendFaults`]),
//! among them a slow backend whose PG_FLIP responses or EVT_PG_FLIP events
//! come late. Time is the test's: [`FakeDisplayBackend::now_ns`], set before
//! each [`FakeDisplayBackend::step`], decides what is due.

use super::backend::{respond, BackendModel, DirectoryReader, Effect};
use super::connector::Wait;
use super::fault::{garbage_event, FaultAction, FaultHit, FaultState, RSP_PROD_AHEAD};
use crate::xen::displif::{Event, Operation, Request, Response};
use crate::xen::ring::{BackRing, EventPage, RingError, SharedRing};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Blunt misbehaviours, all off by default, hitting every connector.
#[derive(Clone, Debug, Default)]
pub struct BackendFaults {
    /// Answers this operation with this status instead of applying it.
    pub status: Option<(Operation, i32)>,
    /// Takes requests but never answers.
    pub silent: bool,
    /// Answers with the request id plus one.
    pub wrong_id: bool,
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

/// An event waiting to go on the event page.
#[derive(Clone, Copy, Debug)]
enum Outgoing {
    /// EVT_PG_FLIP for this framebuffer.
    PageFlip(u64),
    /// A `garbage-event` fault's event.
    Garbage,
}

/// The backend side of one connector.
struct FakeConnector<'a> {
    ring: BackRing<&'a SharedRing>,
    events: &'a EventPage,
    next_event_id: u16,
    /// A fault broke the ring's indexes: no more requests are taken from it.
    poisoned: bool,
    /// Responses and events not sent yet, in order, each with when it is
    /// due.
    responses: VecDeque<(u64, Response)>,
    events_due: VecDeque<(u64, Outgoing)>,
}

/// The backend side of one device's connectors, for one connection.
pub struct FakeDisplayBackend<'a, R: DirectoryReader> {
    connectors: Vec<FakeConnector<'a>>,
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
        self.connectors.push(FakeConnector {
            ring: BackRing::new(ring),
            events,
            next_event_id: 0,
            poisoned: false,
            responses: VecDeque::new(),
            events_due: VecDeque::new(),
        });
        self.connectors.len() - 1
    }

    /// Sends an event on connector `index`'s event page as the backend
    /// would, outside any request.
    pub fn send_event(&mut self, index: usize, event: &Event) -> Result<(), RingError> {
        let connector = &mut self.connectors[index];
        let slot = event.encode(connector.next_event_id);
        connector.events.push_event(&slot)?;
        connector.next_event_id = connector.next_event_id.wrapping_add(1);
        Ok(())
    }

    /// Flips shown on connector `index`.
    pub fn flips_on(&self, index: usize) -> usize {
        self.flips.iter().filter(|(at, _)| *at == index).count()
    }

    /// Responses and events taken but not sent yet (delayed).
    pub fn held(&self) -> usize {
        self.connectors
            .iter()
            .map(|connector| connector.responses.len() + connector.events_due.len())
            .sum()
    }

    /// When the next delayed response or event is due, if any is held.
    pub fn next_due(&self) -> Option<u64> {
        self.connectors
            .iter()
            .flat_map(|connector| {
                let response = connector.responses.front().map(|&(due, _)| due);
                let event = connector.events_due.front().map(|&(due, _)| due);
                response.into_iter().chain(event)
            })
            .min()
    }

    /// Takes and answers every pending request on every connector's ring,
    /// and sends what is due by [`FakeDisplayBackend::now_ns`]; returns how
    /// many requests were taken.
    pub fn step(&mut self) -> Result<usize, RingError> {
        let mut handled = 0;
        for index in 0..self.connectors.len() {
            if self.left {
                break;
            }
            handled += self.serve(index)?;
            self.send_due(index)?;
        }
        Ok(handled)
    }

    /// Sends connector `index`'s responses and events that are due, in
    /// order.
    fn send_due(&mut self, index: usize) -> Result<(), RingError> {
        let now = self.now_ns;
        let connector = &mut self.connectors[index];
        let mut published = false;
        while let Some(&(due, response)) = connector.responses.front() {
            if due > now || connector.poisoned {
                break;
            }
            connector.responses.pop_front();
            connector.ring.push_response(&response.encode())?;
            published = true;
        }
        if published {
            connector.ring.publish();
        }
        while let Some(&(due, outgoing)) = connector.events_due.front() {
            if due > now {
                break;
            }
            connector.events_due.pop_front();
            let slot = match outgoing {
                Outgoing::PageFlip(fb_cookie) => {
                    Event::PageFlip { fb_cookie }.encode(connector.next_event_id)
                }
                Outgoing::Garbage => garbage_event(connector.next_event_id),
            };
            if connector.events.push_event(&slot).is_ok() {
                connector.next_event_id = connector.next_event_id.wrapping_add(1);
            } else {
                self.events_lost += 1;
            }
        }
        Ok(())
    }

    fn serve(&mut self, index: usize) -> Result<usize, RingError> {
        let mut handled = 0;
        let mut leave = false;
        while !self.connectors[index].poisoned {
            let Some(slot) = self.connectors[index].ring.take_request()? else {
                break;
            };
            handled += 1;
            if let Ok((_, request)) = Request::decode(&slot) {
                self.requests.push((index, request));
            }
            let hit = self
                .fault
                .as_mut()
                .and_then(|state| state.hit(index, &slot));
            let mut garbage = false;
            let (mut response, effect) = match hit.map(|hit| (hit, hit.action())) {
                Some((hit, action)) => {
                    self.fault_hits.push((index, hit));
                    match action {
                        FaultAction::Respond(response) => (response, Effect::None),
                        FaultAction::RespondThenGarbage(response) => {
                            garbage = true;
                            (response, Effect::None)
                        }
                        FaultAction::Ignore => continue,
                        FaultAction::BreakRing => {
                            // What was answered before goes out first.
                            self.send_due(index)?;
                            let connector = &mut self.connectors[index];
                            connector.ring.force_rsp_prod(RSP_PROD_AHEAD);
                            connector.poisoned = true;
                            break;
                        }
                        FaultAction::AnswerThenLeave => {
                            leave = true;
                            self.model.handle_on(index, &slot, &mut self.reader)
                        }
                    }
                }
                None => {
                    if self.faults.silent {
                        continue;
                    }
                    let operation = Operation::try_from(slot[2]).ok();
                    match (self.faults.status, operation) {
                        (Some((failing, status)), Some(operation)) if failing == operation => {
                            (respond(&slot, status), Effect::None)
                        }
                        _ => self.model.handle_on(index, &slot, &mut self.reader),
                    }
                }
            };
            if self.faults.wrong_id {
                response.id = response.id.wrapping_add(1);
            }
            let delayed = self
                .faults
                .delayed_connector
                .is_none_or(|delayed| delayed == index);
            let is_flip = slot[2] == Operation::PageFlip as u8;
            let response_due = match delayed && is_flip {
                true => self.now_ns.saturating_add(self.faults.response_delay_ns),
                false => self.now_ns,
            };
            let event_due = match delayed {
                true => response_due.saturating_add(self.faults.event_delay_ns),
                false => response_due,
            };
            let connector = &mut self.connectors[index];
            // Later responses wait behind a delayed one: the ring is in order.
            let response_due = connector
                .responses
                .back()
                .map_or(response_due, |&(due, _)| due.max(response_due));
            connector.responses.push_back((response_due, response));
            if garbage {
                connector
                    .events_due
                    .push_back((response_due, Outgoing::Garbage));
            }
            if let Effect::Flipped(fb_cookie) = effect {
                self.flips.push((index, fb_cookie));
                if !self.faults.no_events {
                    let connector = &mut self.connectors[index];
                    let event_due = connector
                        .events_due
                        .back()
                        .map_or(event_due, |&(due, _)| due.max(event_due));
                    connector
                        .events_due
                        .push_back((event_due, Outgoing::PageFlip(fb_cookie)));
                }
            }
        }
        if leave {
            self.left = true;
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
