//! One connector's page flip in flight: sent, answered, shown (EVT_PG_FLIP),
//! and what stops it (io/displif.h, "Request page flip" and "Page flip
//! complete event").
//!
//! Time alone never fails a flip while the backend may still be working on
//! it, because a backend under load answers late, and reconnecting the
//! device for that blanks every connector and loads the backend further:
//! - A flip answered with status 0 whose EVT_PG_FLIP does not come within
//!   [`FRAME_DONE_TIMEOUT_NS`] of the response is released: taken as shown,
//!   with a line naming the connector, and flipping goes on on the same
//!   connection. Linux's xen-drm-front does the same ("Frame done timed-out,
//!   releasing", xen_drm_front_kms.c, 3100 ms after sending). If the event
//!   comes after all, it is recognised by its framebuffer cookie and event
//!   id and ignored: it completes no later flip.
//! - A flip whose response is late is waited for, however late, until
//!   [`HANG_NS`] (30 s) passed: only then does its ring count as stuck, and
//!   the connector fails ([`FlipError::Stuck`]). Linux gives up on a request
//!   after 3000 ms and carries on with the same ring; this frontend keeps
//!   one flip in flight per connector, so it waits much longer instead, and
//!   a ring that holds a request unanswered for 30 s is one only a new
//!   connection can reset.
//! - What fails a flip at once: an error status, a broken ring or event
//!   page (a producer index past the ring), and a response whose id
//!   answers no request (the backend mixed up its ids). Events of unknown
//!   types and events out of sequence are left out by the connector (see
//!   [`super::connector`]): a flip whose EVT_PG_FLIP they replaced is
//!   released as any other whose event does not come.
//!   A late response to a request given up on earlier is not one of those
//!   (see [`Connector::abandon`]).
//!
//! Event ids: the backend numbers its events from 0 per connection (Linux
//! counts them from 0 and skips one whose id is out of sequence, and so
//! does [`Connector::pump`]). The flipper expects each answered flip's event to carry the next id, and
//! remembers the id and framebuffer of each released flip whose event is
//! still owed: an event that matches one of those is that late event.
//! Events come in order, so once a flip's own event came, no older one is
//! owed any more.

use super::connector::{Connector, HANG_NS};
use super::VdisplError;
use crate::xen::displif::{Event, Request};
use crate::xen::ring::{EventPage, SharedRing};
use core::fmt;
use core::ops::Deref;

const NS_PER_MS: u64 = 1_000_000;

/// How long after its response a flip's EVT_PG_FLIP may come before the
/// flip is released without it (Linux's xen-drm-front: 3100 ms).
pub const FRAME_DONE_TIMEOUT_NS: u64 = 3_100 * NS_PER_MS;
/// Released flips whose late events are still recognised (a flip is
/// released 3.1 s after its response, so these cover events late by more
/// than 20 s).
pub const MAX_OWED_EVENTS: usize = 8;

/// A PG_FLIP sent and not completed yet; `T` is what the caller keeps with
/// it (the line to print once it is shown).
pub struct Flight<T> {
    /// The request's id.
    pub id: u16,
    /// The framebuffer flipped to.
    pub fb_cookie: u64,
    /// When it was sent.
    pub sent_ns: u64,
    /// When its response (status 0) was seen.
    answered_ns: Option<u64>,
    shown: bool,
    /// The id its EVT_PG_FLIP should carry.
    event_id: u16,
    /// The caller's data.
    pub tag: T,
}

/// Why a connector's flips cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlipError {
    /// PG_FLIP could not be put on the ring.
    Send(VdisplError),
    /// The backend answered with an error status, or broke the ring or the
    /// event page.
    Backend(VdisplError),
    /// A response whose id answers no request came while the flip waited
    /// for its own.
    WrongId {
        /// The flip's request id.
        expected: u16,
        /// The id that came.
        got: u16,
    },
    /// The flip got no response within [`HANG_NS`]: the backend does not
    /// serve the ring.
    Stuck {
        /// The flip's request id.
        id: u16,
    },
}

impl fmt::Display for FlipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlipError::Send(error) => write!(f, "PG_FLIP: {error}"),
            FlipError::Backend(error) => write!(f, "{error}"),
            FlipError::WrongId { expected, got } => write!(
                f,
                "PG_FLIP not completed: a response with the wrong id {got} came instead of id \
                 {expected}"
            ),
            FlipError::Stuck { id } => write!(
                f,
                "PG_FLIP not completed: the backend never answered id {id} within {} ms (the \
                 ring is stuck)",
                HANG_NS / NS_PER_MS
            ),
        }
    }
}

