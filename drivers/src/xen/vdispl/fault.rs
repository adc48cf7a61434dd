//! Misbehaviours a display backend can be told to show its frontend, breaking
//! io/displif.h's rules on purpose to test a frontend against a hostile
//! backend: which requests a fault hits and what the backend does instead.
//! The Dom0 backend (`vdispl-backend --fault`) and the host tests' fake
//! backend both go through [`FaultState`], so they misbehave the same way.

use crate::xen::displif::{Event, Operation, Response};
use crate::xen::ring::Slot;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// `-XEN_EIO`: the status of a `status` fault's response.
pub const EIO: i32 = -5;
/// How far past what was produced a `rsp-prod` fault moves `rsp_prod`.
pub const RSP_PROD_AHEAD: u32 = 1000;
/// The event type of a `garbage-event` fault's event (displif.h defines
/// only `XENDISPL_EVT_PG_FLIP`, 0).
pub const GARBAGE_EVENT_TYPE: u8 = 0xee;

/// How the backend misbehaves. Each mode hits a PG_FLIP request, which is
/// then not applied (nothing is shown for it) unless the mode says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// `status`: the response carries -EIO.
    Status,
    /// `wrong-id`: the response carries the request's id plus one.
    WrongId,
    /// `rsp-prod`: `rsp_prod` is moved past the ring instead of answering;
    /// the ring is then left alone until the frontend reconnects.
    RspProd,
    /// `garbage-event`: a response with status 0, then an event of an
    /// unknown type instead of EVT_PG_FLIP.
    GarbageEvent,
    /// `silent`: the request is taken and never answered.
    Silent,
    /// `state-back`: the request is applied and answered, then the backend
    /// lets go of the device and goes from Connected back to InitWait.
    StateBack,
}

/// Every mode.
pub const FAULT_MODES: [FaultMode; 6] = [
    FaultMode::Status,
    FaultMode::WrongId,
    FaultMode::RspProd,
    FaultMode::GarbageEvent,
    FaultMode::Silent,
    FaultMode::StateBack,
];

impl FaultMode {
    /// The name `--fault` takes.
    pub fn name(self) -> &'static str {
        match self {
            FaultMode::Status => "status",
            FaultMode::WrongId => "wrong-id",
            FaultMode::RspProd => "rsp-prod",
            FaultMode::GarbageEvent => "garbage-event",
            FaultMode::Silent => "silent",
            FaultMode::StateBack => "state-back",
        }
    }
}

/// `MODE[,conn=N][,count=K][,after=F]`: MODE hits PG_FLIP requests on
/// connector N (default 1) once F flips (default 2) were answered there since
/// the backend started or since the last fault; K faults (default 1) in all,
/// then the backend behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What goes wrong.
    pub mode: FaultMode,
    /// The connector it hits (its position in the device's connectors).
    pub connector: usize,
    /// How many requests it hits.
    pub count: u32,
    /// Flips answered normally on the connector before each fault.
    pub after: u32,
}

impl Fault {
    /// Parses `MODE[,conn=N][,count=K][,after=F]` (the argument of
    /// `--fault`, which the errors name).
    pub fn parse(text: &str) -> Result<Fault, String> {
        let mut parts = text.split(',');
        let name = parts.next().unwrap_or_default();
        let mode = FAULT_MODES
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = FAULT_MODES.iter().map(|mode| mode.name()).collect();
                format!("--fault {name}: expected one of {}", names.join(", "))
            })?;
        let mut fault = Fault {
            mode,
            connector: 1,
            count: 1,
            after: 2,
        };
        for part in parts {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let number = value
                .parse::<u32>()
                .map_err(|_| format!("--fault {text}: `{part}` needs a number"))?;
            match key {
                "conn" => fault.connector = number as usize,
                "count" => fault.count = number,
                "after" => fault.after = number,
                _ => return Err(format!("--fault {text}: unknown `{key}`")),
            }
        }
        Ok(fault)
    }
}

