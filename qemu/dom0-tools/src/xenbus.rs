//! Dom0's xenstore connection: `/dev/xen/xenbus` (or xenstored's Unix socket), a file
//! descriptor that carries the xenstore wire protocol (`xs_wire.h`, docs/misc/xenstore.txt) as a
//! byte stream, replies and watch events interleaved.
//!
//! The protocol is the guest's own client, `drivers::xen::xenstore::client::Client`, over
//! [`DeviceStream`]; [`Xenbus`] adds what the Dom0 backends want on top: errors that name the
//! request, a missing node read as `None`, watches with the caller's tokens whose events are
//! handed out by [`Xenbus::take_event`], and guarded writes in transactions.

use drivers::xen::xenstore::client::{self, Client, Stream, Transaction};
use drivers::xen::xenstore::wire::{
    Fault, WatchEvent, XsdError, HEADER_SIZE, XENSTORE_PAYLOAD_MAX,
};
use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub use drivers::xen::xenstore::wire::{NodeAccess, Permission};

/// The xenbus device of the Linux Xen drivers (module `xenfs` provides the same at
/// `/proc/xen/xenbus`).
pub const DEVICE: &CStr = c"/dev/xen/xenbus";

/// How long a reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
pub mod fake;

/// How often a transaction that conflicts (EAGAIN) is retried.
const TRANSACTION_ATTEMPTS: usize = 8;

/// A failed xenstore operation, naming the request.
#[derive(Debug)]
pub enum Error {
    /// open() of [`DEVICE`] failed.
    Open(io::Error),
    /// A request failed.
    Store {
        /// The request, such as `READ /local/domain/1/name`.
        request: String,
        /// How it failed.
        error: client::Error,
    },
    /// A transaction kept conflicting with other writers.
    Conflict {
        /// What the transaction was for.
        what: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open(source) => {
                write!(f, "cannot open /dev/xen/xenbus: {source}")?;
                if source.kind() == io::ErrorKind::NotFound {
                    f.write_str(" (is this Dom0 with xenfs and xenstored running?)")?;
                }
                Ok(())
            }
            Error::Store {
                request,
                error: client::Error::Xenstore(error),
            } => write!(f, "xenstore {request}: {error}"),
            Error::Store {
                request,
                error: client::Error::Malformed { reason },
            } => write!(f, "xenstore {request}: {reason}"),
            Error::Store { request, error } => write!(f, "xenstore {request}: {error}"),
            Error::Conflict { what } => write!(
                f,
                "xenstore transaction ({what}) conflicted {TRANSACTION_ATTEMPTS} times"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// xenstored's error name, when it refused the request.
    pub fn refusal(&self) -> Option<&XsdError> {
        match self {
            Error::Store {
                error: client::Error::Xenstore(error),
                ..
            } => Some(error),
            _ => None,
        }
    }
}

/// Names the request of a failed operation.
fn named<T>(
    request: impl FnOnce() -> String,
    result: Result<T, client::Error>,
) -> Result<T, Error> {
    result.map_err(|error| Error::Store {
        request: request(),
        error,
    })
}

/// Whether `error` is xenstored's ENOENT.
fn is_missing(error: &client::Error) -> bool {
    *error == client::Error::Xenstore(XsdError::NoEntry)
}

/// The OS error of `error` as a stream fault.
fn stream_failed(error: &io::Error) -> Fault {
    Fault::StreamFailed {
        errno: error.raw_os_error().unwrap_or(0),
    }
}

/// A file descriptor that speaks the wire protocol, as the client's byte stream. Writes block
/// (the xenbus device takes whatever a write carries); reads never do: what the descriptor has
/// is taken in one read(2) and handed out from a buffer.
pub struct DeviceStream {
    file: File,
    inbox: Vec<u8>,
    taken: usize,
    clock: Instant,
}

impl DeviceStream {
    /// The stream over `fd`.
    pub fn new(fd: OwnedFd) -> Self {
        Self {
            file: File::from(fd),
            inbox: Vec::new(),
            taken: 0,
            clock: Instant::now(),
        }
    }

    /// poll(2) for input for up to `timeout`; whether there is some. An interrupted poll is
    /// a wake-up like any other.
    fn readable(&self, timeout: Duration) -> Result<bool, Fault> {
        let mut fds = [libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll(2) on one pollfd we own, for at most `millis` ms.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, millis) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(stream_failed(&error));
        }
        Ok(ready > 0)
    }
}

impl Stream for DeviceStream {
    fn send(&mut self, bytes: &[u8]) -> Result<usize, Fault> {
        match self.file.write(bytes) {
            Ok(count) => Ok(count),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(error) => Err(stream_failed(&error)),
        }
    }