/// A flip released without its EVT_PG_FLIP; its `Display` is the line to
/// log after the connector's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Release {
    /// The flip's request id.
    pub id: u16,
    /// The framebuffer flipped to.
    pub fb_cookie: u64,
    /// How long after the response it waited for the event.
    pub waited_ms: u64,
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame done timed out, releasing (PG_FLIP id {} to framebuffer {:#x} answered, no \
             EVT_PG_FLIP {} ms later)",
            self.id, self.fb_cookie, self.waited_ms
        )
    }
}

/// What [`Flipper::poll`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum FlipPoll<T> {
    /// No flip in flight: the next frame may be sent.
    Idle,
    /// The flip in flight is not complete yet.
    Pending,
    /// The flip was answered with status 0 and its EVT_PG_FLIP came: the
    /// framebuffer is shown, the other one may be drawn.
    Done {
        /// The flight's data.
        tag: T,
        /// From sending to completion.
        round_trip_ns: u64,
    },
    /// The flip was answered with status 0 but its EVT_PG_FLIP did not come
    /// within [`FRAME_DONE_TIMEOUT_NS`]: it counts as shown, the next frame
    /// is due, and the event is ignored if it comes later.
    Released {
        /// The flight's data.
        tag: T,
        /// What to log.
        release: Release,
    },
    /// The connector cannot go on, for this reason.
    Failed(FlipError),
}

/// The flip in flight on one connector, at most one at a time, and the
/// frames shown so far.
pub struct Flipper<T> {
    flight: Option<Flight<T>>,
    next_frame: u64,
    /// The id the next answered flip's EVT_PG_FLIP should carry.
    next_event_id: u16,
    /// Released flips whose events may still come, oldest first: (event
    /// id, framebuffer); the first `owed_count` are in use.
    owed: [(u16, u64); MAX_OWED_EVENTS],
    owed_count: usize,
    released: u64,
    late_events: u64,
}

impl<T> Flipper<T> {
    /// Nothing in flight, on a new connection (event ids from 0); the frames
    /// before `next_frame` were shown (on earlier connections).
    pub fn new(next_frame: u64) -> Self {
        Flipper {
            flight: None,
            next_frame,
            next_event_id: 0,
            owed: [(0, 0); MAX_OWED_EVENTS],
            owed_count: 0,
            released: 0,
            late_events: 0,
        }
    }

    /// The number of the frame to show next: every frame before it was
    /// shown (or released). It moves on when a flip completes, so a frame
    /// whose flip failed, or was in flight when the connection went, is the
    /// next one again.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    /// The flip in flight.
    pub fn flight(&self) -> Option<&Flight<T>> {
        self.flight.as_ref()
    }

    /// Flips released without their EVT_PG_FLIP.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Events of released flips that came late, and were ignored.
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Gives up on the flip in flight, if any (its connector failed): its
    /// answer, should it come, is dropped; its frame is the next again.
    pub fn abandon<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>>(
        &mut self,
        connector: &mut Connector<R, E>,
    ) {
        if let Some(flight) = self.flight.take() {
            connector.abandon(flight.id);
        }
    }

    /// When the flip in flight next needs a look without anything coming
    /// from the backend: when its event is overdue, or when its ring counts
    /// as stuck.
    pub fn deadline(&self) -> Option<u64> {
        self.flight.as_ref().map(|flight| match flight.answered_ns {
            Some(answered) if !flight.shown => answered + FRAME_DONE_TIMEOUT_NS + 1,
            _ => flight.sent_ns + HANG_NS + 1,
        })
    }

    /// Sends PG_FLIP to `fb_cookie` on `connector`; returns whether the
    /// backend wants a notification, or why the connector cannot go on.
    pub fn send<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>>(
        &mut self,
        connector: &mut Connector<R, E>,
        fb_cookie: u64,
        now_ns: u64,
        tag: T,
    ) -> Result<bool, FlipError> {
        let (id, notify) = connector
            .send(&Request::PageFlip { fb_cookie }, now_ns)
            .map_err(FlipError::Send)?;
        self.flight = Some(Flight {
            id,
            fb_cookie,
            sent_ns: now_ns,
            answered_ns: None,
            shown: false,
            event_id: self.next_event_id,
            tag,
        });
        Ok(notify)
    }