/// What the backend does with a request a fault hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Sends this response instead of applying the request.
    Respond(Response),
    /// Sends this response instead of applying the request, then puts
    /// [`garbage_event`] on the connector's event page.
    RespondThenGarbage(Response),
    /// Takes the request and never answers it.
    Ignore,
    /// Leaves the request unanswered, moves `rsp_prod` [`RSP_PROD_AHEAD`]
    /// past what was produced, and takes no more requests from the ring.
    BreakRing,
    /// Applies and answers the request as usual, then lets go of the device
    /// and sets the backend's state back to InitWait.
    AnswerThenLeave,
}

/// A request a fault hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultHit {
    /// The fault's mode.
    pub mode: FaultMode,
    /// The request's id.
    pub id: u16,
    /// The request's operation code.
    pub operation: u8,
    /// Faults still to come after this one.
    pub left: u32,
}

impl FaultHit {
    /// What to do with the request.
    pub fn action(&self) -> FaultAction {
        let response = Response {
            id: self.id,
            operation: self.operation,
            status: 0,
            edid_sz: 0,
        };
        match self.mode {
            FaultMode::Status => FaultAction::Respond(Response {
                status: EIO,
                ..response
            }),
            FaultMode::WrongId => FaultAction::Respond(Response {
                id: self.id.wrapping_add(1),
                ..response
            }),
            FaultMode::GarbageEvent => FaultAction::RespondThenGarbage(response),
            FaultMode::Silent => FaultAction::Ignore,
            FaultMode::RspProd => FaultAction::BreakRing,
            FaultMode::StateBack => FaultAction::AnswerThenLeave,
        }
    }

    /// What went wrong, for the backend's log: `fault MODE: ... (K more to
    /// come)`.
    pub fn describe(&self) -> String {
        let id = self.id;
        let what = match self.mode {
            FaultMode::Status => {
                format!("PG_FLIP (id {id}) answered with status {EIO} (EIO)")
            }
            FaultMode::WrongId => {
                format!("PG_FLIP (id {id}) answered with id {}", id.wrapping_add(1))
            }
            FaultMode::GarbageEvent => {
                format!("PG_FLIP (id {id}) answered, then an event of type {GARBAGE_EVENT_TYPE:#x}")
            }
            FaultMode::Silent => format!("PG_FLIP (id {id}) taken and never answered"),
            FaultMode::RspProd => format!(
                "PG_FLIP (id {id}) not answered; rsp_prod moved {RSP_PROD_AHEAD} entries past \
                 the ring"
            ),
            FaultMode::StateBack => {
                format!("PG_FLIP (id {id}) answered; the state goes back to InitWait")
            }
        };
        format!(
            "fault {}: {what} ({} more to come)",
            self.mode.name(),
            self.left
        )
    }
}

/// The event a `garbage-event` fault sends: an EVT_PG_FLIP packet with id
/// `id` whose type is [`GARBAGE_EVENT_TYPE`].
pub fn garbage_event(id: u16) -> Slot {
    let mut slot = Event::PageFlip { fb_cookie: 0 }.encode(id);
    slot[2] = GARBAGE_EVENT_TYPE;
    slot
}

/// A fault and how far it got; kept by the backend across the frontend's
/// connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultState {
    fault: Fault,
    /// Faults still to come.
    left: u32,
    /// Flips answered normally on the connector since the start or the last
    /// fault.
    since: u32,
}

impl FaultState {
    /// `fault`, none of it come yet.
    pub fn new(fault: Fault) -> Self {
        FaultState {
            fault,
            left: fault.count,
            since: 0,
        }
    }

    /// The fault.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Faults still to come.
    pub fn left(&self) -> u32 {
        self.left
    }

