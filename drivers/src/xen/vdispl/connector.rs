//! One connector at run time: its request ring and event page, requests in
//! flight matched to responses by id, events queued with their ids until
//! taken, and the buffer page directory.
//!
//! Events as Linux's xen-drm-front takes them (xen_drm_front_evtchnl.c,
//! `evtchnl_interrupt_evt`): the backend numbers its events from 0 on each
//! connection, one more per event, and an event whose id is not the one
//! expected is skipped. Linux then expects the next id of its own count, so
//! a backend that inserts or loses one event has every later one skipped;
//! here the count follows the skipped event's id, so that costs one more
//! event at most (the flip it completed is released as any flip whose
//! event does not come, see [`super::flip`]). An event of a type displif.h
//! does not define is ignored. Neither stops the connector; the first of
//! each kind on a connection is reported ([`Connector::take_ignored`]) and
//! the rest only counted.
//!
//! How long a request may wait (io/displif.h sets no bound; Linux's
//! xen-drm-front waits 3000 ms, then fails that request with -ETIMEDOUT
//! and carries on with the same ring): a backend under load may answer
//! seconds late, so the frontend's requests wait up to [`HANG_NS`] before
//! their ring counts as stuck. A response to a request given up on
//! ([`Connector::abandon`]) is dropped when it comes at last, not taken for
//! a protocol error.

use super::VdisplError;
use crate::xen::displif::{
    write_directory_page, DecodeError, Event, Operation, Request, Response, REFS_PER_DIRECTORY_PAGE,
};
use crate::xen::gnttab::GrantRef;
use crate::xen::ring::{EventPage, FrontRing, SharedRing};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::ops::Deref;

/// Events kept while nobody takes them; the oldest go first beyond this.
pub const MAX_QUEUED_EVENTS: usize = 256;
/// Ids of requests given up on that are remembered, so that their late
/// responses are dropped rather than taken for answers to no request.
pub const MAX_ABANDONED: usize = 16;

/// How long a request may go unanswered before its ring counts as stuck:
/// far beyond any answer a backend gives under load (Linux's xen-drm-front
/// waits 3000 ms per request), so that only a backend that stopped serving
/// the ring reaches it.
pub const HANG_NS: u64 = 30_000 * 1_000_000;

/// An event the frontend did not act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoredEvent {
    /// Its type is none displif.h defines.
    UnknownType {
        /// Its id.
        id: u16,
        /// Its type.
        code: u8,
    },
    /// Its id is not the next in the backend's sequence: skipped.
    OutOfSequence {
        /// Its id.
        id: u16,
        /// The id expected.
        expected: u16,
    },
}

impl core::fmt::Display for IgnoredEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            IgnoredEvent::UnknownType { id, code } => {
                write!(f, "ignored event id {id} of unknown type {code:#04x}")?
            }
            IgnoredEvent::OutOfSequence { id, expected } => write!(
                f,
                "skipped event id {id}, out of sequence (expected {expected})"
            )?,
        }
        f.write_str("; later ones without a line")
    }
}

/// A request sent and not yet answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its id.
    pub id: u16,
    /// Its operation.
    pub operation: Operation,
    /// When it was sent.
    pub sent_ns: u64,
}

/// The frontend's side of one connector, over its request ring page `R` and
/// event page `E` (owned boxes in the guest, references in tests).
pub struct Connector<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>> {
    ring: FrontRing<R>,
    events: E,
    next_id: u16,
    in_flight: Vec<InFlight>,
    responses: VecDeque<(InFlight, Response)>,
    queued_events: VecDeque<(u16, Event)>,
    stray: Vec<u16>,
    /// Ids given up on, 0 in free places (ids start at 1), written round.
    abandoned: [u16; MAX_ABANDONED],
    next_abandoned: usize,
    late_responses: u64,
    dropped_events: u64,
    /// The id the backend's next event must carry.
    next_event_id: u16,
    /// Events ignored (unknown type) and skipped (out of sequence).
    ignored_events: [u64; 2],
    /// The first of each kind, until taken.
    to_report: Vec<IgnoredEvent>,
}

