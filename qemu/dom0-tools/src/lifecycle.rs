//! The backend side of the XenBus handshake for one device, as a pure decision: given where
//! this backend is and what xenstore says now, what to do (io/xenbus.h states; io/displif.h
//! "STATE DIAGRAMS"; libxl's device add and remove).
//!
//! libxl creates the backend directory with state Initialising and waits (10 s) for InitWait;
//! the backend then publishes `versions` and goes InitWait. When the frontend is Initialised
//! the backend maps its rings, binds its event channels and goes Connected. When the frontend
//! goes Closing or Closed, or its directory disappears, the backend lets go of everything and
//! goes Closed. To remove a device libxl writes `online` = 0 and state Closing to the backend
//! and waits (10 s) for Closed, then removes both directories. A frontend that comes back to
//! Initialising after Closed (a reconnect) finds the backend at InitWait again.

use drivers::xen::xenbus::XenbusState;
use std::time::{Duration, Instant};

/// Where this backend is with a device (what it last wrote as its state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Seen, nothing written yet.
    New,
    /// `versions` published, state InitWait.
    InitWait,
    /// Rings mapped, event channels bound, state Connected.
    Connected,
    /// Nothing mapped, state Closed.
    Closed,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Stay,
    /// Publish `versions`, go InitWait.
    Offer,
    /// Map the rings, bind the event channels, go Connected.
    Connect,
    /// Let go of everything, go Closed.
    Close,
    /// Back to InitWait for a frontend that starts over.
    Reopen,
    /// The backend directory is gone: let go of everything and forget the device.
    Forget,
}

/// The next action, from this backend's phase, the backend `state` node (`None`: the
/// directory is gone), the frontend's `state` node (`None`: gone or unreadable) and the
/// backend's `online` node.
pub fn decide(
    phase: Phase,
    backend: Option<XenbusState>,
    frontend: Option<XenbusState>,
    online: bool,
) -> Action {
    use XenbusState as S;
    let Some(backend) = backend else {
        return Action::Forget;
    };
    // The toolstack removes the device: it waits for Closed.
    if backend == S::Closing {
        return Action::Close;
    }
    let frontend_gone = matches!(frontend, None | Some(S::Closing | S::Closed));
    match phase {
        Phase::New => match backend {
            S::Unknown | S::Initialising | S::InitWait if online => Action::Offer,
            // Left over from an earlier backend run, or being removed: nothing is mapped
            // here, so say Closed and let the frontend start over.
            _ => Action::Close,
        },
        Phase::InitWait => match frontend {
            Some(S::Initialised | S::Connected) => Action::Connect,
            _ if frontend_gone || !online => Action::Close,
            _ => Action::Stay,
        },
        Phase::Connected => {
            if frontend_gone || !online || frontend == Some(S::Initialising) {
                Action::Close
            } else {
                Action::Stay
            }
        }
        Phase::Closed => match frontend {
            Some(S::Initialising) if online => Action::Reopen,
            _ => Action::Stay,
        },
    }
}

/// How long a write of this backend's own waits for its watch event before it is forgotten.
pub const OWN_WRITE_TTL: Duration = Duration::from_secs(1);

/// The watch events this backend causes itself. It watches the whole backend tree to learn of
/// new devices and of what the toolstack writes, so every node it writes (`state`,
/// `versions`) comes back as an event that says nothing new, and looking at the device again
/// for it costs several xenstore round trips while a frontend may be waiting on its ring.
/// xenstored sends one event per write and watch: each write is counted here and one event of
/// its path is dropped. A count its event has not met within [`OWN_WRITE_TTL`] is forgotten,
/// so a lost event cannot hide a later write of someone else for long (and the backend looks
/// at every device every 2 s anyway).
#[derive(Debug, Default)]
pub struct OwnWrites {
    pending: Vec<(String, Instant)>,
}

impl OwnWrites {
    /// This backend wrote `path` at `now`.
    pub fn wrote(&mut self, path: &str, now: Instant) {
        self.forget_old(now);
        self.pending.push((path.to_string(), now));
    }

