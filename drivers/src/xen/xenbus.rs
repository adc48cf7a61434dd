//! XenBus state nodes (xen/include/public/io/xenbus.h): reading and writing a
//! `state` node, and waiting through a watch for the other end to reach a state.
//!
//! A state node holds `enum xenbus_state` as decimal text. The frontend and the
//! backend each write their own and watch the other's to step through the
//! handshake (Initialising, InitWait, Initialised, Connected, ...).

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use super::xenstore::client::{Client, Error, Stream, WatchHandle};
use super::xenstore::wire::XsdError;

/// `enum xenbus_state`, ordered by value as drivers compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum XenbusState {
    /// `XenbusStateUnknown`.
    Unknown = 0,
    /// `XenbusStateInitialising`.
    Initialising = 1,
    /// `XenbusStateInitWait`: early initialisation done, waiting for the peer
    /// or hotplug scripts.
    InitWait = 2,
    /// `XenbusStateInitialised`: waiting for a connection from the peer.
    Initialised = 3,
    /// `XenbusStateConnected`.
    Connected = 4,
    /// `XenbusStateClosing`: closing after an error or an unplug.
    Closing = 5,
    /// `XenbusStateClosed`.
    Closed = 6,
    /// `XenbusStateReconfiguring`.
    Reconfiguring = 7,
    /// `XenbusStateReconfigured`.
    Reconfigured = 8,
}

/// A number that is not an `enum xenbus_state` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidState(pub u32);

impl TryFrom<u32> for XenbusState {
    type Error = InvalidState;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        use XenbusState::*;
        Ok(match value {
            0 => Unknown,
            1 => Initialising,
            2 => InitWait,
            3 => Initialised,
            4 => Connected,
            5 => Closing,
            6 => Closed,
            7 => Reconfiguring,
            8 => Reconfigured,
            _ => return Err(InvalidState(value)),
        })
    }
}

impl XenbusState {
    /// The name after `XenbusState` in io/xenbus.h, such as `"InitWait"`.
    pub fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }

    /// Parses a node's value: decimal text, surrounding ASCII whitespace and a
    /// trailing NUL tolerated.
    pub fn parse(value: &[u8]) -> Option<XenbusState> {
        let text = core::str::from_utf8(value).ok()?;
        let text = text.trim_end_matches('\0').trim_ascii();
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        XenbusState::try_from(text.parse::<u32>().ok()?).ok()
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed state operation, naming the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XenbusError {
    /// The node does not exist.
    Missing {
        /// The node.
        node: String,
    },
    /// The node holds something that is not a state.
    BadValue {
        /// The node.
        node: String,
        /// Its value (lossily decoded).
        value: String,
    },
    /// The predicate did not hold before the deadline.
    Timeout {
        /// The node.
        node: String,
        /// The last state seen, if the node ever held one.
        last: Option<XenbusState>,
        /// The timeout, in milliseconds.
        waited_ms: u64,
    },
    /// The xenstore operation failed.
    Xenstore {
        /// The node.
        node: String,
        /// The failure.
        error: Error,
    },
}

impl fmt::Display for XenbusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenbusError::Missing { node } => write!(f, "{node}: no such node"),
            XenbusError::BadValue { node, value } => {
                write!(f, "{node}: not a XenBus state: {value:?}")
            }
            XenbusError::Timeout {
                node,
                last,
                waited_ms,
            } => {
                write!(f, "{node}: timed out after {waited_ms} ms, ")?;
                match last {
                    Some(state) => write!(f, "last state {} ({state})", *state as u32),
                    None => f.write_str("no state seen"),
                }
            }
            XenbusError::Xenstore { node, error } => write!(f, "{node}: {error}"),
        }
    }
}

impl core::error::Error for XenbusError {}

fn xenstore_error(node: &str, error: Error) -> XenbusError {
    match error {
        Error::Xenstore(XsdError::NoEntry) => XenbusError::Missing {
            node: node.to_string(),
        },
        error => XenbusError::Xenstore {
            node: node.to_string(),
            error,
        },
    }
}