impl<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>> Connector<R, E> {
    /// Initialises the (zeroed, not yet published) ring and event pages.
    pub fn new(ring: R, events: E) -> Self {
        ring.init();
        events.init();
        Connector {
            ring: FrontRing::new(ring),
            events,
            next_id: 1,
            in_flight: Vec::new(),
            responses: VecDeque::new(),
            queued_events: VecDeque::new(),
            stray: Vec::new(),
            abandoned: [0; MAX_ABANDONED],
            next_abandoned: 0,
            late_responses: 0,
            dropped_events: 0,
            next_event_id: 0,
            ignored_events: [0; 2],
            to_report: Vec::new(),
        }
    }

    /// Sends `request`; returns its id and whether the backend wants a
    /// notification.
    pub fn send(&mut self, request: &Request, now_ns: u64) -> Result<(u16, bool), VdisplError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.ring
            .push_request(&request.encode(id))
            .map_err(|_| VdisplError::RingFull)?;
        self.in_flight.push(InFlight {
            id,
            operation: request.operation(),
            sent_ns: now_ns,
        });
        Ok((id, self.ring.publish()))
    }

    /// Moves what the backend produced into the queues; asks for a
    /// notification on the next response. A late response to a request
    /// given up on is dropped (see [`Connector::late_responses`]); one whose
    /// id answers no request sent is recorded (see
    /// [`Connector::take_stray`]); an event out of sequence or of an
    /// unknown type is left out (see the module's documentation); events
    /// beyond [`MAX_QUEUED_EVENTS`] push out the oldest. Errors are those of
    /// a broken ring or event page.
    pub fn pump(&mut self) -> Result<(), VdisplError> {
        loop {
            while let Some(slot) = self.ring.take_response()? {
                let response = Response::decode(&slot);
                match self
                    .in_flight
                    .iter()
                    .position(|flight| flight.id == response.id)
                {
                    Some(index) => {
                        let flight = self.in_flight.remove(index);
                        self.responses.push_back((flight, response));
                    }
                    None => match self
                        .abandoned
                        .iter_mut()
                        .find(|id| **id == response.id && response.id != 0)
                    {
                        Some(id) => {
                            *id = 0;
                            self.late_responses += 1;
                        }
                        None => self.stray.push(response.id),
                    },
                }
            }
            if !self.ring.final_check_for_responses()? {
                break;
            }
        }
        while let Some(slot) = self.events.take_event()? {
            let id = u16::from_le_bytes([slot[0], slot[1]]);
            let expected = self.next_event_id;
            // The numbering goes on from this event's, in sequence or not.
            self.next_event_id = id.wrapping_add(1);
            let (ignored, kind) = match Event::decode(&slot) {
                _ if id != expected => (IgnoredEvent::OutOfSequence { id, expected }, 1),
                Ok((id, event)) => {
                    self.queue_event(id, event);
                    continue;
                }
                Err(DecodeError::UnknownEvent(code) | DecodeError::UnknownOperation(code)) => {
                    (IgnoredEvent::UnknownType { id, code }, 0)
                }
            };
            if self.ignored_events[kind] == 0 {
                self.to_report.push(ignored);
            }
            self.ignored_events[kind] += 1;
        }
        Ok(())
    }

    fn queue_event(&mut self, id: u16, event: Event) {
        if self.queued_events.len() == MAX_QUEUED_EVENTS {
            self.queued_events.pop_front();
            self.dropped_events += 1;
        }
        self.queued_events.push_back((id, event));
    }

    /// The response to request `id`, once it arrived: `Ok` for status 0,
    /// [`VdisplError::Status`] otherwise.
    pub fn take_response(&mut self, id: u16) -> Option<Result<Response, VdisplError>> {
        let index = self
            .responses
            .iter()
            .position(|(flight, _)| flight.id == id)?;
        let (flight, response) = self.responses.remove(index)?;
        Some(if response.status == 0 {
            Ok(response)
        } else {
            Err(VdisplError::Status {
                operation: flight.operation,
                status: response.status,
            })
        })
    }

    /// The oldest queued event, with the id the backend gave it
    /// (`struct xendispl_evt`'s `id`).
    pub fn take_event(&mut self) -> Option<(u16, Event)> {
        self.queued_events.pop_front()
    }

    /// Ids of responses that answered no request in flight, since the last
    /// call.
    pub fn take_stray(&mut self) -> Vec<u16> {
        core::mem::take(&mut self.stray)
    }

    /// The first event of each kind left out since the last call (see
    /// [`IgnoredEvent`]), to report.
    pub fn take_ignored(&mut self) -> Vec<IgnoredEvent> {
        core::mem::take(&mut self.to_report)
    }

    /// Events of unknown types ignored, and events out of sequence skipped.
    pub fn ignored_events(&self) -> (u64, u64) {
        (self.ignored_events[0], self.ignored_events[1])
    }

    /// Late responses to requests given up on, dropped.
    pub fn late_responses(&self) -> u64 {
        self.late_responses
    }

    /// Events dropped because nobody took them.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// Requests sent and not answered yet.
    pub fn in_flight(&self) -> &[InFlight] {
        &self.in_flight
    }

    /// The request ring page.
    pub fn ring_page(&self) -> &SharedRing {
        self.ring.shared()
    }

    /// The event page.
    pub fn event_page(&self) -> &EventPage {
        &self.events
    }

    /// The ring and event pages back, once the connector is done with.
    pub fn into_pages(self) -> (R, E) {
        (self.ring.into_shared(), self.events)
    }

    /// Gives up on request `id` (after a timeout): a late response to it is
    /// then dropped, and answers nothing. The last [`MAX_ABANDONED`] ids are
    /// remembered; a response to an older one counts as stray.
    pub fn abandon(&mut self, id: u16) {
        // An answer that came already but was not taken goes too.
        let _ = self.take_response(id);
        let before = self.in_flight.len();
        self.in_flight.retain(|flight| flight.id != id);
        if self.in_flight.len() == before {
            return;
        }
        self.abandoned[self.next_abandoned % MAX_ABANDONED] = id;
        self.next_abandoned = self.next_abandoned.wrapping_add(1);
    }
}

