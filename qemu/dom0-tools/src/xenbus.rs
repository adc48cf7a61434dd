//! A small blocking xenstore client over a file descriptor that speaks the xenstore wire
//! protocol (`xs_wire.h`, docs/misc/xenstore.txt): `/dev/xen/xenbus` in Dom0, or xenstored's
//! Unix socket.
//!
//! One request is in flight at a time; the reply is awaited with a timeout. Watch events
//! (`XS_WATCH_EVENT`) can arrive at any moment, also while a reply is awaited: they are queued
//! and handed out by [`Xenbus::take_event`]. Messages are built and decoded by the guest's own
//! wire code, `drivers::xen::xenstore::wire`.

use drivers::xen::xenstore::wire::{
    self, EncodeError, Fault, Header, MessageType, Request, WatchEvent, XsdError, HEADER_SIZE,
    XENSTORE_PAYLOAD_MAX,
};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

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
    /// Sending or receiving failed.
    Io {
        /// The request, such as `READ /local/domain/1/name`.
        request: String,
        /// The OS error.
        source: io::Error,
    },
    /// xenstored answered with an error.
    Refused {
        /// The request.
        request: String,
        /// The error it named.
        error: XsdError,
    },
    /// The stream or the reply broke the protocol.
    Protocol {
        /// The request (or `receiving` when none was in flight).
        request: String,
        /// What was wrong.
        fault: Fault,
    },
    /// No reply in time.
    Timeout {
        /// The request.
        request: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The other end closed the stream.
    Closed {
        /// The request.
        request: String,
    },
    /// The request cannot be encoded (nothing was sent).
    Encode {
        /// The request.
        request: String,
        /// Why.
        error: EncodeError,
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
            Error::Io { request, source } => write!(f, "xenstore {request}: {source}"),
            Error::Refused { request, error } => write!(f, "xenstore {request}: {error}"),
            Error::Protocol { request, fault } => write!(f, "xenstore {request}: {fault}"),
            Error::Timeout { request, waited } => write!(
                f,
                "xenstore {request}: no reply within {} ms",
                waited.as_millis()
            ),
            Error::Closed { request } => {
                write!(f, "xenstore {request}: the connection was closed")
            }
            Error::Encode { request, error } => {
                write!(f, "xenstore {request}: cannot be encoded ({error:?})")
            }
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
            Error::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Splits a byte stream into messages.
#[derive(Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

/// One message: its header, checked type and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header as received.
    pub header: Header,
    /// Its type.
    pub msg_type: MessageType,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Decoder {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived. A header with an unknown type or an
    /// oversized payload is a fault: the stream has lost its message boundaries.
    pub fn next_message(&mut self) -> Result<Option<Message>, Fault> {
        let Some(header_bytes) = self.buffer.get(..HEADER_SIZE) else {
            return Ok(None);
        };
        let mut raw = [0u8; HEADER_SIZE];
        raw.copy_from_slice(header_bytes);
        let header = Header::from_bytes(&raw);
        let msg_type = header.check()?;
        let end = HEADER_SIZE + header.len as usize;
        if self.buffer.len() < end {
            return Ok(None);
        }
        let payload = self.buffer[HEADER_SIZE..end].to_vec();
        self.buffer.drain(..end);
        Ok(Some(Message {
            header,
            msg_type,
            payload,
        }))
    }
}

/// Describes a request for error messages: `READ <path>`, `WRITE <path>`, ...
fn describe(request: &Request) -> String {
    match request {
        Request::Read { path }
        | Request::Write { path, .. }
        | Request::Mkdir { path }
        | Request::Rm { path }
        | Request::Directory { path } => format!("{} {path}", request.message_type()),
        Request::Watch { path, token } | Request::Unwatch { path, token } => {
            format!("{} {path} (token {token})", request.message_type())
        }
        Request::TransactionStart | Request::TransactionEnd { .. } => {
            request.message_type().to_string()
        }
        Request::GetDomainPath { domid } => format!("{} {domid}", request.message_type()),
    }
}

/// A xenstore connection.
pub struct Xenbus {
    stream: File,
    decoder: Decoder,
    events: VecDeque<WatchEvent>,
    next_req_id: u32,
    reply_timeout: Duration,
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
        Self {
            stream: File::from(fd),
            decoder: Decoder::default(),
            events: VecDeque::new(),
            next_req_id: 1,
            reply_timeout: REPLY_TIMEOUT,
        }
    }

    /// Changes how long a reply may take.
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// The descriptor, to poll for watch events.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// A queued watch event, if any.
    pub fn take_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// Whether watch events are queued.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Waits up to `timeout` for data, then queues the watch events received. A reply with no
    /// request in flight is a protocol fault.
    pub fn receive_events(&mut self, timeout: Duration) -> Result<(), Error> {
        const RECEIVING: &str = "receiving watch events";
        self.drain_events(RECEIVING)?;
        let timeout = if self.has_events() {
            Duration::ZERO
        } else {
            timeout
        };
        if self.wait_readable(timeout, RECEIVING)? {
            self.read_some(RECEIVING)?;
            self.drain_events(RECEIVING)?;
        }
        Ok(())
    }

    /// Queues the watch events complete in the decoder.
    fn drain_events(&mut self, request: &str) -> Result<(), Error> {
        while let Some(message) = self.next_message(request)? {
            if message.msg_type != MessageType::WatchEvent {
                return Err(Error::Protocol {
                    request: request.into(),
                    fault: Fault::UnexpectedRequestId {
                        expected: None,
                        got: message.header.req_id,
                    },
                });
            }
            self.queue_event(&message, request)?;
        }
        Ok(())
    }

    fn queue_event(&mut self, message: &Message, request: &str) -> Result<(), Error> {
        let event =
            wire::decode_watch_event(&message.payload).map_err(|fault| Error::Protocol {
                request: request.into(),
                fault,
            })?;
        self.events.push_back(event);
        Ok(())
    }

    fn next_message(&mut self, request: &str) -> Result<Option<Message>, Error> {
        self.decoder
            .next_message()
            .map_err(|fault| Error::Protocol {
                request: request.into(),
                fault,
            })
    }

    /// poll(2) for input; false on timeout.
    fn wait_readable(&self, timeout: Duration, request: &str) -> Result<bool, Error> {
        let mut fds = [libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll(2) on one pollfd we own, for at most `millis` ms.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, millis) };
        if ready < 0 {
            let source = io::Error::last_os_error();
            if source.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(Error::Io {
                request: request.into(),
                source,
            });
        }
        Ok(ready > 0)
    }

    fn read_some(&mut self, request: &str) -> Result<(), Error> {
        let mut chunk = [0u8; 4096 + HEADER_SIZE];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Error::Closed {
                request: request.into(),
            }),
            Ok(count) => {
                self.decoder.push(&chunk[..count]);
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(source) => Err(Error::Io {
                request: request.into(),
                source,
            }),
        }
    }

    /// Sends `request` in transaction `tx_id` (0: none) and returns the reply's payload.
    fn call(&mut self, request: Request, tx_id: u32) -> Result<Vec<u8>, Error> {
        let what = describe(&request);
        let payload = request.payload().map_err(|error| Error::Encode {
            request: what.clone(),
            error,
        })?;
        self.exchange(request.message_type(), &payload, what, tx_id)
    }

    /// Sends a message of `msg_type` with `payload` in transaction `tx_id` and returns the
    /// reply's payload; `what` names the request in errors.
    fn exchange(
        &mut self,
        msg_type: MessageType,
        payload: &[u8],
        what: String,
        tx_id: u32,
    ) -> Result<Vec<u8>, Error> {
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
        let header = Header {
            msg_type: msg_type as u32,
            req_id,
            tx_id,
            // A payload is at most XENSTORE_PAYLOAD_MAX bytes (checked by its encoder).
            len: payload.len() as u32,
        };
        let mut bytes = Vec::with_capacity(HEADER_SIZE + payload.len());
        bytes.extend_from_slice(&header.to_bytes());
        bytes.extend_from_slice(payload);
        // One write(2) per message: the xenbus device takes a message at a time.
        self.stream.write_all(&bytes).map_err(|source| Error::Io {
            request: what.clone(),
            source,
        })?;
        let started = Instant::now();
        loop {
            while let Some(message) = self.next_message(&what)? {
                match message.msg_type {
                    MessageType::WatchEvent => self.queue_event(&message, &what)?,
                    _ if message.header.req_id != req_id => {
                        return Err(Error::Protocol {
                            request: what,
                            fault: Fault::UnexpectedRequestId {
                                expected: Some(req_id),
                                got: message.header.req_id,
                            },
                        })
                    }
                    MessageType::Error => {
                        let error = wire::decode_error(&message.payload).map_err(|fault| {
                            Error::Protocol {
                                request: what.clone(),
                                fault,
                            }
                        })?;
                        return Err(Error::Refused {
                            request: what,
                            error,
                        });
                    }
                    got if got != msg_type => {
                        return Err(Error::Protocol {
                            request: what,
                            fault: Fault::UnexpectedReplyType {
                                expected: msg_type,
                                got,
                            },
                        })
                    }
                    _ => return Ok(message.payload),
                }
            }
            let waited = started.elapsed();
            let Some(left) = self.reply_timeout.checked_sub(waited) else {
                return Err(Error::Timeout {
                    request: what,
                    waited,
                });
            };
            if self.wait_readable(left, &what)? {
                self.read_some(&what)?;
            }
        }
    }

    fn ok(&mut self, request: Request, tx_id: u32) -> Result<(), Error> {
        let what = describe(&request);
        let payload = self.call(request, tx_id)?;
        wire::decode_ok(&payload).map_err(|fault| Error::Protocol {
            request: what,
            fault,
        })
    }

    /// READ: the node's value, or `None` if it does not exist.
    pub fn read(&mut self, path: &str) -> Result<Option<String>, Error> {
        self.read_in(0, path)
    }

    fn read_in(&mut self, tx_id: u32, path: &str) -> Result<Option<String>, Error> {
        match self.call(Request::Read { path }, tx_id) {
            Ok(value) => Ok(Some(String::from_utf8_lossy(&value).into_owned())),
            Err(Error::Refused {
                error: XsdError::NoEntry,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// WRITE `value` to `path` (creating it and its parents).
    pub fn write(&mut self, path: &str, value: &str) -> Result<(), Error> {
        self.ok(
            Request::Write {
                path,
                value: value.as_bytes(),
            },
            0,
        )
    }

    /// DIRECTORY: the children's names; empty if the node does not exist.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, Error> {
        self.directory_in(0, path)
    }

    fn directory_in(&mut self, tx_id: u32, path: &str) -> Result<Vec<String>, Error> {
        let request = Request::Directory { path };
        let what = describe(&request);
        match self.call(request, tx_id) {
            Ok(payload) => wire::decode_directory(&payload).map_err(|fault| Error::Protocol {
                request: what,
                fault,
            }),
            Err(Error::Refused {
                error: XsdError::NoEntry,
                ..
            }) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// RM `path` and everything below it; a node that is not there (or whose parent is not)
    /// is no error.
    pub fn rm(&mut self, path: &str) -> Result<(), Error> {
        self.rm_in(0, path)
    }

    fn rm_in(&mut self, tx_id: u32, path: &str) -> Result<(), Error> {
        match self.ok(Request::Rm { path }, tx_id) {
            Err(Error::Refused {
                error: XsdError::NoEntry,
                ..
            }) => Ok(()),
            result => result,
        }
    }

    /// SET_PERMS: `permissions[0]` names the node's owner and what every domain not listed
    /// may do; the others what the domains they name may do (docs/misc/xenstore.txt).
    pub fn set_perms(&mut self, path: &str, permissions: &[Permission]) -> Result<(), Error> {
        self.set_perms_in(0, path, permissions)
    }

    fn set_perms_in(
        &mut self,
        tx_id: u32,
        path: &str,
        permissions: &[Permission],
    ) -> Result<(), Error> {
        let what = format!("{} {path}", MessageType::SetPerms);
        let payload = set_perms_payload(path, permissions).map_err(|error| Error::Encode {
            request: what.clone(),
            error,
        })?;
        let reply = self.exchange(MessageType::SetPerms, &payload, what.clone(), tx_id)?;
        wire::decode_ok(&reply).map_err(|fault| Error::Protocol {
            request: what,
            fault,
        })
    }

    /// WATCH `path` (and everything below it); events carry `token`. A new watch fires once
    /// at once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.ok(Request::Watch { path, token }, 0)
    }

    /// UNWATCH a watch set with the same path and token.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.ok(Request::Unwatch { path, token }, 0)
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
        self.transaction(&format!("write {path}"), |store, tx_id| {
            if store.read_in(tx_id, guard)?.is_none() {
                return Ok((false, false));
            }
            store.ok(
                Request::Write {
                    path,
                    value: value.as_bytes(),
                },
                tx_id,
            )?;
            if !permissions.is_empty() {
                store.set_perms_in(tx_id, path, permissions)?;
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
            let removed = self.transaction(&format!("remove {parent}"), |store, tx_id| {
                if !store.directory_in(tx_id, parent)?.is_empty() {
                    return Ok((false, false));
                }
                store.rm_in(tx_id, parent)?;
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
        mut body: impl FnMut(&mut Self, u32) -> Result<(T, bool), Error>,
    ) -> Result<T, Error> {
        for _ in 0..TRANSACTION_ATTEMPTS {
            let payload = self.call(Request::TransactionStart, 0)?;
            let tx_id = wire::decode_transaction_id(&payload).map_err(|fault| Error::Protocol {
                request: "TRANSACTION_START".into(),
                fault,
            })?;
            let (result, commit) = match body(self, tx_id) {
                Ok(outcome) => outcome,
                Err(error) => {
                    let _ = self.ok(Request::TransactionEnd { commit: false }, tx_id);
                    return Err(error);
                }
            };
            match self.ok(Request::TransactionEnd { commit }, tx_id) {
                Ok(()) => return Ok(result),
                Err(Error::Refused {
                    error: XsdError::Again,
                    ..
                }) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(Error::Conflict {
            what: what.to_string(),
        })
    }
}

/// What a domain may do with a node (docs/misc/xenstore.txt, SET_PERMS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAccess {
    /// `n`: nothing.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

/// One entry of a node's permissions: a domain and what it may do (`r3`: domain 3 may read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// What the domain may do.
    pub access: NodeAccess,
    /// The domain.
    pub domid: u32,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self.access {
            NodeAccess::None => 'n',
            NodeAccess::Read => 'r',
            NodeAccess::Write => 'w',
            NodeAccess::Both => 'b',
        };
        write!(f, "{letter}{}", self.domid)
    }
}

/// The payload of SET_PERMS: `<path>|<perm-as-string>|+`.
pub fn set_perms_payload(path: &str, permissions: &[Permission]) -> Result<Vec<u8>, EncodeError> {
    if path.as_bytes().contains(&0) {
        return Err(EncodeError::NulInArgument);
    }
    let mut payload = Vec::with_capacity(path.len() + 1 + permissions.len() * 8);
    payload.extend_from_slice(path.as_bytes());
    payload.push(0);
    for permission in permissions {
        payload.extend_from_slice(permission.to_string().as_bytes());
        payload.push(0);
    }
    if payload.len() > XENSTORE_PAYLOAD_MAX {
        return Err(EncodeError::PayloadTooLarge { len: payload.len() });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(matches!(error, Error::Timeout { .. }), "{error}");
        assert!(error
            .to_string()
            .starts_with("xenstore READ /slow: no reply within "));
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
        let permissions = [
            Permission {
                access: NodeAccess::None,
                domid: 0,
            },
            Permission {
                access: NodeAccess::Read,
                domid: 3,
            },
        ];
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
        assert_eq!(
            set_perms_payload("/a\0b", &permissions),
            Err(EncodeError::NulInArgument)
        );
        assert_eq!(
            set_perms_payload(&"/a".repeat(2100), &permissions),
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
        let read3 = [
            Permission {
                access: NodeAccess::None,
                domid: 0,
            },
            Permission {
                access: NodeAccess::Read,
                domid: 3,
            },
        ];
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
