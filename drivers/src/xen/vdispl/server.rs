//! The display backend's side of one connector's request ring and event page
//! (io/displif.h, "Request/response" and "Events"): the one loop that takes
//! requests, applies the `--fault` misbehaviours ([`FaultHit::action`]),
//! answers, and sends responses and EVT_PG_FLIP events when they are due.
//! The host tests' fake backend (`fake.rs`) and the Dom0 backend
//! (`vdispl-backend`) both serve their rings through [`ServedConnector`];
//! what differs between them (how a request is answered, when answers are
//! due, what a flip starts, how the frontend is notified) is their
//! [`ServeHost`].

use super::fault::{garbage_event, FaultAction, FaultHit, RSP_PROD_AHEAD};
use crate::xen::displif::{Event, Response};
use crate::xen::ring::{BackRing, EventPage, RingError, SharedRing, Slot};
use alloc::collections::VecDeque;
use core::ops::Deref;

/// An event waiting to go on the event page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// `XENDISPL_EVT_PG_FLIP` for this framebuffer.
    PageFlip(u64),
    /// A `garbage-event` fault's event ([`garbage_event`]).
    Garbage,
}

/// Which of a connector's event channels a notification goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `req-event-channel`: responses were published.
    Requests,
    /// `evt-event-channel`: events were put on the event page.
    Events,
}

/// What one [`ServedConnector::serve`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests taken from the ring (a held one counts when it was taken).
    pub taken: usize,
    /// Requests are left on the ring after a flip: serve it again (after
    /// the other rings, so that a frontend flipping as fast as it is
    /// answered does not keep the backend on its ring).
    pub more: bool,
    /// A `state-back` fault answered a request: the backend is to let go
    /// of the device; nothing more was taken from the ring.
    pub left: bool,
}

/// What differs between backends serving a ring: the host of a
/// [`ServedConnector`]. Times are the host's clock, in nanoseconds.
pub trait ServeHost {
    /// The host's clock.
    fn now_ns(&self) -> u64;

    /// Whether the request in `slot`, on connector `index`, must wait
    /// before it is answered (`again`: it waited before). A held request
    /// and the requests after it stay on the ring until the next serve.
    fn holds(&mut self, index: usize, slot: &Slot, again: bool) -> bool {
        let _ = (index, slot, again);
        false
    }

    /// The fault that hits the request in `slot` on connector `index`, if
    /// any; the host records or logs it.
    fn fault(&mut self, index: usize, slot: &Slot) -> Option<FaultHit>;

    /// Applies and answers the request in `slot` on connector `index`: the
    /// response and, for a flip, the framebuffer now shown.
    fn answer(&mut self, index: usize, slot: &Slot) -> (Response, Option<u64>);

    /// When the response to `slot`, taken at `now_ns`, is due (responses
    /// keep their order: a later one waits behind a later-due one).
    fn response_due(&self, index: usize, slot: &Slot, now_ns: u64) -> u64 {
        let _ = (index, slot);
        now_ns
    }

    /// When the EVT_PG_FLIP of a flip whose response is due at
    /// `response_due` is due (events keep their order); `None`: it is never
    /// sent.
    fn event_due(&self, index: usize, response_due: u64) -> Option<u64> {
        let _ = index;
        Some(response_due)
    }

    /// The flip of `fb_cookie` on connector `index` was answered (its
    /// response and event sent if they were due).
    fn flipped(&mut self, index: usize, fb_cookie: u64);

    /// Notifies the frontend of connector `index` through `channel`.
    fn notify(&mut self, index: usize, channel: Channel);

    /// An event did not fit on connector `index`'s event page.
    fn event_lost(&mut self, index: usize, event: Outgoing, error: RingError);
}

/// The backend side of one connector: its request ring and event page, and
/// what was answered but is not sent yet.
pub struct ServedConnector<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>> {
    ring: BackRing<R>,
    events: E,
    next_event_id: u16,
    /// A fault broke the ring's indexes: no more requests are taken from it.
    poisoned: bool,
    /// A request taken from the ring that waits ([`ServeHost::holds`]).
    held: Option<Slot>,
    /// Responses and events not sent yet, in order, each with when it is
    /// due.
    responses: VecDeque<(u64, Response)>,
    events_due: VecDeque<(u64, Outgoing)>,
}

impl<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>> ServedConnector<R, E> {
    /// Serves `ring` and `events`, set up by the frontend.
    pub fn new(ring: R, events: E) -> Self {
        ServedConnector {
            ring: BackRing::new(ring),
            events,
            next_event_id: 0,
            poisoned: false,
            held: None,
            responses: VecDeque::new(),
            events_due: VecDeque::new(),
        }
    }

    /// The event page.
    pub fn events(&self) -> &EventPage {
        &self.events
    }