/// Where xenbus puts the error message about the device at `device` (a
/// frontend's `device/vdispl/0`, or a backend's
/// `/local/domain/0/backend/vdispl/3/0`): the `error` node of the same path
/// under the writer's `error/` directory, as Linux's `xenbus_dev_error`
/// writes it (`/local/domain/0/error/backend/vdispl/3/0/error`). `None` for
/// an absolute path outside `/local/domain/<id>/`.
pub fn error_node(device: &str) -> Option<String> {
    let Some(absolute) = device.strip_prefix("/local/domain/") else {
        return Some(alloc::format!("error/{device}/error"));
    };
    let (domid, rest) = absolute.split_once('/')?;
    if domid.is_empty() || !domid.bytes().all(|byte| byte.is_ascii_digit()) || rest.is_empty() {
        return None;
    }
    Some(alloc::format!("/local/domain/{domid}/error/{rest}/error"))
}

/// Reads the state in node `path`.
pub fn read_state<T: Stream>(
    client: &mut Client<T>,
    path: &str,
) -> Result<XenbusState, XenbusError> {
    let value = client
        .read(path)
        .map_err(|error| xenstore_error(path, error))?;
    XenbusState::parse(&value).ok_or_else(|| XenbusError::BadValue {
        node: path.to_string(),
        value: String::from_utf8_lossy(&value).into_owned(),
    })
}

/// Writes `state` into node `path`, as decimal text.
pub fn write_state<T: Stream>(
    client: &mut Client<T>,
    path: &str,
    state: XenbusState,
) -> Result<(), XenbusError> {
    let value = (state as u32).to_string();
    client
        .write(path, value.as_bytes())
        .map_err(|error| xenstore_error(path, error))
}

/// Watches node `path` until `predicate` holds for its state, then returns
/// that state; fails with [`XenbusError::Timeout`] (naming the last state
/// seen) once `timeout_ns` has passed. A missing node counts as not there
/// yet; a node with garbage in it is an error. Waits through
/// [`Transport::wait`], never spinning; other watches' callbacks run
/// meanwhile.
pub fn wait_for_state<T: Stream>(
    client: &mut Client<T>,
    path: &str,
    predicate: impl FnMut(XenbusState) -> bool,
    timeout_ns: u64,
) -> Result<XenbusState, XenbusError> {
    let watch = StateWatch::new(client, path)?;
    let result = watch.wait_for(client, predicate, timeout_ns);
    if let Err(error) = watch.remove(client) {
        log::debug!("xenbus: {error}");
    }
    result
}

/// A watch on the state node of the other end, kept for as long as that end
/// is followed: waits through it cost no WATCH and UNWATCH of their own, and
/// between waits it records that the node changed.
pub struct StateWatch {
    path: String,
    changed: Arc<AtomicBool>,
    handle: WatchHandle,
}