    fn receive(&mut self, buffer: &mut [u8]) -> Result<usize, Fault> {
        if self.taken == self.inbox.len() {
            if !self.readable(Duration::ZERO)? {
                return Ok(0);
            }
            self.inbox.resize(HEADER_SIZE + XENSTORE_PAYLOAD_MAX, 0);
            self.taken = 0;
            let read = self.file.read(&mut self.inbox);
            let count = match read {
                Ok(0) => {
                    self.inbox.clear();
                    return Err(Fault::StreamClosed);
                }
                Ok(count) => count,
                Err(error) => {
                    self.inbox.clear();
                    if error.kind() == io::ErrorKind::Interrupted {
                        return Ok(0);
                    }
                    return Err(stream_failed(&error));
                }
            };
            self.inbox.truncate(count);
        }
        let count = buffer.len().min(self.inbox.len() - self.taken);
        buffer[..count].copy_from_slice(&self.inbox[self.taken..self.taken + count]);
        self.taken += count;
        Ok(count)
    }

    fn notify(&mut self) {}

    fn wait(&mut self, deadline_ns: u64) {
        if self.taken < self.inbox.len() {
            return;
        }
        let left = Duration::from_nanos(deadline_ns.saturating_sub(self.now_ns()));
        // A failed poll shows again in the next receive.
        let _ = self.readable(left);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn given_up(&self) -> Option<Fault> {
        None
    }
}

/// A xenstore connection.
pub struct Xenbus {
    client: Client<DeviceStream>,
}

impl Xenbus {
    /// Opens [`DEVICE`].
    pub fn open() -> Result<Self, Error> {
        // SAFETY: open(2) with a NUL-terminated path and plain flags; it only returns a new
        // descriptor or -1.
        let fd = unsafe { libc::open(DEVICE.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(Error::Open(io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
        Ok(Self::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// A client over any stream that speaks the wire protocol (a socket in tests).
    pub fn from_fd(fd: OwnedFd) -> Self {
        let mut client = Client::new(DeviceStream::new(fd));
        client.set_request_timeout_ns(duration_ns(REPLY_TIMEOUT));
        Self { client }
    }

    /// Changes how long a reply may take.
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.client.set_request_timeout_ns(duration_ns(timeout));
    }

    /// The descriptor, to poll for watch events.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.client.transport().file.as_fd()
    }

    /// A queued watch event, if any.
    pub fn take_event(&mut self) -> Option<WatchEvent> {
        self.client.take_event()
    }

    /// Whether watch events are queued.
    pub fn has_events(&self) -> bool {
        self.client.queued_events() > 0
    }

    /// Waits up to `timeout` for data, then queues the watch events received. A reply with no
    /// request in flight is a protocol fault.
    pub fn receive_events(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = self.client.now_ns().saturating_add(duration_ns(timeout));
        named(
            || "receiving watch events".into(),
            self.client.wait_for_events(deadline),
        )
        .map(drop)
    }

    /// READ: the node's value, or `None` if it does not exist.
    pub fn read(&mut self, path: &str) -> Result<Option<String>, Error> {
        named(|| format!("READ {path}"), optional(self.client.read(path)))
    }

    /// WRITE `value` to `path` (creating it and its parents).
    pub fn write(&mut self, path: &str, value: &str) -> Result<(), Error> {
        named(
            || format!("WRITE {path}"),
            self.client.write(path, value.as_bytes()),
        )
    }

    /// DIRECTORY: the children's names; empty if the node does not exist.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, Error> {
        named(
            || format!("DIRECTORY {path}"),
            names(self.client.directory(path)),
        )
    }

    /// RM `path` and everything below it; a node that is not there (or whose parent is not)
    /// is no error.
    pub fn rm(&mut self, path: &str) -> Result<(), Error> {
        named(|| format!("RM {path}"), removed(self.client.rm(path)))
    }

    /// SET_PERMS: `permissions[0]` names the node's owner and what every domain not listed
    /// may do; the others what the domains they name may do (docs/misc/xenstore.txt).
    pub fn set_perms(&mut self, path: &str, permissions: &[Permission]) -> Result<(), Error> {
        named(
            || format!("SET_PERMS {path}"),
            self.client.set_perms(path, permissions),
        )
    }

    /// WATCH `path` (and everything below it); events carry `token`. A new watch fires once
    /// at once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        named(
            || format!("WATCH {path} (token {token})"),
            self.client.watch_token(path, token),
        )
    }

    /// UNWATCH a watch set with the same path and token.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        named(
            || format!("UNWATCH {path} (token {token})"),
            self.client.unwatch_token(path, token),
        )
    }

