//! A store that comes up after the domain starts: the late xenstore initialisation of domains
//! Xen builds from the device tree (dom0less, `xen,enhanced`; docs/features/dom0less.pandoc in
//! Xen, "PV Drivers").
//!
//! Such a domain runs before any toolstack exists. Later, a toolstack in Dom0 (`init-dom0less`)
//! introduces it to xenstored, which then marks the page connected and notifies the domain on
//! its store event channel (`HVM_PARAM_STORE_EVTCHN`, which Xen set at boot). Until then nothing
//! serves the ring, and anything written to it is lost: xenstored resets the ring indexes when it
//! takes a domain in. The domain sees one of two shapes:
//!
//! - Xen 4.21 allocates the page itself: `HVM_PARAM_STORE_PFN` names it from the start, and the
//!   page's `connection` field reads `XENSTORE_RECONNECT` until xenstored sets
//!   `XENSTORE_CONNECTED`.
//! - Xen up to 4.20 (and 4.21 with its legacy option): `HVM_PARAM_STORE_PFN` reads `~0` (no page)
//!   until `init-dom0less` allocates one, marks it `XENSTORE_RECONNECT` and sets the parameter.
//!
//! Either way the domain sends nothing until it has seen an event on the store's channel and
//! then found the parameter naming a page whose `connection` is `XENSTORE_CONNECTED`; it checks
//! again after every event (an event may come early, for another reason). A domain the toolstack
//! built (`xl create`) finds its page connected at once. The wait is bounded: a store that never
//! comes ends it with [`LateError::NotConnected`], which says what was last seen.
//!
//! The domain reaches the parameter, the page and the event channel through [`Source`], so host
//! tests run it against the fake xenstored.

use core::fmt;

use super::ring::{XENSTORE_CONNECTED, XENSTORE_RECONNECT};

/// `HVM_PARAM_STORE_PFN` while the store page is yet to be allocated (Xen up to 4.20).
pub const STORE_PFN_LATE: u64 = u64::MAX;

/// What the domain needs to wait for its store.
pub trait Source {
    /// What reading the parameter or the page can fail with.
    type Error: fmt::Display;
    /// `HVM_PARAM_STORE_PFN` as Xen gives it now.
    fn store_pfn(&mut self) -> Result<u64, Self::Error>;
    /// The `connection` field of the store page at `pfn`, mapping the page first if need be.
    fn connection(&mut self, pfn: u64) -> Result<u32, Self::Error>;
    /// Sleeps until an event on the store's channel (`true`, the event taken) or the monotonic
    /// clock reaching `deadline_ns` (`false`).
    fn wait_event(&mut self, deadline_ns: u64) -> bool;
    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
}

/// The store as the domain finds it at one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No store: `HVM_PARAM_STORE_PFN` is 0.
    Absent,
    /// The page at `pfn` is connected: requests may go.
    Connected {
        /// Its frame number.
        pfn: u64,
    },
    /// The store is to come later.
    Waiting {
        /// The page, once allocated (`None` while the parameter reads [`STORE_PFN_LATE`]).
        pfn: Option<u64>,
        /// Its `connection` field, when there is a page.
        connection: Option<u32>,
    },
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            State::Absent => f.write_str("no store (HVM_PARAM_STORE_PFN 0)"),
            State::Connected { pfn } => write!(f, "page at pfn {pfn:#x} connected"),
            State::Waiting { pfn: None, .. } => f.write_str("HVM_PARAM_STORE_PFN ~0, no page yet"),
            State::Waiting {
                pfn: Some(pfn),
                connection: Some(XENSTORE_RECONNECT),
            } => write!(f, "page at pfn {pfn:#x} not connected (XENSTORE_RECONNECT)"),
            State::Waiting {
                pfn: Some(pfn),
                connection: Some(other),
            } => write!(f, "page at pfn {pfn:#x} says connection {other}"),
            State::Waiting {
                pfn: Some(pfn),
                connection: None,
            } => write!(f, "page at pfn {pfn:#x}"),
        }
    }
}

/// The store did not come up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LateError<E> {
    /// Reading the parameter or the page failed.
    Source(E),
    /// The wait ended without a connected page.
    NotConnected {
        /// How long the domain waited, in milliseconds.
        waited_ms: u64,
        /// Events seen on the store's channel meanwhile.
        events: u32,
        /// What the last look found.
        last: State,
    },
}