    /// Takes what the backend produced on `connector` (named `name` in the
    /// warnings) and advances the flip in flight: completed (the next frame
    /// is due), released without its event, still pending, or failed (see
    /// the module's documentation; the request is then abandoned). Events
    /// that come with no flip in flight have nothing to complete and are
    /// dropped.
    // Out of line: inlined into the guest's display loop it cost about
    // 4 KiB of Image.
    #[inline(never)]
    pub fn poll<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>>(
        &mut self,
        connector: &mut Connector<R, E>,
        name: &str,
        now_ns: u64,
    ) -> FlipPoll<T> {
        if let Err(error) = connector.pump() {
            if let Some(flight) = self.flight.take() {
                connector.abandon(flight.id);
            }
            return FlipPoll::Failed(FlipError::Backend(error));
        }
        let mut flight = self.flight.take();
        if let Some(flight) = flight.as_mut() {
            match connector.take_response(flight.id) {
                Some(Ok(_)) => flight.answered_ns = Some(now_ns),
                Some(Err(error)) => return FlipPoll::Failed(FlipError::Backend(error)),
                None => {}
            }
        }
        for got in connector.take_stray() {
            match flight.as_ref() {
                Some(waiting) if waiting.answered_ns.is_none() => {
                    connector.abandon(waiting.id);
                    return FlipPoll::Failed(FlipError::WrongId {
                        expected: waiting.id,
                        got,
                    });
                }
                _ => log::warn!("display {name}: response id {got} answers no request; dropped"),
            }
        }
        while let Some((id, Event::PageFlip { fb_cookie })) = connector.take_event() {
            self.take_flip_event(flight.as_mut(), id, fb_cookie);
        }
        let Some(flight) = flight else {
            return FlipPoll::Idle;
        };
        match flight.answered_ns {
            Some(_) if flight.shown => {
                self.next_frame += 1;
                FlipPoll::Done {
                    round_trip_ns: now_ns.saturating_sub(flight.sent_ns),
                    tag: flight.tag,
                }
            }
            Some(answered) if now_ns.saturating_sub(answered) > FRAME_DONE_TIMEOUT_NS => {
                self.next_frame += 1;
                self.released += 1;
                self.next_event_id = flight.event_id.wrapping_add(1);
                if self.owed_count == MAX_OWED_EVENTS {
                    self.forget_owed(1);
                }
                self.owed[self.owed_count] = (flight.event_id, flight.fb_cookie);
                self.owed_count += 1;
                FlipPoll::Released {
                    release: Release {
                        id: flight.id,
                        fb_cookie: flight.fb_cookie,
                        waited_ms: (now_ns - answered) / NS_PER_MS,
                    },
                    tag: flight.tag,
                }
            }
            None if now_ns.saturating_sub(flight.sent_ns) > HANG_NS => {
                connector.abandon(flight.id);
                FlipPoll::Failed(FlipError::Stuck { id: flight.id })
            }
            _ => {
                self.flight = Some(flight);
                FlipPoll::Pending
            }
        }
    }

    /// An EVT_PG_FLIP with `id` for `fb_cookie`: the late event of a
    /// released flip (ignored, counted in [`Flipper::late_events`]), the
    /// event of the flight (shown), or one that belongs to nothing
    /// (ignored).
    fn take_flip_event(&mut self, flight: Option<&mut Flight<T>>, id: u16, fb_cookie: u64) {
        if let Some(owed) = self.owed[..self.owed_count]
            .iter()
            .position(|&(owed_id, owed_cookie)| owed_id == id && owed_cookie == fb_cookie)
        {
            // Events come in order: those owed before it will not come.
            self.forget_owed(owed + 1);
            self.late_events += 1;
            return;
        }
        match flight {
            Some(flight) if flight.fb_cookie == fb_cookie && !flight.shown => {
                flight.shown = true;
                // The backend's own numbering goes on from here; anything
                // owed was sent before this event, or never.
                self.next_event_id = id.wrapping_add(1);
                self.owed_count = 0;
            }
            // Another framebuffer's, or nothing in flight: ignored.
            _ => {}
        }
    }