/// What [`call`] needs from the OS: notify the backend, sleep until an event
/// channel of the connector fires or a deadline, and the clock.
pub trait Wait {
    /// Notifies the request ring's event channel.
    fn notify(&mut self);
    /// Sleeps until the connector's event channels fire or `deadline_ns`.
    fn wait(&mut self, deadline_ns: u64);
    /// Monotonic nanoseconds.
    fn now_ns(&self) -> u64;
}

/// Sends `request` and waits for its response (at most `timeout_ns`).
pub fn call<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>>(
    connector: &mut Connector<R, E>,
    waiter: &mut impl Wait,
    request: &Request,
    timeout_ns: u64,
) -> Result<Response, VdisplError> {
    let start = waiter.now_ns();
    let deadline = start.saturating_add(timeout_ns);
    let (id, notify) = connector.send(request, start)?;
    if notify {
        waiter.notify();
    }
    loop {
        connector.pump()?;
        if let Some(result) = connector.take_response(id) {
            return result;
        }
        let now = waiter.now_ns();
        if now >= deadline {
            connector.abandon(id);
            return Err(VdisplError::Timeout {
                operation: request.operation(),
                waited_ms: (now - start) / 1_000_000,
            });
        }
        waiter.wait(deadline);
    }
}

/// Writes the page directory for `buffer_refs` into `pages` (granted as
/// `directory_refs`, the same count): each page lists up to 1023 buffer
/// grants and links to the next page's grant, 0 on the last.
pub fn write_directory(
    pages: &mut [[u8; 4096]],
    directory_refs: &[GrantRef],
    buffer_refs: &[GrantRef],
) {
    let mut chunks = buffer_refs.chunks(REFS_PER_DIRECTORY_PAGE);
    for (index, page) in pages.iter_mut().enumerate() {
        let next = directory_refs.get(index + 1).copied().unwrap_or(0);
        write_directory_page(page, next, chunks.next().unwrap_or(&[]));
    }
}