    /// Whether the request in `slot`, taken from connector `index`'s ring, is
    /// hit; counts it either way.
    pub fn hit(&mut self, index: usize, slot: &Slot) -> Option<FaultHit> {
        if self.left == 0 || index != self.fault.connector || slot[2] != Operation::PageFlip as u8 {
            return None;
        }
        if self.since < self.fault.after {
            self.since += 1;
            return None;
        }
        self.since = 0;
        self.left -= 1;
        Some(FaultHit {
            mode: self.fault.mode,
            id: u16::from_le_bytes([slot[0], slot[1]]),
            operation: slot[2],
            left: self.left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::displif::Request;

    #[test]
    fn parse_takes_the_mode_and_its_options_and_names_bad_ones() {
        let fault = Fault::parse("silent,conn=0,count=3,after=5").unwrap();
        assert_eq!(
            fault,
            Fault {
                mode: FaultMode::Silent,
                connector: 0,
                count: 3,
                after: 5
            }
        );
        assert_eq!(
            Fault::parse("rsp-prod").unwrap(),
            Fault {
                mode: FaultMode::RspProd,
                connector: 1,
                count: 1,
                after: 2
            }
        );
        for mode in FAULT_MODES {
            assert_eq!(Fault::parse(mode.name()).unwrap().mode, mode);
        }
        assert_eq!(
            Fault::parse("loud").unwrap_err(),
            "--fault loud: expected one of status, wrong-id, rsp-prod, garbage-event, silent, \
             state-back"
        );
        assert_eq!(
            Fault::parse("status,conn=x").unwrap_err(),
            "--fault status,conn=x: `conn=x` needs a number"
        );
        assert_eq!(
            Fault::parse("status,when=1").unwrap_err(),
            "--fault status,when=1: unknown `when`"
        );
    }

    #[test]
    fn a_fault_hits_flips_on_its_connector_after_f_good_ones_k_times() {
        let mut state = FaultState::new(Fault {
            mode: FaultMode::Status,
            connector: 1,
            count: 2,
            after: 2,
        });
        let flip = |id: u16| Request::PageFlip { fb_cookie: 7 }.encode(id);
        // Other connectors and other operations are never hit nor counted.
        assert_eq!(state.hit(0, &flip(1)), None);
        assert_eq!(state.hit(1, &Request::DISABLE.encode(2)), None);
        let hits: Vec<Option<u32>> = (10..20)
            .map(|id| state.hit(1, &flip(id)).map(|hit| u32::from(hit.id)))
            .collect();
        // Two good flips, a hit, two good flips, a hit, then good ones only.
        assert_eq!(
            hits,
            [
                None,
                None,
                Some(12),
                None,
                None,
                Some(15),
                None,
                None,
                None,
                None
            ]
        );
        assert_eq!(state.left(), 0);
    }

    #[test]
    fn each_mode_breaks_the_protocol_its_own_way() {
        let hit = |mode| FaultHit {
            mode,
            id: 0x1234,
            operation: Operation::PageFlip as u8,
            left: 0,
        };
        let answer = |id, status| Response {
            id,
            operation: 0x15,
            status,
            edid_sz: 0,
        };
        assert_eq!(
            hit(FaultMode::Status).action(),
            FaultAction::Respond(answer(0x1234, -5))
        );
        assert_eq!(
            hit(FaultMode::WrongId).action(),
            FaultAction::Respond(answer(0x1235, 0))
        );
        assert_eq!(
            hit(FaultMode::GarbageEvent).action(),
            FaultAction::RespondThenGarbage(answer(0x1234, 0))
        );
        assert_eq!(hit(FaultMode::Silent).action(), FaultAction::Ignore);
        assert_eq!(hit(FaultMode::RspProd).action(), FaultAction::BreakRing);
        assert_eq!(
            hit(FaultMode::StateBack).action(),
            FaultAction::AnswerThenLeave
        );
        assert_eq!(
            hit(FaultMode::Status).describe(),
            "fault status: PG_FLIP (id 4660) answered with status -5 (EIO) (0 more to come)"
        );
        // struct xendispl_evt: id (u16) at 0, type (u8) at 2, the rest zero.
        let event = garbage_event(0x0102);
        assert_eq!(event[..3], [0x02, 0x01, 0xee]);
        assert!(event[3..].iter().all(|&byte| byte == 0));
    }
}