impl<E: fmt::Display> fmt::Display for LateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LateError::Source(error) => write!(f, "{error}"),
            LateError::NotConnected {
                waited_ms,
                events,
                last,
            } => write!(f, "no store after {waited_ms} ms ({events} events; {last})"),
        }
    }
}

/// How the store came up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connected {
    /// The page's frame number.
    pub pfn: u64,
    /// How long the domain waited for it, in nanoseconds (0 when it was connected at once).
    pub waited_ns: u64,
    /// Events seen on the store's channel meanwhile.
    pub events: u32,
}

/// Looks once at the parameter and, when it names a page, at the page.
pub fn probe<S: Source>(source: &mut S) -> Result<State, S::Error> {
    let pfn = source.store_pfn()?;
    Ok(match pfn {
        0 => State::Absent,
        STORE_PFN_LATE => State::Waiting {
            pfn: None,
            connection: None,
        },
        pfn => match source.connection(pfn)? {
            XENSTORE_CONNECTED => State::Connected { pfn },
            connection => State::Waiting {
                pfn: Some(pfn),
                connection: Some(connection),
            },
        },
    })
}

/// Waits, at most `wait_ns`, until the store is connected: looks, and after each event on the
/// store's channel looks again. `Ok(None)` when the domain has no store.
pub fn connect<S: Source>(
    source: &mut S,
    wait_ns: u64,
) -> Result<Option<Connected>, LateError<S::Error>> {
    let start = source.now_ns();
    let deadline = start.saturating_add(wait_ns);
    let mut events = 0u32;
    loop {
        let state = probe(source).map_err(LateError::Source)?;
        match state {
            State::Absent => return Ok(None),
            State::Connected { pfn } => {
                return Ok(Some(Connected {
                    pfn,
                    waited_ns: source.now_ns().saturating_sub(start),
                    events,
                }))
            }
            State::Waiting { .. } => {}
        }
        if source.now_ns() >= deadline || !source.wait_event(deadline) {
            // Deadline: one last look, in case the page was connected without an event.
            let last = probe(source).map_err(LateError::Source)?;
            match last {
                State::Absent => return Ok(None),
                State::Connected { pfn } => {
                    return Ok(Some(Connected {
                        pfn,
                        waited_ns: source.now_ns().saturating_sub(start),
                        events,
                    }))
                }
                State::Waiting { .. } => {}
            }
            return Err(LateError::NotConnected {
                waited_ms: source.now_ns().saturating_sub(start) / 1_000_000,
                events,
                last,
            });
        }
        events = events.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::xenstore::client::{Client, Error, Transport};
    use crate::xen::xenstore::fake::{FakeXenstored, LateShape, FAKE_STORE_PFN};
    use std::string::ToString;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_store_the_toolstack_built_is_connected_at_once() {
        let mut fake = FakeXenstored::new();
        assert_eq!(
            probe(&mut fake),
            Ok(State::Connected {
                pfn: FAKE_STORE_PFN
            })
        );
        let connected = connect(&mut fake, 60 * SECOND).unwrap().unwrap();
        assert_eq!(
            connected,
            Connected {
                pfn: FAKE_STORE_PFN,
                waited_ns: 0,
                events: 0
            }
        );
        assert_eq!(fake.waits(), 0);
    }

    #[test]
    fn xen_4_21_page_waits_for_the_event_then_serves() {
        let mut fake = FakeXenstored::new();
        fake.start_late(LateShape::PageFromXen);
        fake.introduce_at(3 * SECOND);
        let state = probe(&mut fake).unwrap();
        assert_eq!(
            state,
            State::Waiting {
                pfn: Some(FAKE_STORE_PFN),
                connection: Some(1)
            }
        );
        assert_eq!(
            state.to_string(),
            "page at pfn 0x39001 not connected (XENSTORE_RECONNECT)"
        );
        let connected = connect(&mut fake, 60 * SECOND).unwrap().unwrap();
        assert_eq!(connected.pfn, FAKE_STORE_PFN);
        assert_eq!(connected.events, 1);
        assert_eq!(connected.waited_ns, 3 * SECOND);
        assert!(fake.introduced());
        // Nothing was sent before the store came up.
        assert!(fake.requests().is_empty());
        assert_eq!(fake.notifications(), 0);
        let mut client = Client::new(fake);
        client.write("data/late", b"up").unwrap();
        assert_eq!(client.read("data/late").unwrap(), b"up");
    }

    #[test]
    fn xen_4_20_parameter_reads_late_until_the_toolstack_sets_it() {
        let mut fake = FakeXenstored::new();
        fake.start_late(LateShape::PageFromToolstack);
        fake.introduce_at(SECOND);
        let state = probe(&mut fake).unwrap();
        assert_eq!(
            state,
            State::Waiting {
                pfn: None,
                connection: None
            }
        );
        assert_eq!(state.to_string(), "HVM_PARAM_STORE_PFN ~0, no page yet");
        // No page to read while the parameter reads ~0.
        assert_eq!(fake.connection_reads(), 0);
        let connected = connect(&mut fake, 60 * SECOND).unwrap().unwrap();
        assert_eq!((connected.pfn, connected.events), (FAKE_STORE_PFN, 1));
        let mut client = Client::new(fake);
        assert_eq!(client.get_domain_path(1).unwrap(), "/local/domain/1");
    }

    #[test]
    fn an_early_event_is_not_taken_for_the_store() {
        let mut fake = FakeXenstored::new();
        fake.start_late(LateShape::PageFromXen);
        fake.notify_domain_at(SECOND);
        fake.introduce_at(5 * SECOND);
        let connected = connect(&mut fake, 60 * SECOND).unwrap().unwrap();
        assert_eq!(connected.events, 2);
        assert_eq!(connected.waited_ns, 5 * SECOND);
    }

    #[test]
    fn a_store_that_never_comes_ends_the_wait_with_what_was_seen() {
        let mut fake = FakeXenstored::new();
        fake.start_late(LateShape::PageFromXen);
        fake.notify_domain_at(2 * SECOND);
        let error = connect(&mut fake, 30 * SECOND).unwrap_err();
        assert_eq!(
            error,
            LateError::NotConnected {
                waited_ms: 30_000,
                events: 1,
                last: State::Waiting {
                    pfn: Some(FAKE_STORE_PFN),
                    connection: Some(1)
                }
            }
        );
        assert_eq!(
            error.to_string(),
            "no store after 30000 ms (1 events; page at pfn 0x39001 not connected \
             (XENSTORE_RECONNECT))"
        );
        // The clock stopped at the deadline: the wait is bounded.
        assert_eq!(Transport::now_ns(&fake), 30 * SECOND);
        assert!(fake.requests().is_empty());

        let mut legacy = FakeXenstored::new();
        legacy.start_late(LateShape::PageFromToolstack);
        let error = connect(&mut legacy, 0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no store after 0 ms (0 events; HVM_PARAM_STORE_PFN ~0, no page yet)"
        );
    }

    #[test]
    fn requests_sent_before_the_store_is_up_are_lost() {
        // Why the domain waits: xenstored resets the ring when it takes the domain in.
        let mut fake = FakeXenstored::new();
        fake.start_late(LateShape::PageFromXen);
        fake.introduce_at(SECOND);
        let mut client = Client::new(fake);
        client.set_request_timeout_ns(5 * SECOND);
        assert!(matches!(client.read("data/x"), Err(Error::Timeout { .. })));
        assert!(client.transport().requests().is_empty());
        assert!(client.transport().introduced());
    }

    /// A source whose parameter read fails.
    struct Refusing;

    impl Source for Refusing {
        type Error = &'static str;
        fn store_pfn(&mut self) -> Result<u64, &'static str> {
            Err("HVMOP_get_param: EINVAL")
        }
        fn connection(&mut self, _pfn: u64) -> Result<u32, &'static str> {
            Ok(0)
        }
        fn wait_event(&mut self, _deadline_ns: u64) -> bool {
            false
        }
        fn now_ns(&self) -> u64 {
            0
        }
    }

    #[test]
    fn an_absent_store_or_a_failing_parameter_is_said() {
        assert_eq!(
            State::Absent.to_string(),
            "no store (HVM_PARAM_STORE_PFN 0)"
        );
        assert_eq!(
            connect(&mut Refusing, SECOND),
            Err(LateError::Source("HVMOP_get_param: EINVAL"))
        );
    }
}