    /// Forgets the oldest `count` owed events.
    fn forget_owed(&mut self, count: usize) {
        self.owed.copy_within(count..self.owed_count, 0);
        self.owed_count -= count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::displif::Operation;
    use crate::xen::ring::BackRing;
    use crate::xen::vdispl::backend::respond;
    use crate::xen::vdispl::tests::pages;
    use alloc::format;
    use alloc::string::ToString;

    const MS: u64 = NS_PER_MS;
    const NAME: &str = "conn=0 (DP-1)";

    /// Answers the oldest request on `back` with `status`; returns its id.
    fn answer(back: &mut BackRing<&SharedRing>, status: i32) -> u16 {
        let slot = back.take_request().unwrap().unwrap();
        assert_eq!(slot[2], Operation::PageFlip as u8);
        let response = respond(&slot, status);
        back.push_response(&response.encode()).unwrap();
        back.publish();
        response.id
    }

    fn event(events: &EventPage, id: u16, fb_cookie: u64) {
        events
            .push_event(&Event::PageFlip { fb_cookie }.encode(id))
            .unwrap();
    }

    #[test]
    fn a_flip_completes_with_its_response_and_its_own_event_only() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        // An event with nothing in flight completes nothing later on.
        event(&pages.events, 0, 7);
        assert_eq!(flipper.poll(&mut front, NAME, 0), FlipPoll::Idle);
        assert!(flipper.send(&mut front, 7, 10 * MS, "frame 0").unwrap());
        // Unanswered, it is looked at again only once its ring would be
        // stuck.
        assert_eq!(flipper.deadline(), Some(10 * MS + HANG_NS + 1));
        answer(&mut back, 0);
        // Answered, but the event is for another framebuffer.
        event(&pages.events, 1, 8);
        assert_eq!(flipper.poll(&mut front, NAME, 20 * MS), FlipPoll::Pending);
        assert_eq!(
            flipper.deadline(),
            Some(20 * MS + FRAME_DONE_TIMEOUT_NS + 1)
        );
        event(&pages.events, 2, 7);
        assert_eq!(
            flipper.poll(&mut front, NAME, 30 * MS),
            FlipPoll::Done {
                tag: "frame 0",
                round_trip_ns: 20 * MS
            }
        );
        assert!(flipper.flight().is_none());
        assert_eq!(flipper.next_frame(), 1);
        assert_eq!((flipper.released(), flipper.late_events()), (0, 0));
    }