    /// Writes `value` to `path` only while `guard` exists, in one transaction (retried on
    /// EAGAIN), so that a directory the toolstack removed is never recreated. Returns whether
    /// it was written.
    pub fn write_if_exists(&mut self, guard: &str, path: &str, value: &str) -> Result<bool, Error> {
        self.write_guarded(guard, path, value, &[])
    }

    /// [`Xenbus::write_if_exists`] that also gives the node `permissions` (see
    /// [`Xenbus::set_perms`]) in the same transaction, so nobody sees it without them.
    pub fn write_with_perms_if_exists(
        &mut self,
        guard: &str,
        path: &str,
        value: &str,
        permissions: &[Permission],
    ) -> Result<bool, Error> {
        self.write_guarded(guard, path, value, permissions)
    }

    fn write_guarded(
        &mut self,
        guard: &str,
        path: &str,
        value: &str,
        permissions: &[Permission],
    ) -> Result<bool, Error> {
        self.transaction(&format!("write {path}"), |store| {
            if optional(store.read(guard))?.is_none() {
                return Ok((false, false));
            }
            store.write(path, value.as_bytes())?;
            if !permissions.is_empty() {
                store.set_perms(path, permissions)?;
            }
            Ok((true, true))
        })
    }

    /// Removes `path`, then each directory above it that is left empty, up to and including
    /// `top` (an ancestor of `path`): what a node written there leaves behind (xenstored
    /// creates a written node's parents). Each directory is checked and removed in one
    /// transaction, so a node another writer adds meanwhile is never removed.
    pub fn remove_with_empty_parents(&mut self, path: &str, top: &str) -> Result<(), Error> {
        self.rm(path)?;
        let below_top = path
            .strip_prefix(top)
            .is_some_and(|rest| rest.starts_with('/'));
        if !below_top {
            return Ok(());
        }
        let mut directory = path;
        while let Some((parent, _)) = directory.rsplit_once('/') {
            if parent.len() < top.len() {
                break;
            }
            let removed = self.transaction(&format!("remove {parent}"), |store| {
                if !names(store.directory(parent))?.is_empty() {
                    return Ok((false, false));
                }
                removed(store.rm(parent))?;
                Ok((true, true))
            })?;
            if !removed {
                break;
            }
            directory = parent;
        }
        Ok(())
    }

