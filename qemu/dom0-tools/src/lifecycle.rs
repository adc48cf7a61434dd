//! The backend side of the XenBus handshake for one device, as a pure decision: given where
//! this backend is and what xenstore says now, what to do (io/xenbus.h states; io/displif.h
//! "STATE DIAGRAMS"; libxl's device add and remove).
//!
//! libxl creates the backend directory with state Initialising and waits (10 s) for InitWait;
//! the backend then publishes `versions` and goes InitWait. When the frontend is Initialised
//! the backend maps its rings, binds its event channels and goes Connected. When the frontend
//! goes Closing or Closed, or its directory disappears, the backend closes ([`close_steps`]):
//! it writes Closing, lets go of everything (unmaps, unbinds), then writes Closed, as libxenbe
//! does and as Linux's frontend needs (at shutdown `xenbus_frontend_dev_shutdown` waits 5 s for
//! the other end's Closing and ignores Closed). To remove a device libxl writes `online` = 0
//! and state Closing to the backend and waits (10 s) for Closed, then removes both
//! directories. A frontend that comes back to Initialising after Closed (a reconnect) finds the
//! backend at InitWait again. A strict backend (libxenbe's `close(XenbusStateInitWait)`) goes
//! on to InitWait at once after a close the frontend started, and leaves a frontend that closes
//! before connecting alone.
//!
//! A frontend whose nodes the backend refuses (a connector missing below a listed one, a
//! protocol version it does not offer, a listed connector without its rings: see
//! `frontend::DeviceRefusal`) is not closed: the backend stays at InitWait
//! ([`Phase::Refused`]), says why in the device's xenbus error node, and looks at the nodes
//! again only when the frontend changes them or its state ([`frontend_changed`]), so the
//! frontend can put them right.

use drivers::xen::xenbus::XenbusState;
use std::time::{Duration, Instant};

/// Where this backend is with a device (what it last wrote as its state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Seen, nothing written yet.
    New,
    /// `versions` published, state InitWait.
    InitWait,
    /// State InitWait, the frontend's nodes refused: nothing is set up until the frontend
    /// changes them ([`frontend_changed`]).
    Refused,
    /// Rings mapped, event channels bound, state Connected.
    Connected,
    /// State InitWait written over a live connection this backend dropped (the `state-back`
    /// fault): the frontend's Initialised or Connected still describes the connection just
    /// dropped (its rings, its requests), so the device is not connected again until the
    /// frontend has left those states ([`settle`]).
    Dropped,
    /// Nothing mapped, state Closed.
    Closed,
}

/// The phase to decide from, given the frontend's state now: a dropped connection's device
/// ([`Phase::Dropped`]) is an ordinary one at InitWait once the frontend shows it noticed
/// (any state but Initialised and Connected); any other phase stays.
pub fn settle(phase: Phase, frontend: Option<XenbusState>) -> Phase {
    use XenbusState as S;
    match (phase, frontend) {
        (Phase::Dropped, Some(S::Initialised | S::Connected)) => Phase::Dropped,
        (Phase::Dropped, _) => Phase::InitWait,
        (phase, _) => phase,
    }
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
    decide_as(false, phase, backend, frontend, online)
}

/// [`decide`] for a lenient backend (`strict` false) or one that behaves as libxenbe does
/// (`strict`): that one sits at InitWait whatever the frontend does until it is Initialised
/// (libxenbe acts on the frontend's Closing and Closed only once connected).
pub fn decide_as(
    strict: bool,
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
        // The frontend has not noticed yet: its rings are the dropped connection's.
        Phase::Dropped => Action::Stay,
        Phase::InitWait => match frontend {
            Some(S::Initialised | S::Connected) => Action::Connect,
            _ if !online || frontend.is_none() => Action::Close,
            _ if frontend_gone && !strict => Action::Close,
            _ => Action::Stay,
        },
        // Refused nodes are read again only once the frontend changed (`frontend_changed`).
        Phase::Refused => match frontend {
            _ if !online || frontend.is_none() => Action::Close,
            _ if frontend_gone && !strict => Action::Close,
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

/// The phase once the frontend changed its state or nodes: a refused device is looked at
/// again as one at InitWait (so a frontend that is Initialised is connected if its nodes are
/// good now); any other phase stays.
pub fn frontend_changed(phase: Phase) -> Phase {
    match phase {
        Phase::Refused => Phase::InitWait,
        phase => phase,
    }
}

/// What the backend has said about a device's refused nodes, so that a refusal is logged once
/// per attempt (not at every look) and its error node goes once the nodes are good.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefusalState {
    /// The refusal logged since the backend last wrote the device's state.
    logged: Option<String>,
    /// A refusal of the whole device is what its error node says.
    in_effect: bool,
}

impl RefusalState {
    /// The frontend's nodes are refused with `message`: whether it is to be logged (it was not
    /// since the backend last wrote the device's state).
    pub fn refused(&mut self, message: &str) -> bool {
        self.in_effect = true;
        if self.logged.as_deref() == Some(message) {
            return false;
        }
        self.logged = Some(message.to_string());
        true
    }

    /// The backend wrote the device's state: a new attempt, whose refusal is said again.
    pub fn state_written(&mut self) {
        self.logged = None;
    }

    /// A look found the nodes good: whether a refusal was in effect (its error node is to
    /// go).
    pub fn nodes_good(&mut self) -> bool {
        self.logged = None;
        std::mem::take(&mut self.in_effect)
    }

    /// The error node says something else now (or nothing): no refusal of the whole device is
    /// in effect.
    pub fn replaced(&mut self) {
        self.in_effect = false;
    }

    /// Whether a refusal of the whole device is in effect.
    pub fn in_effect(&self) -> bool {
        self.in_effect
    }
}

/// One step of closing a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write this state to the backend's `state` node.
    Write(XenbusState),
    /// Let go of everything mapped and bound for the device.
    Release,
}