    /// Lets go of the ring; the event page, for its owner to release.
    pub fn into_events(self) -> E {
        self.events
    }

    /// Whether a fault broke the ring.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// Whether a request waits ([`ServeHost::holds`]).
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// Responses and events answered but not sent yet.
    pub fn queued(&self) -> usize {
        self.responses.len() + self.events_due.len()
    }

    /// The events not sent yet, in order, with when each is due.
    pub fn events_due(&self) -> impl Iterator<Item = (u64, Outgoing)> + '_ {
        self.events_due.iter().copied()
    }

    /// When the next response or event not sent yet is due, if any.
    pub fn next_due(&self) -> Option<u64> {
        let response = self.responses.front().map(|&(due, _)| due);
        let event = self.events_due.front().map(|&(due, _)| due);
        match (response, event) {
            (Some(response), Some(event)) => Some(response.min(event)),
            (response, event) => response.or(event),
        }
    }

    /// Puts `event` on the event page now, outside any request (no
    /// notification).
    pub fn send_event(&mut self, event: &Event) -> Result<(), RingError> {
        self.events.push_event(&event.encode(self.next_event_id))?;
        self.next_event_id = self.next_event_id.wrapping_add(1);
        Ok(())
    }

    /// Takes and answers the requests on the ring, connector `index` of
    /// `host`, up to and including one flip (see [`Served::more`]), and
    /// sends what is due. A fault that breaks the ring
    /// ([`FaultAction::BreakRing`]) leaves it alone from then on.
    pub fn serve(&mut self, index: usize, host: &mut impl ServeHost) -> Result<Served, RingError> {
        let mut served = Served::default();
        if self.poisoned {
            return Ok(served);
        }
        loop {
            let mut flipped = false;
            while !flipped {
                let (slot, again) = match self.held.take() {
                    Some(slot) => (slot, true),
                    None => match self.ring.take_request()? {
                        Some(slot) => (slot, false),
                        None => break,
                    },
                };
                if !again {
                    served.taken += 1;
                }
                if host.holds(index, &slot, again) {
                    self.held = Some(slot);
                    self.send_due(index, host)?;
                    return Ok(served);
                }
                let now = host.now_ns();
                let (response, flip, garbage) =
                    match host.fault(index, &slot).map(|hit| hit.action()) {
                        Some(FaultAction::Respond(response)) => (response, None, false),
                        Some(FaultAction::RespondThenGarbage(response)) => (response, None, true),
                        Some(FaultAction::Ignore) => continue,
                        Some(FaultAction::BreakRing) => {
                            // What was answered before goes out first.
                            self.send_due(index, host)?;
                            self.ring.force_rsp_prod(RSP_PROD_AHEAD);
                            self.poisoned = true;
                            host.notify(index, Channel::Requests);
                            return Ok(served);
                        }
                        // Answered normally: the state change is what goes wrong.
                        Some(FaultAction::AnswerThenLeave) => {
                            served.left = true;
                            let (response, flip) = host.answer(index, &slot);
                            (response, flip, false)
                        }
                        None => {
                            let (response, flip) = host.answer(index, &slot);
                            (response, flip, false)
                        }
                    };
                let response_due = host.response_due(index, &slot, now);
                let response_due = self
                    .responses
                    .back()
                    .map_or(response_due, |&(due, _)| due.max(response_due));
                self.responses.push_back((response_due, response));
                if garbage {
                    self.events_due.push_back((response_due, Outgoing::Garbage));
                }
                if let Some(fb_cookie) = flip {
                    if let Some(event_due) = host.event_due(index, response_due) {
                        let event_due = self
                            .events_due
                            .back()
                            .map_or(event_due, |&(due, _)| due.max(event_due));
                        self.events_due
                            .push_back((event_due, Outgoing::PageFlip(fb_cookie)));
                    }
                    // The flip is complete: its answer and event go out
                    // before the host starts anything for it.
                    self.send_due(index, host)?;
                    host.flipped(index, fb_cookie);
                    flipped = true;
                }
                if served.left {
                    self.send_due(index, host)?;
                    return Ok(served);
                }
            }
            self.send_due(index, host)?;
            if !self.ring.final_check_for_requests()? {
                return Ok(served);
            }
            if flipped {
                // The frontend will not notify for requests already there.
                served.more = true;
                return Ok(served);
            }
        }
    }

    /// Sends the responses and events that are due by the host's clock, in
    /// order, and notifies the frontend of them. Responses wait while the
    /// ring is broken; events do not.
    pub fn send_due(&mut self, index: usize, host: &mut impl ServeHost) -> Result<(), RingError> {
        let now = host.now_ns();
        let mut pushed = false;
        while let Some(&(due, response)) = self.responses.front() {
            if due > now || self.poisoned {
                break;
            }
            self.responses.pop_front();
            self.ring.push_response(&response.encode())?;
            pushed = true;
        }
        if pushed && self.ring.publish() {
            host.notify(index, Channel::Requests);
        }
        let mut sent = false;
        while let Some(&(due, outgoing)) = self.events_due.front() {
            if due > now {
                break;
            }
            self.events_due.pop_front();
            let slot = match outgoing {
                Outgoing::PageFlip(fb_cookie) => {
                    Event::PageFlip { fb_cookie }.encode(self.next_event_id)
                }
                Outgoing::Garbage => garbage_event(self.next_event_id),
            };
            match self.events.push_event(&slot) {
                Ok(()) => self.next_event_id = self.next_event_id.wrapping_add(1),
                Err(error) => host.event_lost(index, outgoing, error),
            }
            sent = true;
        }
        if sent {
            host.notify(index, Channel::Events);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::displif::{Event, Request};
    use crate::xen::ring::{EventFrame, FrontRing, RingPage};
    use std::vec;
    use std::vec::Vec;

    /// A host that answers every request with status 0, flips every PG_FLIP, holds the
    /// requests whose id is in `hold` (each once), and records what the loop asked of it.
    #[derive(Default)]
    struct Recorder {
        hold: Vec<u16>,
        flipped: Vec<u64>,
        notified: Vec<Channel>,
        answered: Vec<u16>,
    }

    impl ServeHost for Recorder {
        fn now_ns(&self) -> u64 {
            0
        }

        fn holds(&mut self, _index: usize, slot: &Slot, again: bool) -> bool {
            let id = u16::from_le_bytes([slot[0], slot[1]]);
            !again && self.hold.contains(&id)
        }

        fn fault(&mut self, _index: usize, _slot: &Slot) -> Option<FaultHit> {
            None
        }

        fn answer(&mut self, _index: usize, slot: &Slot) -> (Response, Option<u64>) {
            let (id, request) = Request::decode(slot).unwrap();
            self.answered.push(id);
            let response = Response {
                id,
                operation: slot[2],
                status: 0,
                edid_sz: 0,
            };
            match request {
                Request::PageFlip { fb_cookie } => (response, Some(fb_cookie)),
                _ => (response, None),
            }
        }

        fn flipped(&mut self, _index: usize, fb_cookie: u64) {
            self.flipped.push(fb_cookie);
        }

        fn notify(&mut self, _index: usize, channel: Channel) {
            self.notified.push(channel);
        }

        fn event_lost(&mut self, _index: usize, _event: Outgoing, _error: RingError) {
            panic!("an event page with room lost an event");
        }
    }

    #[test]
    fn a_turn_ends_after_one_flip_and_a_held_request_keeps_the_rest_back() {
        let page = RingPage::new_boxed();
        page.init();
        let events = EventFrame::new_boxed();
        events.init();
        let mut front = FrontRing::new(&*page);
        let mut served = ServedConnector::new(&*page, &*events);
        let flip = |cookie| Request::PageFlip { fb_cookie: cookie };
        for (id, request) in [
            (1, Request::DISABLE),
            (2, flip(7)),
            (3, flip(8)),
            (4, flip(9)),
        ] {
            front.push_request(&request.encode(id)).unwrap();
        }
        front.publish();
        let mut host = Recorder {
            hold: vec![4],
            ..Recorder::default()
        };
        // One flip per turn: requests are left, and the flip's answer and event are out.
        let turn = served.serve(0, &mut host).unwrap();
        assert_eq!((turn.taken, turn.more, turn.left), (2, true, false));
        assert_eq!(
            (host.answered.as_slice(), host.flipped.as_slice()),
            (&[1, 2][..], &[7][..])
        );
        assert_eq!(host.notified, [Channel::Requests, Channel::Events]);
        assert_eq!(
            Event::decode(&events.take_event().unwrap().unwrap()),
            Ok((0, Event::PageFlip { fb_cookie: 7 }))
        );
        // The next turn flips 8; the one after takes request 4 and holds it: the turn ends.
        let turn = served.serve(0, &mut host).unwrap();
        assert_eq!((turn.taken, turn.more), (1, true));
        assert_eq!(host.flipped, [7, 8]);
        let turn = served.serve(0, &mut host).unwrap();
        assert_eq!((turn.taken, turn.more), (1, false));
        assert!(served.holding());
        assert_eq!(host.answered, [1, 2, 3]);
        // Served again, the held request is answered without being taken twice.
        let turn = served.serve(0, &mut host).unwrap();
        assert_eq!((turn.taken, turn.more), (0, false));
        assert!(!served.holding());
        assert_eq!(host.answered, [1, 2, 3, 4]);
        let ids: Vec<u16> = core::iter::from_fn(|| front.take_response().unwrap())
            .map(|slot| Response::decode(&slot).id)
            .collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert_eq!(served.queued(), 0);
    }
}