    /// Runs `body` in a transaction, retried while it conflicts (EAGAIN); `body` returns its
    /// result and whether to commit. An error of `body` aborts the transaction.
    fn transaction<T>(
        &mut self,
        what: &str,
        mut body: impl FnMut(&mut Transaction<'_, DeviceStream>) -> Result<(T, bool), client::Error>,
    ) -> Result<T, Error> {
        let request = || format!("transaction ({what})");
        for _ in 0..TRANSACTION_ATTEMPTS {
            let id = named(request, self.client.transaction_start())?;
            let (result, commit) = match body(&mut self.client.in_transaction(id)) {
                Ok(outcome) => outcome,
                Err(error) => {
                    let _ = self.client.transaction_end(id, false);
                    return named(request, Err(error));
                }
            };
            match self.client.transaction_end(id, commit) {
                Ok(()) => return Ok(result),
                Err(client::Error::Xenstore(XsdError::Again)) => continue,
                Err(error) => return named(request, Err(error)),
            }
        }
        Err(Error::Conflict {
            what: what.to_string(),
        })
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A READ's value as text, `None` for a missing node.
fn optional(result: Result<Vec<u8>, client::Error>) -> Result<Option<String>, client::Error> {
    match result {
        Ok(value) => Ok(Some(String::from_utf8_lossy(&value).into_owned())),
        Err(error) if is_missing(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A DIRECTORY's names, none for a missing node.
fn names(result: Result<Vec<String>, client::Error>) -> Result<Vec<String>, client::Error> {
    match result {
        Err(error) if is_missing(&error) => Ok(Vec::new()),
        result => result,
    }
}

/// An RM's outcome, a missing node counting as removed.
fn removed(result: Result<(), client::Error>) -> Result<(), client::Error> {
    match result {
        Err(error) if is_missing(&error) => Ok(()),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Decoder, Message};
    use super::*;
    use drivers::xen::xenstore::wire::{EncodeError, Header, MessageType, Request};
    use std::os::unix::net::UnixStream;
    use std::thread;

    /// A message as xenstored sends it.
    fn message(msg_type: MessageType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Header {
            msg_type: msg_type as u32,
            req_id,
            tx_id,
            len: payload.len() as u32,
        }
        .to_bytes()
        .to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    /// A fake xenstored on the other end of a socket pair: for each request it receives, it
    /// sends what `answer` returns (any number of messages), until the client hangs up.
    fn serve(
        answer: impl Fn(&Message) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (Xenbus, thread::JoinHandle<Vec<Message>>) {
        let (client, mut server) = UnixStream::pair().unwrap();
        let handle = thread::spawn(move || {
            let mut decoder = Decoder::default();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let count = server.read(&mut chunk).unwrap();
                if count == 0 {
                    break;
                }
                decoder.push(&chunk[..count]);
                while let Some(request) = decoder.next_message().unwrap() {
                    for reply in answer(&request) {
                        server.write_all(&reply).unwrap();
                    }
                    seen.push(request);
                }
            }
            seen
        });
        (Xenbus::from_fd(OwnedFd::from(client)), handle)
    }

    #[test]
    fn the_decoder_waits_for_whole_messages() {
        let bytes = message(MessageType::Read, 7, 0, b"1280x720");
        let mut decoder = Decoder::default();
        decoder.push(&bytes[..10]);
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.push(&bytes[10..20]);
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.push(&bytes[20..]);
        decoder.push(&message(MessageType::WatchEvent, 0, 0, b"/a\0t\0"));
        let first = decoder.next_message().unwrap().unwrap();
        assert_eq!(
            (
                first.msg_type,
                first.header.req_id,
                first.payload.as_slice()
            ),
            (MessageType::Read, 7, &b"1280x720"[..])
        );
        let second = decoder.next_message().unwrap().unwrap();
        assert_eq!(second.msg_type, MessageType::WatchEvent);
        assert_eq!(decoder.next_message(), Ok(None));

        let mut bad = Decoder::default();
        bad.push(&message(MessageType::Read, 1, 0, b"")[..12]);
        bad.push(&5000u32.to_le_bytes());
        assert_eq!(bad.next_message(), Err(Fault::PayloadTooLong { len: 5000 }));
    }

    #[test]
    fn reads_writes_and_missing_nodes() {
        let (mut client, server) = serve(|request| {
            let reply = match (request.msg_type, request.payload.as_slice()) {
                (MessageType::Read, b"/a\0") => message(MessageType::Read, 0, 0, b"2"),
                (MessageType::Read, _) => message(MessageType::Error, 0, 0, b"ENOENT\0"),
                (MessageType::Write, b"/a\0x") => message(MessageType::Write, 0, 0, b"OK\0"),
                (MessageType::Directory, _) => message(MessageType::Directory, 0, 0, b"0\x001\0"),
                _ => message(MessageType::Error, 0, 0, b"EINVAL\0"),
            };
            let mut reply = reply;
            reply[4..8].copy_from_slice(&request.header.req_id.to_le_bytes());
            vec![reply]
        });
        assert_eq!(client.read("/a").unwrap().as_deref(), Some("2"));
        assert_eq!(client.read("/b").unwrap(), None);
        client.write("/a", "x").unwrap();
        assert_eq!(client.directory("/d").unwrap(), ["0", "1"]);
        drop(client);
        let seen = server.join().unwrap();
        let ids: Vec<u32> = seen.iter().map(|m| m.header.req_id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    #[test]
    fn watch_events_that_arrive_before_a_reply_are_queued() {
        let (mut client, server) = serve(|request| {
            let id = request.header.req_id;
            match request.msg_type {
                MessageType::Watch => vec![
                    message(MessageType::Watch, id, 0, b"OK\0"),
                    message(MessageType::WatchEvent, 0, 0, b"/backend\0be\0"),
                ],
                _ => vec![
                    message(MessageType::WatchEvent, 0, 0, b"/backend/1/0/state\0be\0"),
                    message(MessageType::Read, id, 0, b"1"),
                ],
            }
        });
        client.watch("/backend", "be").unwrap();
        assert_eq!(
            client.read("/backend/1/0/state").unwrap().as_deref(),
            Some("1")
        );
        // The event sent right after the WATCH reply, then the one sent before the READ reply.
        client.receive_events(Duration::from_millis(500)).unwrap();
        let paths: Vec<String> = std::iter::from_fn(|| client.take_event())
            .map(|event| format!("{} {}", event.path, event.token))
            .collect();
        assert_eq!(paths, ["/backend be", "/backend/1/0/state be"]);
        assert!(!client.has_events());
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn errors_name_the_request() {
        let (mut client, server) = serve(|request| match request.msg_type {
            MessageType::Write => vec![message(
                MessageType::Error,
                request.header.req_id,
                0,
                b"EACCES\0",
            )],
            _ => vec![message(
                MessageType::Read,
                request.header.req_id + 5,
                0,
                b"",
            )],
        });
        let refused = client.write("/local/domain/0/x", "1").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "xenstore WRITE /local/domain/0/x: EACCES"
        );
        assert_eq!(refused.refusal(), Some(&XsdError::AccessDenied));
        let wrong = client.read("/y").unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "xenstore READ /y: reply to request 7 while waiting for 2"
        );
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn a_missing_reply_times_out() {
        let (mut client, server) = serve(|_| Vec::new());
        client.set_reply_timeout(Duration::from_millis(100));
        let started = Instant::now();
        let error = client.read("/slow").unwrap_err();
        assert!(
            matches!(
                error,
                Error::Store {
                    error: client::Error::Timeout { .. },
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "xenstore READ /slow: no reply to READ within 100 ms"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(client);
        server.join().unwrap();
    }

    #[test]
    fn guarded_writes_use_a_transaction_and_skip_removed_directories() {
        // Transaction 9: the guard exists, so the write is committed; transaction 10: the guard
        // is gone, so the transaction is aborted.
        let (mut client, server) = serve(|request| {
            let id = request.header.req_id;
            let tx = request.header.tx_id;
            vec![match request.msg_type {
                MessageType::TransactionStart => {
                    let next = if id == 1 { b"9\0" } else { b"10\0" as &[u8] };
                    message(MessageType::TransactionStart, id, 0, next)
                }
                MessageType::Read if tx == 9 => message(MessageType::Read, id, tx, b"4"),
                MessageType::Read => message(MessageType::Error, id, tx, b"ENOENT\0"),
                other => message(other, id, tx, b"OK\0"),
            }]
        });
        assert!(client
            .write_if_exists("/be/state", "/be/state", "6")
            .unwrap());
        assert!(!client
            .write_if_exists("/be/state", "/be/state", "6")
            .unwrap());
        drop(client);
        let seen: Vec<String> = server
            .join()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{} tx={} {}",
                    m.msg_type,
                    m.header.tx_id,
                    String::from_utf8_lossy(&m.payload).replace('\0', "|")
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                "TRANSACTION_START tx=0 |",
                "READ tx=9 /be/state|",
                "WRITE tx=9 /be/state|6",
                "TRANSACTION_END tx=9 T|",
                "TRANSACTION_START tx=0 |",
                "READ tx=10 /be/state|",
                "TRANSACTION_END tx=10 F|",
            ]
        );
    }
    #[test]
    fn set_perms_sends_the_path_then_each_permission() {
        let (mut client, server) = serve(|request| {
            vec![message(
                request.msg_type,
                request.header.req_id,
                request.header.tx_id,
                b"OK\0",
            )]
        });
        let permissions = Permission::readable_by(3);
        client
            .set_perms(
                "/local/domain/0/error/backend/vdispl/3/0/error",
                &permissions,
            )
            .unwrap();
        drop(client);
        let seen = server.join().unwrap();
        let sent = &seen[0];
        // XS_SET_PERMS is 14 in xs_wire.h; the header is type, req_id, tx_id, len.
        assert_eq!(sent.header.msg_type, 14);
        assert_eq!(sent.header.len as usize, sent.payload.len());
        assert_eq!(
            sent.payload,
            b"/local/domain/0/error/backend/vdispl/3/0/error\0n0\0r3\0"
        );
        let letters: Vec<String> = [
            NodeAccess::None,
            NodeAccess::Read,
            NodeAccess::Write,
            NodeAccess::Both,
        ]
        .into_iter()
        .map(|access| Permission { access, domid: 65 }.to_string())
        .collect();
        assert_eq!(letters, ["n65", "r65", "w65", "b65"]);
        let payload = |path| {
            Request::SetPerms {
                path,
                permissions: &permissions,
            }
            .payload()
        };
        assert_eq!(payload("/a\0b"), Err(EncodeError::NulInArgument));
        assert_eq!(
            payload(&"/a".repeat(2100)),
            Err(EncodeError::PayloadTooLarge { len: 4207 })
        );
    }

    #[test]
    fn a_missing_node_is_removed_already() {
        let (fake, mut client) = fake::FakeXenstored::start();
        fake.write("/t/a", "1");
        client.rm("/t/a").unwrap();
        // Missing, its parent there (OK), and its parent missing too (ENOENT): both are fine.
        client.rm("/t/a").unwrap();
        client.rm("/t/x/y").unwrap();
        assert!(fake.node("/t/a").is_none() && fake.node("/t").is_some());
        let replies: Vec<String> = fake.take_requests().iter().map(|r| r.describe()).collect();
        assert_eq!(
            replies,
            ["RM tx=0 /t/a|", "RM tx=0 /t/a|", "RM tx=0 /t/x/y|"]
        );
    }

    #[test]
    fn empty_parents_are_removed_up_to_the_top_and_no_further() {
        let (fake, mut client) = fake::FakeXenstored::start();
        fake.write("/t/a/b/c/error", "x");
        fake.write("/t/a/kept", "1");
        client
            .remove_with_empty_parents("/t/a/b/c/error", "/t/a")
            .unwrap();
        assert_eq!(fake.paths_under("/t"), ["/t", "/t/a", "/t/a/kept"]);
        // Each directory checked and removed in one transaction.
        let requests: Vec<String> = fake.take_requests().iter().map(|r| r.describe()).collect();
        assert_eq!(
            requests,
            [
                "RM tx=0 /t/a/b/c/error|",
                "TRANSACTION_START tx=0 |",
                "DIRECTORY tx=1 /t/a/b/c|",
                "RM tx=1 /t/a/b/c|",
                "TRANSACTION_END tx=1 T|",
                "TRANSACTION_START tx=0 |",
                "DIRECTORY tx=2 /t/a/b|",
                "RM tx=2 /t/a/b|",
                "TRANSACTION_END tx=2 T|",
                "TRANSACTION_START tx=0 |",
                "DIRECTORY tx=3 /t/a|",
                "TRANSACTION_END tx=3 F|",
            ]
        );
        // The top itself goes when empty; what is above it stays.
        client
            .remove_with_empty_parents("/t/a/kept", "/t/a")
            .unwrap();
        assert_eq!(fake.paths_under("/t"), ["/t"]);
        // A top that is no ancestor: only the node goes.
        fake.write("/t/b/c", "1");
        client.remove_with_empty_parents("/t/b/c", "/t/bb").unwrap();
        assert_eq!(fake.paths_under("/t"), ["/t", "/t/b"]);
    }

    #[test]
    fn a_guarded_write_with_permissions_is_one_transaction() {
        let (fake, mut client) = fake::FakeXenstored::start();
        let read3 = Permission::readable_by(3);
        assert!(!client
            .write_with_perms_if_exists("/be/state", "/err/error", "why", &read3)
            .unwrap());
        assert!(fake.node("/err").is_none());
        fake.write("/be/state", "2");
        assert!(client
            .write_with_perms_if_exists("/be/state", "/err/error", "why", &read3)
            .unwrap());
        let node = fake.node("/err/error").unwrap();
        assert_eq!(
            (node.value.as_slice(), node.perms),
            (&b"why"[..], vec!["n0".to_string(), "r3".into()])
        );
        // The parent xenstored created keeps its parent's permissions.
        assert_eq!(fake.node("/err").unwrap().perms, ["n0"]);
    }
}