    #[test]
    fn an_answered_flip_whose_event_never_comes_is_released_and_flipping_goes_on() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        flipper.send(&mut front, 7, 0, ()).unwrap();
        let id = answer(&mut back, 0);
        // The event timeout runs from the response, however late it came.
        let answered = 5_000 * MS;
        assert_eq!(flipper.poll(&mut front, NAME, answered), FlipPoll::Pending);
        assert_eq!(
            flipper.poll(&mut front, NAME, answered + FRAME_DONE_TIMEOUT_NS),
            FlipPoll::Pending
        );
        let release = Release {
            id,
            fb_cookie: 7,
            waited_ms: 3100,
        };
        assert_eq!(
            flipper.poll(&mut front, NAME, answered + FRAME_DONE_TIMEOUT_NS + 1),
            FlipPoll::Released { tag: (), release }
        );
        assert_eq!(
            format!("display {NAME}: {release}"),
            "display conn=0 (DP-1): frame done timed out, releasing (PG_FLIP id 1 to \
             framebuffer 0x7 answered, no EVT_PG_FLIP 3100 ms later)"
        );
        assert!(front.in_flight().is_empty());
        // The frame counts as shown; the connector goes on.
        assert_eq!((flipper.next_frame(), flipper.released()), (1, 1));
        assert!(flipper.send(&mut front, 8, 9_000 * MS, ()).is_ok());
    }

    #[test]
    fn a_late_event_completes_no_later_flip_even_to_the_same_framebuffer() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        let mut now = 0;
        // Flips to framebuffers 7 and 8 answered, their events late beyond
        // the timeout: both released, their events (ids 0 and 1) owed.
        for fb_cookie in [7, 8] {
            flipper.send(&mut front, fb_cookie, now, fb_cookie).unwrap();
            answer(&mut back, 0);
            assert_eq!(flipper.poll(&mut front, NAME, now), FlipPoll::Pending);
            now += FRAME_DONE_TIMEOUT_NS + 1;
            assert!(matches!(
                flipper.poll(&mut front, NAME, now),
                FlipPoll::Released { tag, .. } if tag == fb_cookie
            ));
        }
        // Framebuffer 7 again; then the first flip's event comes at last,
        // and the second's: they are ignored, this flip waits for its own.
        flipper.send(&mut front, 7, now, 77).unwrap();
        answer(&mut back, 0);
        event(&pages.events, 0, 7);
        event(&pages.events, 1, 8);
        assert_eq!(flipper.poll(&mut front, NAME, now + MS), FlipPoll::Pending);
        assert_eq!(flipper.late_events(), 2);
        event(&pages.events, 2, 7);
        assert_eq!(
            flipper.poll(&mut front, NAME, now + 2 * MS),
            FlipPoll::Done {
                tag: 77,
                round_trip_ns: 2 * MS
            }
        );
        assert_eq!(flipper.next_frame(), 3);
    }

    #[test]
    fn a_backend_that_never_sends_a_released_flips_event_is_followed() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        flipper.send(&mut front, 7, 0, ()).unwrap();
        answer(&mut back, 0);
        assert_eq!(flipper.poll(&mut front, NAME, 0), FlipPoll::Pending);
        let now = FRAME_DONE_TIMEOUT_NS + 1;
        assert!(matches!(
            flipper.poll(&mut front, NAME, now),
            FlipPoll::Released { .. }
        ));
        // The backend dropped that event: the next flip's carries id 0.
        flipper.send(&mut front, 8, now, ()).unwrap();
        answer(&mut back, 0);
        event(&pages.events, 0, 8);
        assert!(matches!(
            flipper.poll(&mut front, NAME, now + MS),
            FlipPoll::Done { .. }
        ));
        // Its numbering is followed from there.
        flipper.send(&mut front, 7, now + MS, ()).unwrap();
        answer(&mut back, 0);
        event(&pages.events, 1, 7);
        assert!(matches!(
            flipper.poll(&mut front, NAME, now + 2 * MS),
            FlipPoll::Done { .. }
        ));
        assert_eq!(flipper.late_events(), 0);
    }

    #[test]
    fn a_late_response_is_waited_for_until_the_ring_counts_as_stuck() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        flipper.send(&mut front, 7, 0, ()).unwrap();
        // 20 s without an answer: still waiting, far past Linux's 3 s.
        assert_eq!(
            flipper.poll(&mut front, NAME, 20_000 * MS),
            FlipPoll::Pending
        );
        answer(&mut back, 0);
        event(&pages.events, 0, 7);
        assert_eq!(
            flipper.poll(&mut front, NAME, 20_000 * MS),
            FlipPoll::Done {
                tag: (),
                round_trip_ns: 20_000 * MS
            }
        );
        // A flip that never gets an answer: stuck once HANG_NS passed.
        let sent = 21_000 * MS;
        flipper.send(&mut front, 8, sent, ()).unwrap();
        assert_eq!(
            flipper.poll(&mut front, NAME, sent + HANG_NS),
            FlipPoll::Pending
        );
        let stuck = flipper.poll(&mut front, NAME, sent + HANG_NS + 1);
        assert_eq!(stuck, FlipPoll::Failed(FlipError::Stuck { id: 2 }));
        let FlipPoll::Failed(error) = stuck else {
            unreachable!()
        };
        assert_eq!(
            error.to_string(),
            "PG_FLIP not completed: the backend never answered id 2 within 30000 ms (the ring \
             is stuck)"
        );
        assert!(front.in_flight().is_empty());
        assert_eq!(flipper.next_frame(), 1);
        // Its answer, if it comes after all, is dropped as late.
        answer(&mut back, 0);
        front.pump().unwrap();
        assert!(front.take_stray().is_empty());
        assert_eq!(front.late_responses(), 1);
    }

    #[test]
    fn a_response_with_a_wrong_id_fails_the_flip_at_once() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        flipper.send(&mut front, 7, 0, ()).unwrap();
        let slot = back.take_request().unwrap().unwrap();
        let mut response = respond(&slot, 0);
        response.id += 1;
        back.push_response(&response.encode()).unwrap();
        back.publish();
        assert_eq!(
            flipper.poll(&mut front, NAME, MS),
            FlipPoll::Failed(FlipError::WrongId {
                expected: 1,
                got: 2
            })
        );
        assert!(front.in_flight().is_empty());
        // An error status fails it too, naming the status.
        flipper.send(&mut front, 7, 2 * MS, ()).unwrap();
        answer(&mut back, -5);
        let FlipPoll::Failed(error) = flipper.poll(&mut front, NAME, 3 * MS) else {
            panic!("an error status completes nothing")
        };
        assert_eq!(error.to_string(), "PG_FLIP failed with status -5");
    }
}
