//! One connector's page flip in flight: sent, answered, shown (EVT_PG_FLIP),
//! and what stops it: an error status, a broken ring or event page, or a
//! response and event that do not come in time.

use super::connector::Connector;
use crate::xen::displif::{Event, Request};
use crate::xen::ring::{EventPage, SharedRing};
use alloc::format;
use alloc::string::String;
use core::ops::Deref;

const NS_PER_MS: u64 = 1_000_000;

/// How long a flip may wait for its response and EVT_PG_FLIP (Linux's
/// xen-drm-front uses the same bound).
pub const FLIP_TIMEOUT_NS: u64 = 3_100 * NS_PER_MS;

/// A PG_FLIP sent and not completed yet; `T` is what the caller keeps with
/// it (the line to print once it is shown).
pub struct Flight<T> {
    /// The request's id.
    pub id: u16,
    /// The framebuffer flipped to.
    pub fb_cookie: u64,
    /// When it was sent.
    pub sent_ns: u64,
    answered: bool,
    shown: bool,
    /// The caller's data.
    pub tag: T,
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
    /// The connector cannot go on, for this reason.
    Failed(String),
}

/// The flip in flight on one connector, at most one at a time, and the
/// frames shown so far.
pub struct Flipper<T> {
    flight: Option<Flight<T>>,
    /// The id of a response that answered no request, seen since the flip
    /// in flight was sent.
    stray: Option<u16>,
    next_frame: u64,
}

impl<T> Flipper<T> {
    /// Nothing in flight; the frames before `next_frame` were shown (on
    /// earlier connections).
    pub fn new(next_frame: u64) -> Self {
        Flipper {
            flight: None,
            stray: None,
            next_frame,
        }
    }

    /// The number of the frame to show next: every frame before it was
    /// shown. It moves on when a flip completes, so a frame whose flip
    /// failed, or was in flight when the connection went, is the next one
    /// again.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    /// The flip in flight.
    pub fn flight(&self) -> Option<&Flight<T>> {
        self.flight.as_ref()
    }

    /// When the flip in flight is past [`FLIP_TIMEOUT_NS`], if one is.
    pub fn deadline(&self) -> Option<u64> {
        self.flight
            .as_ref()
            .map(|flight| flight.sent_ns + FLIP_TIMEOUT_NS + 1)
    }

    /// Sends PG_FLIP to `fb_cookie` on `connector`; returns whether the
    /// backend wants a notification, or why the connector cannot go on.
    pub fn send<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>>(
        &mut self,
        connector: &mut Connector<R, E>,
        fb_cookie: u64,
        now_ns: u64,
        tag: T,
    ) -> Result<bool, String> {
        let (id, notify) = connector
            .send(&Request::PageFlip { fb_cookie }, now_ns)
            .map_err(|error| format!("PG_FLIP: {error}"))?;
        self.stray = None;
        self.flight = Some(Flight {
            id,
            fb_cookie,
            sent_ns: now_ns,
            answered: false,
            shown: false,
            tag,
        });
        Ok(notify)
    }

