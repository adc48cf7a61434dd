//! A fake display backend for host tests: it plays the backend's side of a
//! connector's request ring and event page on in-memory pages, applies
//! requests through [`BackendModel`] (the Dom0 backend's rules), and can be
//! told to misbehave.

use super::backend::{BackendModel, DirectoryReader, Effect};
use super::connector::Wait;
use crate::xen::displif::{Event, Operation, Request, Response};
use crate::xen::ring::{BackRing, EventPage, RingError, SharedRing};
use alloc::vec::Vec;

/// Misbehaviours, all off by default.
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
}

/// The backend side of one connector.
pub struct FakeDisplayBackend<'a, R: DirectoryReader> {
    ring: BackRing<&'a SharedRing>,
    events: &'a EventPage,
    /// The objects the frontend created.
    pub model: BackendModel,
    reader: R,
    /// Misbehaviours.
    pub faults: BackendFaults,
    /// Framebuffers flipped, in order.
    pub flips: Vec<u64>,
    /// Requests taken, decoded.
    pub requests: Vec<Request>,
    /// EVT_PG_FLIP events that did not fit in the event page.
    pub events_lost: u32,
    next_event_id: u16,
}

impl<'a, R: DirectoryReader> FakeDisplayBackend<'a, R> {
    /// Serves the ring and event page the frontend set up; `reader` resolves
    /// the grants of page directories.
    pub fn new(ring: &'a SharedRing, events: &'a EventPage, reader: R) -> Self {
        FakeDisplayBackend {
            ring: BackRing::new(ring),
            events,
            model: BackendModel::default(),
            reader,
            faults: BackendFaults::default(),
            flips: Vec::new(),
            requests: Vec::new(),
            events_lost: 0,
            next_event_id: 0,
        }
    }

    /// Sends an event as the backend would, outside any request.
    pub fn send_event(&mut self, event: &Event) -> Result<(), RingError> {
        let slot = event.encode(self.next_event_id);
        self.next_event_id = self.next_event_id.wrapping_add(1);
        self.events.push_event(&slot)
    }

    /// Takes and answers every pending request; returns how many.
    pub fn step(&mut self) -> Result<usize, RingError> {
        let mut handled = 0;
        while let Some(slot) = self.ring.take_request()? {
            handled += 1;
            if let Ok((_, request)) = Request::decode(&slot) {
                self.requests.push(request);
            }
            if self.faults.silent {
                continue;
            }
            let operation = Operation::try_from(slot[2]).ok();
            let (mut response, effect) = match (self.faults.status, operation) {
                (Some((failing, status)), Some(operation)) if failing == operation => (
                    Response {
                        id: u16::from_le_bytes([slot[0], slot[1]]),
                        operation: slot[2],
                        status,
                        edid_sz: 0,
                    },
                    Effect::None,
                ),
                _ => self.model.handle(&slot, &mut self.reader),
            };
            if self.faults.wrong_id {
                response.id = response.id.wrapping_add(1);
            }
            self.ring.push_response(&response.encode())?;
            self.ring.publish();
            if let Effect::Flipped(fb_cookie) = effect {
                self.flips.push(fb_cookie);
                if !self.faults.no_events
                    && self.send_event(&Event::PageFlip { fb_cookie }).is_err()
                {
                    self.events_lost += 1;
                }
            }
        }
        Ok(handled)
    }
}

/// A [`Wait`] that runs the fake backend on every wait and keeps a clock
/// that moves 1 ms per wait.
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
        let _ = self.backend.step();
        self.now_ns = (self.now_ns + 1_000_000).min(deadline_ns.max(self.now_ns));
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }
}