/// What closing a device takes, given what xenstore said when the close was decided (see
/// [`decide_as`]): Closing (unless the node says Closing or Closed already), then the release, then
/// Closed. A strict backend whose frontend closed or restarted while the device was up goes
/// on to InitWait at once, as libxenbe's `close(XenbusStateInitWait)` does; never when the
/// toolstack removes the device (it waits for Closed) or the frontend is gone.
pub fn close_steps(
    strict: bool,
    backend: Option<XenbusState>,
    frontend: Option<XenbusState>,
    online: bool,
) -> Vec<Step> {
    use XenbusState as S;
    let mut steps = Vec::with_capacity(4);
    // Nothing to announce when the node says Closing (the toolstack) or Closed already.
    if !matches!(backend, Some(S::Closing | S::Closed)) {
        steps.push(Step::Write(S::Closing));
    }
    steps.push(Step::Release);
    steps.push(Step::Write(S::Closed));
    let frontend_left = matches!(frontend, Some(S::Closing | S::Closed | S::Initialising));
    let removed = backend == Some(S::Closing) || !online;
    if strict && frontend_left && !removed {
        steps.push(Step::Write(S::InitWait));
    }
    steps
}

/// Closing a device because of this backend (a broken ring, a failed connection, the backend
/// stopping): Closing, the release, Closed.
pub const BACKEND_CLOSE: [Step; 3] = [
    Step::Write(XenbusState::Closing),
    Step::Release,
    Step::Write(XenbusState::Closed),
];

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
    fn a_dropped_connection_is_not_connected_again_until_the_frontend_noticed() {
        // Right after the backend went back to InitWait the frontend still says Connected
        // (or Initialised): those are the old rings.
        for frontend in [S::Connected, S::Initialised] {
            let phase = settle(Phase::Dropped, Some(frontend));
            assert_eq!(phase, Phase::Dropped);
            assert_eq!(
                decide(phase, Some(S::InitWait), Some(frontend), true),
                Action::Stay
            );
        }
        // The frontend closes: the backend closes too, as from InitWait.
        let phase = settle(Phase::Dropped, Some(S::Closing));
        assert_eq!(phase, Phase::InitWait);
        assert_eq!(
            decide(phase, Some(S::InitWait), Some(S::Closing), true),
            Action::Close
        );
        // A frontend that starts over without closing first: once it is Initialising the
        // device is an ordinary one at InitWait, and its next Initialised is connected.
        let phase = settle(Phase::Dropped, Some(S::Initialising));
        assert_eq!(phase, Phase::InitWait);
        let phase = settle(phase, Some(S::Initialised));
        assert_eq!(
            decide(phase, Some(S::InitWait), Some(S::Initialised), true),
            Action::Connect
        );
        // The toolstack removing the device, or the frontend gone, still closes it.
        assert_eq!(
            decide(Phase::Dropped, Some(S::Closing), Some(S::Connected), true),
            Action::Close
        );
        assert_eq!(
            decide(settle(Phase::Dropped, None), Some(S::InitWait), None, true),
            Action::Close
        );
        // Every other phase is left alone.
        for phase in [
            Phase::New,
            Phase::InitWait,
            Phase::Refused,
            Phase::Connected,
            Phase::Closed,
        ] {
            assert_eq!(settle(phase, Some(S::Connected)), phase);
        }
    }

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
        for phase in [
            Phase::New,
            Phase::InitWait,
            Phase::Refused,
            Phase::Connected,
            Phase::Closed,
        ] {
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
    fn closing_writes_closing_before_the_release_and_closed_after_it() {
        use Step::{Release, Write};
        // The frontend closes (Linux at shutdown waits for our Closing).
        assert_eq!(
            close_steps(false, Some(S::Connected), Some(S::Closing), true),
            [Write(S::Closing), Release, Write(S::Closed)]
        );
        // The toolstack wrote Closing already: it waits for Closed.
        for strict in [false, true] {
            assert_eq!(
                close_steps(strict, Some(S::Closing), Some(S::Connected), false),
                [Release, Write(S::Closed)]
            );
        }
        // A strict backend goes on to InitWait when the frontend left or restarted...
        for frontend in [S::Closing, S::Closed, S::Initialising] {
            assert_eq!(
                close_steps(true, Some(S::Connected), Some(frontend), true),
                [
                    Write(S::Closing),
                    Release,
                    Write(S::Closed),
                    Write(S::InitWait)
                ],
                "{frontend:?}"
            );
        }
        // ...but not when the frontend is gone or the device is offline.
        assert_eq!(
            close_steps(true, Some(S::Connected), None, true),
            [Write(S::Closing), Release, Write(S::Closed)]
        );
        assert_eq!(
            close_steps(true, Some(S::Connected), Some(S::Closed), false),
            [Write(S::Closing), Release, Write(S::Closed)]
        );
        // A device left Closed by an earlier run is not announced again.
        assert_eq!(
            close_steps(false, Some(S::Closed), Some(S::Closed), true),
            [Release, Write(S::Closed)]
        );
        assert_eq!(
            BACKEND_CLOSE,
            [Write(S::Closing), Release, Write(S::Closed)]
        );
    }

    #[test]
    fn a_strict_backend_waits_at_init_wait_for_the_frontend() {
        for frontend in [S::Closing, S::Closed, S::Initialising] {
            assert_eq!(
                decide_as(
                    true,
                    Phase::InitWait,
                    Some(S::InitWait),
                    Some(frontend),
                    true
                ),
                Action::Stay,
                "{frontend:?}"
            );
        }
        assert_eq!(
            decide_as(
                true,
                Phase::InitWait,
                Some(S::InitWait),
                Some(S::Initialised),
                true
            ),
            Action::Connect
        );
        assert_eq!(
            decide_as(true, Phase::InitWait, Some(S::InitWait), None, true),
            Action::Close
        );
        // The lenient backend closes for a frontend that left before connecting.
        assert_eq!(
            decide_as(
                false,
                Phase::InitWait,
                Some(S::InitWait),
                Some(S::Closed),
                true
            ),
            Action::Close
        );
    }

    #[test]
    fn a_refused_device_waits_at_init_wait_until_the_frontend_changes() {
        for strict in [false, true] {
            // An Initialised frontend with refused nodes is not connected again and again...
            for frontend in [S::Initialised, S::Connected, S::Initialising] {
                assert_eq!(
                    decide_as(
                        strict,
                        Phase::Refused,
                        Some(S::InitWait),
                        Some(frontend),
                        true
                    ),
                    Action::Stay,
                    "{frontend:?}"
                );
            }
            // ...until it changes something: then its nodes are read again.
            let phase = frontend_changed(Phase::Refused);
            assert_eq!(phase, Phase::InitWait);
            assert_eq!(
                decide_as(strict, phase, Some(S::InitWait), Some(S::Initialised), true),
                Action::Connect
            );
            // A frontend gone, an offline device or the toolstack removing it: closed.
            assert_eq!(
                decide_as(strict, Phase::Refused, Some(S::InitWait), None, true),
                Action::Close
            );
            assert_eq!(
                decide_as(
                    strict,
                    Phase::Refused,
                    Some(S::InitWait),
                    Some(S::Initialised),
                    false
                ),
                Action::Close
            );
            assert_eq!(
                decide_as(
                    strict,
                    Phase::Refused,
                    Some(S::Closing),
                    Some(S::Initialised),
                    false
                ),
                Action::Close
            );
            assert_eq!(
                decide_as(strict, Phase::Refused, None, None, false),
                Action::Forget
            );
        }
        // A frontend that gives up: the lenient backend closes, the strict one waits.
        assert_eq!(
            decide_as(
                false,
                Phase::Refused,
                Some(S::InitWait),
                Some(S::Closing),
                true
            ),
            Action::Close
        );
        assert_eq!(
            decide_as(
                true,
                Phase::Refused,
                Some(S::InitWait),
                Some(S::Closing),
                true
            ),
            Action::Stay
        );
        // Other phases do not change with the frontend.
        for phase in [Phase::New, Phase::InitWait, Phase::Connected, Phase::Closed] {
            assert_eq!(frontend_changed(phase), phase);
        }
    }

    #[test]
    fn a_refusal_is_said_once_per_attempt_and_its_error_node_goes_when_the_nodes_are_good() {
        let mut refusal = RefusalState::default();
        let gap = "/local/domain/3/device/vdispl/0/1 is missing but ... is listed";
        assert!(refusal.refused(gap));
        // Looking again (the frontend changed something else) finds the same: not said again.
        assert!(!refusal.refused(gap));
        assert!(refusal.in_effect());
        // Another reason is said.
        assert!(refusal.refused("/local/domain/3/device/vdispl/0/version asks for ..."));
        // A new attempt (the backend wrote the state: closed, then InitWait again) says it
        // again; the refusal stays in effect meanwhile.
        refusal.state_written();
        assert!(refusal.in_effect());
        assert!(refusal.refused(gap));
        // The nodes are good now: the error node goes, once.
        assert!(refusal.nodes_good());
        assert!(!refusal.nodes_good());
        assert!(refusal.refused(gap));
        refusal.replaced();
        assert!(!refusal.in_effect() && !refusal.nodes_good());
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