    /// Takes what the backend produced on `connector` (named `name` in the
    /// warnings) and advances the flip in flight: completed (the next frame
    /// is due), still pending,
    /// or failed (an error status, a broken ring or event page, or no
    /// response and EVT_PG_FLIP within [`FLIP_TIMEOUT_NS`] of sending; the
    /// request is then abandoned). Events that come with no flip in flight
    /// have nothing to complete and are dropped.
    pub fn poll<R: Deref<Target = SharedRing>, E: Deref<Target = EventPage>>(
        &mut self,
        connector: &mut Connector<R, E>,
        name: &str,
        now_ns: u64,
    ) -> FlipPoll<T> {
        if let Err(error) = connector.pump() {
            return FlipPoll::Failed(format!("{error}"));
        }
        for id in connector.take_stray() {
            log::warn!("display {name}: response id {id} answers no request; dropped");
            self.stray = Some(id);
        }
        let Some(mut flight) = self.flight.take() else {
            while connector.take_event().is_some() {}
            return FlipPoll::Idle;
        };
        if let Some(result) = connector.take_response(flight.id) {
            match result {
                Ok(_) => flight.answered = true,
                Err(error) => return FlipPoll::Failed(format!("{error}")),
            }
        }
        while let Some(Event::PageFlip { fb_cookie }) = connector.take_event() {
            if fb_cookie == flight.fb_cookie {
                flight.shown = true;
            } else {
                log::warn!(
                    "display {name}: EVT_PG_FLIP for framebuffer {fb_cookie:#x}, expected {:#x}; ignored",
                    flight.fb_cookie
                );
            }
        }
        let elapsed = now_ns.saturating_sub(flight.sent_ns);
        if flight.answered && flight.shown {
            self.next_frame += 1;
            return FlipPoll::Done {
                tag: flight.tag,
                round_trip_ns: elapsed,
            };
        }
        if elapsed > FLIP_TIMEOUT_NS {
            connector.abandon(flight.id);
            let response = match (flight.answered, self.stray) {
                (true, _) => String::from("received"),
                (false, Some(stray)) => format!(
                    "missing: a response with the wrong id {stray} came instead of id {}",
                    flight.id
                ),
                (false, None) => String::from("missing: the backend never answered"),
            };
            return FlipPoll::Failed(format!(
                "PG_FLIP not completed within {} ms (response {response}, EVT_PG_FLIP {})",
                FLIP_TIMEOUT_NS / NS_PER_MS,
                if flight.shown { "received" } else { "missing" }
            ));
        }
        self.flight = Some(flight);
        FlipPoll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::displif::Operation;
    use crate::xen::ring::BackRing;
    use crate::xen::vdispl::backend::respond;
    use crate::xen::vdispl::tests::pages;

    const MS: u64 = NS_PER_MS;

    #[test]
    fn a_flip_completes_with_its_response_and_its_own_event_only() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        // An event with nothing in flight completes nothing later on.
        pages
            .events
            .push_event(&Event::PageFlip { fb_cookie: 7 }.encode(0))
            .unwrap();
        assert_eq!(flipper.poll(&mut front, "conn=0 (DP-1)", 0), FlipPoll::Idle);
        assert!(flipper.send(&mut front, 7, 10 * MS, "frame 0").unwrap());
        assert_eq!(flipper.deadline(), Some(10 * MS + FLIP_TIMEOUT_NS + 1));
        let slot = back.take_request().unwrap().unwrap();
        assert_eq!(slot[2], Operation::PageFlip as u8);
        let response = respond(&slot, 0);
        back.push_response(&response.encode()).unwrap();
        back.publish();
        // Answered, but the event is for another framebuffer.
        pages
            .events
            .push_event(&Event::PageFlip { fb_cookie: 8 }.encode(1))
            .unwrap();
        assert_eq!(
            flipper.poll(&mut front, "conn=0 (DP-1)", 20 * MS),
            FlipPoll::Pending
        );
        pages
            .events
            .push_event(&Event::PageFlip { fb_cookie: 7 }.encode(2))
            .unwrap();
        assert_eq!(
            flipper.poll(&mut front, "conn=0 (DP-1)", 30 * MS),
            FlipPoll::Done {
                tag: "frame 0",
                round_trip_ns: 20 * MS
            }
        );
        assert!(flipper.flight().is_none());
        assert_eq!(flipper.next_frame(), 1);
    }

    #[test]
    fn an_answered_flip_whose_event_never_comes_times_out_naming_what_is_missing() {
        let pages = pages();
        let mut front = Connector::new(&*pages.ring, &*pages.events);
        let mut back = BackRing::new(&*pages.ring);
        let mut flipper = Flipper::new(0);
        flipper.send(&mut front, 7, 0, ()).unwrap();
        let slot = back.take_request().unwrap().unwrap();
        let response = respond(&slot, 0);
        back.push_response(&response.encode()).unwrap();
        back.publish();
        assert_eq!(
            flipper.poll(&mut front, "conn=0 (DP-1)", FLIP_TIMEOUT_NS),
            FlipPoll::Pending
        );
        assert_eq!(
            flipper.poll(&mut front, "conn=0 (DP-1)", FLIP_TIMEOUT_NS + 1),
            FlipPoll::Failed(String::from(
                "PG_FLIP not completed within 3100 ms (response received, EVT_PG_FLIP missing)"
            ))
        );
        assert!(front.in_flight().is_empty());
        // The frame was not shown: it is still the next one.
        assert_eq!(flipper.next_frame(), 0);
    }
}