    /// Whether an event for `path` arriving at `now` is the echo of a write of this backend;
    /// if so it is counted off.
    pub fn is_echo(&mut self, path: &str, now: Instant) -> bool {
        self.forget_old(now);
        match self.pending.iter().position(|(written, _)| written == path) {
            Some(index) => {
                self.pending.remove(index);
                true
            }
            None => false,
        }
    }

    fn forget_old(&mut self, now: Instant) {
        self.pending
            .retain(|(_, at)| now.saturating_duration_since(*at) < OWN_WRITE_TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use XenbusState as S;

    #[test]
    fn each_own_write_hides_one_event_of_its_path_for_a_while() {
        let start = Instant::now();
        let mut writes = OwnWrites::default();
        let state = "/local/domain/0/backend/vdispl/1/0/state";
        writes.wrote(state, start);
        writes.wrote(state, start);
        assert!(!writes.is_echo("/local/domain/0/backend/vdispl/1/0/online", start));
        assert!(writes.is_echo(state, start));
        assert!(writes.is_echo(state, start));
        // A third event is someone else's write.
        assert!(!writes.is_echo(state, start));
        // An echo that never came does not hide a later event.
        writes.wrote(state, start);
        assert!(!writes.is_echo(state, start + OWN_WRITE_TTL));
    }

    #[test]
    fn a_new_device_is_offered_and_connected_once_the_frontend_is_ready() {
        assert_eq!(
            decide(
                Phase::New,
                Some(S::Initialising),
                Some(S::Initialising),
                true
            ),
            Action::Offer
        );
        assert_eq!(
            decide(
                Phase::InitWait,
                Some(S::InitWait),
                Some(S::Initialising),
                true
            ),
            Action::Stay
        );
        assert_eq!(
            decide(
                Phase::InitWait,
                Some(S::InitWait),
                Some(S::Initialised),
                true
            ),
            Action::Connect
        );
        assert_eq!(
            decide(
                Phase::Connected,
                Some(S::Connected),
                Some(S::Connected),
                true
            ),
            Action::Stay
        );
    }

    #[test]
    fn the_frontend_closing_or_vanishing_closes_the_device() {
        for frontend in [Some(S::Closing), Some(S::Closed), None] {
            assert_eq!(
                decide(Phase::Connected, Some(S::Connected), frontend, true),
                Action::Close,
                "{frontend:?}"
            );
            assert_eq!(
                decide(Phase::InitWait, Some(S::InitWait), frontend, true),
                Action::Close,
                "{frontend:?}"
            );
        }
        // Once closed it stays closed while the frontend finishes.
        assert_eq!(
            decide(Phase::Closed, Some(S::Closed), Some(S::Closed), true),
            Action::Stay
        );
    }

    #[test]
    fn the_toolstack_removing_the_device_gets_closed_at_once() {
        for phase in [Phase::New, Phase::InitWait, Phase::Connected, Phase::Closed] {
            assert_eq!(
                decide(phase, Some(S::Closing), Some(S::Connected), false),
                Action::Close,
                "{phase:?}"
            );
            assert_eq!(
                decide(phase, None, None, false),
                Action::Forget,
                "{phase:?}"
            );
        }
        assert_eq!(
            decide(
                Phase::Connected,
                Some(S::Connected),
                Some(S::Connected),
                false
            ),
            Action::Close
        );
    }

    #[test]
    fn a_frontend_that_starts_over_finds_init_wait_again() {
        assert_eq!(
            decide(
                Phase::Connected,
                Some(S::Connected),
                Some(S::Initialising),
                true
            ),
            Action::Close
        );
        assert_eq!(
            decide(Phase::Closed, Some(S::Closed), Some(S::Initialising), true),
            Action::Reopen
        );
        assert_eq!(
            decide(Phase::Closed, Some(S::Closed), Some(S::Initialising), false),
            Action::Stay
        );
    }

    #[test]
    fn a_backend_restarted_mid_connection_closes_what_it_cannot_serve() {
        assert_eq!(
            decide(Phase::New, Some(S::Connected), Some(S::Connected), true),
            Action::Close
        );
        assert_eq!(
            decide(Phase::New, Some(S::InitWait), Some(S::Initialising), true),
            Action::Offer
        );
        assert_eq!(
            decide(Phase::New, Some(S::Closed), Some(S::Closed), true),
            Action::Close
        );
    }
}