impl StateWatch {
    /// Watches the state node `path` (WATCH).
    pub fn new<T: Stream>(client: &mut Client<T>, path: &str) -> Result<Self, XenbusError> {
        let changed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&changed);
        let handle = client
            .watch(path, Box::new(move |_| flag.store(true, Ordering::Release)))
            .map_err(|error| xenstore_error(path, error))?;
        Ok(StateWatch {
            path: path.to_string(),
            changed,
            handle,
        })
    }

    /// The node watched.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether a watch event came since the last call or wait (the event
    /// xenstored sends when a watch is set counts too). Events are taken in
    /// by the client's dispatch, so this sees what was dispatched.
    pub fn take_change(&self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }

    /// Reads the node at once and again on each change until `predicate`
    /// holds for its state, which it returns; as [`wait_for_state`], without
    /// setting or removing a watch.
    pub fn wait_for<T: Stream>(
        &self,
        client: &mut Client<T>,
        mut predicate: impl FnMut(XenbusState) -> bool,
        timeout_ns: u64,
    ) -> Result<XenbusState, XenbusError> {
        let deadline = client.now_ns().saturating_add(timeout_ns);
        let mut last = None;
        let mut look = true;
        loop {
            if self.take_change() || look {
                look = false;
                match read_state(client, &self.path) {
                    Ok(state) if predicate(state) => return Ok(state),
                    Ok(state) => last = Some(state),
                    Err(XenbusError::Missing { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            if client.now_ns() >= deadline {
                return Err(XenbusError::Timeout {
                    node: self.path.clone(),
                    last,
                    waited_ms: timeout_ns / 1_000_000,
                });
            }
            client
                .wait_for_watches(deadline)
                .map_err(|error| xenstore_error(&self.path, error))?;
        }
    }

    /// Removes the watch (UNWATCH).
    pub fn remove<T: Stream>(self, client: &mut Client<T>) -> Result<(), XenbusError> {
        let path = self.path;
        client
            .unwatch(self.handle)
            .map_err(|error| xenstore_error(&path, error))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn error_nodes_follow_xenbus() {
        assert_eq!(
            error_node("/local/domain/0/backend/vdispl/3/0").as_deref(),
            Some("/local/domain/0/error/backend/vdispl/3/0/error")
        );
        assert_eq!(
            error_node("device/vdispl/0").as_deref(),
            Some("error/device/vdispl/0/error")
        );
        assert_eq!(error_node("/local/domain/x/backend"), None);
        assert_eq!(error_node("/local/domain/0/"), None);
        assert_eq!(error_node("/local/domain/0"), None);
    }
    use super::*;
    use crate::xen::xenstore::fake::{Corruption, FakeXenstored};
    use crate::xen::xenstore::wire::Fault;
    use std::string::ToString;

    const BACKEND: &str = "/local/domain/0/backend/vdispl/1/0/state";
    const MS: u64 = 1_000_000;

    fn client() -> Client<FakeXenstored> {
        Client::new(FakeXenstored::new())
    }

    #[test]
    fn states_convert_and_print_as_in_the_header() {
        let names = [
            "Unknown",
            "Initialising",
            "InitWait",
            "Initialised",
            "Connected",
            "Closing",
            "Closed",
            "Reconfiguring",
            "Reconfigured",
        ];
        for (value, name) in (0u32..).zip(names) {
            let state = XenbusState::try_from(value).unwrap();
            assert_eq!(state as u32, value);
            assert_eq!(state.to_string(), name);
        }
        assert_eq!(XenbusState::try_from(9), Err(InvalidState(9)));
    }

    #[test]
    fn node_values_parse_strictly() {
        assert_eq!(XenbusState::parse(b"4"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse(b" 2\n"), Some(XenbusState::InitWait));
        assert_eq!(XenbusState::parse(b"6\0"), Some(XenbusState::Closed));
        for garbage in [
            &b""[..],
            b"x",
            b"9",
            b"-1",
            b"4x",
            b"+4",
            b"\xff",
            b"99999999999",
        ] {
            assert_eq!(XenbusState::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn states_are_read_and_written_as_decimal_text() {
        let mut client = client();
        write_state(
            &mut client,
            "device/vdispl/0/state",
            XenbusState::Initialised,
        )
        .unwrap();
        assert_eq!(
            client.transport().get("device/vdispl/0/state"),
            Some(&b"3"[..])
        );
        assert_eq!(
            read_state(&mut client, "device/vdispl/0/state"),
            Ok(XenbusState::Initialised)
        );
    }

    #[test]
    fn missing_or_garbage_nodes_are_typed_errors() {
        let mut client = client();
        assert_eq!(
            read_state(&mut client, BACKEND),
            Err(XenbusError::Missing {
                node: BACKEND.to_string()
            })
        );
        client.transport_mut().set(BACKEND, b"banana");
        let error = read_state(&mut client, BACKEND).unwrap_err();
        assert_eq!(
            error,
            XenbusError::BadValue {
                node: BACKEND.to_string(),
                value: "banana".to_string()
            }
        );
        assert_eq!(
            error.to_string(),
            std::format!("{BACKEND}: not a XenBus state: \"banana\"")
        );
    }

    #[test]
    fn waiting_follows_the_other_end_through_its_states() {
        let mut client = client();
        client.transport_mut().set(BACKEND, b"1");
        client.transport_mut().set_at(10 * MS, BACKEND, b"2");
        client.transport_mut().set_at(20 * MS, BACKEND, b"4");
        let state = wait_for_state(
            &mut client,
            BACKEND,
            |state| state == XenbusState::Connected,
            3000 * MS,
        );
        assert_eq!(state, Ok(XenbusState::Connected));
        assert!(client.now_ns() >= 20 * MS && client.now_ns() < 21 * MS);
        assert!(client.transport().watches().is_empty(), "watch removed");
        // Woken by events, not spinning: a handful of waits per change.
        assert!(
            client.transport().waits() < 20,
            "{}",
            client.transport().waits()
        );
    }

    #[test]
    fn waiting_returns_at_once_when_the_state_already_holds() {
        let mut client = client();
        client.transport_mut().set(BACKEND, b"2");
        let state = wait_for_state(
            &mut client,
            BACKEND,
            |state| state == XenbusState::InitWait,
            3000 * MS,
        );
        assert_eq!(state, Ok(XenbusState::InitWait));
        assert!(client.now_ns() < MS);
    }

    #[test]
    fn waiting_tolerates_a_node_that_appears_later() {
        let mut client = client();
        client.transport_mut().set_at(5 * MS, BACKEND, b"2");
        let state = wait_for_state(
            &mut client,
            BACKEND,
            |state| state >= XenbusState::InitWait && state != XenbusState::Closed,
            3000 * MS,
        );
        assert_eq!(state, Ok(XenbusState::InitWait));
    }

    #[test]
    fn waiting_times_out_naming_the_node_and_the_last_state() {
        let mut client = client();
        client.transport_mut().set(BACKEND, b"2");
        let start = client.now_ns();
        let error = wait_for_state(
            &mut client,
            BACKEND,
            |state| state == XenbusState::Connected,
            3000 * MS,
        )
        .unwrap_err();
        assert_eq!(
            error,
            XenbusError::Timeout {
                node: BACKEND.to_string(),
                last: Some(XenbusState::InitWait),
                waited_ms: 3000
            }
        );
        assert_eq!(
            error.to_string(),
            std::format!("{BACKEND}: timed out after 3000 ms, last state 2 (InitWait)")
        );
        // The deadline, plus the UNWATCH round trip.
        let waited = client.now_ns() - start;
        assert!((3000 * MS..3001 * MS).contains(&waited), "{waited}");
        // One wait per round trip (WATCH, two READs, UNWATCH) and a single
        // idle wait to the deadline.
        assert_eq!(client.transport().waits(), 5);
        assert!(client.transport().watches().is_empty());
        // A node never seen.
        let error = wait_for_state(&mut client, "device/none/state", |_| true, MS).unwrap_err();
        assert!(matches!(error, XenbusError::Timeout { last: None, .. }));
        assert!(error.to_string().ends_with("no state seen"));
    }

    #[test]
    fn a_kept_watch_serves_several_waits_and_records_changes_between_them() {
        use crate::xen::xenstore::wire::MessageType;
        let mut client = client();
        client.transport_mut().set(BACKEND, b"1");
        client.transport_mut().set_at(10 * MS, BACKEND, b"2");
        client.transport_mut().set_at(20 * MS, BACKEND, b"4");
        let watch = StateWatch::new(&mut client, BACKEND).unwrap();
        assert_eq!(watch.path(), BACKEND);
        let initwait = watch.wait_for(&mut client, |s| s == XenbusState::InitWait, 3000 * MS);
        assert_eq!(initwait, Ok(XenbusState::InitWait));
        let connected = watch.wait_for(&mut client, |s| s == XenbusState::Connected, 3000 * MS);
        assert_eq!(connected, Ok(XenbusState::Connected));
        assert!(client.now_ns() >= 20 * MS && client.now_ns() < 21 * MS);
        // A change after the waits is recorded once, and only once.
        client.transport_mut().set_at(30 * MS, BACKEND, b"5");
        assert!(!watch.take_change());
        client.wait_for_watches(40 * MS).unwrap();
        assert!(watch.take_change());
        assert!(!watch.take_change());
        let watch_requests = client
            .transport()
            .requests()
            .iter()
            .filter(|(header, _)| header.msg_type == MessageType::Watch as u32)
            .count();
        assert_eq!(watch_requests, 1, "one WATCH for both waits");
        assert_eq!(client.transport().watches().len(), 1);
        watch.remove(&mut client).unwrap();
        assert!(client.transport().watches().is_empty());
    }

    #[test]
    fn waiting_stops_on_garbage_or_a_broken_connection() {
        let mut client = client();
        client.transport_mut().set_at(5 * MS, BACKEND, b"what");
        let error = wait_for_state(&mut client, BACKEND, |_| false, 3000 * MS).unwrap_err();
        assert!(matches!(error, XenbusError::BadValue { .. }));

        let mut client = self::client();
        client.transport_mut().set(BACKEND, b"1");
        client
            .transport_mut()
            .corrupt_next_reply(Corruption::Type(1234));
        let error = wait_for_state(&mut client, BACKEND, |_| false, 3000 * MS).unwrap_err();
        assert_eq!(
            error,
            XenbusError::Xenstore {
                node: BACKEND.to_string(),
                error: Error::Malformed {
                    reason: Fault::UnknownType { raw: 1234 }
                }
            }
        );
    }
}
