//! A blocking xenstore client over the shared ring (docs/misc/xenstore.txt).
//!
//! One request is in flight at a time, except in a [`Client::batch`], which
//! sends several before it waits (one round trip for all of them). Replies
//! are matched by `req_id`;
//! WATCH_EVENT messages (`req_id` 0) that arrive meanwhile are queued and run
//! later by [`Client::dispatch_watches`], never lost. Every wait has a
//! deadline. Anything xenstored sends that breaks the protocol is an
//! [`Error::Malformed`], never a panic; when it also breaks the framing of the
//! byte stream (ring indexes past the ring, an unknown type, an over-long
//! payload) the connection is marked broken and every later call fails with
//! [`Error::Broken`], naming the original fault.
//!
//! The client reaches xenstored through [`Stream`], a byte stream with a
//! clock: the guest's shared ring page (every [`Transport`] is one), or
//! Dom0's `/dev/xen/xenbus`, which carries the same messages, replies and
//! watch events interleaved, over a file descriptor. Host tests run it
//! against fakes of both.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::ring::{XenstoreInterface, XENSTORE_RING_SIZE};
use super::wire::{
    self, EncodeError, Fault, Header, MessageType, Permission, Request, WatchEvent, XsdError,
    HEADER_SIZE,
};

/// The ring page, the event channel and the clock, as the client needs them.
pub trait Transport {
    /// The shared ring page.
    fn interface(&self) -> &XenstoreInterface;
    /// Tells xenstored there is work (event channel notify in the guest).
    fn notify(&mut self);
    /// Waits until xenstored may have made progress (an event arrived) or the
    /// monotonic clock reaches `deadline_ns`, whichever is first. The guest
    /// blocks in WFI; fakes step.
    fn wait(&mut self, deadline_ns: u64);
    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
}

/// A byte stream to xenstored and a clock: what the client needs of its
/// connection. Requests go out as bytes, replies and watch events come in as
/// bytes, each direction in pieces of any size.
pub trait Stream {
    /// Hands as much of `bytes` to xenstored as it takes now (0: no room
    /// yet). `bytes` never spans more than one message: a Linux xenbus device
    /// drops whatever follows the first message of a write.
    fn send(&mut self, bytes: &[u8]) -> Result<usize, Fault>;
    /// Takes up to `buffer.len()` bytes xenstored sent, without blocking (0:
    /// none yet).
    fn receive(&mut self, buffer: &mut [u8]) -> Result<usize, Fault>;
    /// Tells xenstored that bytes were sent or room was made.
    fn notify(&mut self);
    /// Waits until xenstored may have made progress or the monotonic clock
    /// reaches `deadline_ns`, whichever is first.
    fn wait(&mut self, deadline_ns: u64);
    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Why xenstored has stopped serving the connection, if it says so.
    fn given_up(&self) -> Option<Fault>;
}

/// The shared ring page is a byte stream: requests into `req`, replies and
/// events out of `rsp`, the page's error field saying when xenstored gave up.
impl<T: Transport> Stream for T {
    fn send(&mut self, bytes: &[u8]) -> Result<usize, Fault> {
        Ok(self.interface().write_request(bytes)?)
    }

    fn receive(&mut self, buffer: &mut [u8]) -> Result<usize, Fault> {
        Ok(self.interface().read_response(buffer)?)
    }

    fn notify(&mut self) {
        Transport::notify(self);
    }

    fn wait(&mut self, deadline_ns: u64) {
        Transport::wait(self, deadline_ns);
    }

    fn now_ns(&self) -> u64 {
        Transport::now_ns(self)
    }

    fn given_up(&self) -> Option<Fault> {
        self.interface()
            .reported_error()
            .map(|code| Fault::ServerError { code })
    }
}

/// How long a request waits for its reply unless configured otherwise.
pub const DEFAULT_REQUEST_TIMEOUT_NS: u64 = 5_000_000_000;
/// How many times [`Client::transaction`] runs its body before giving up on
/// EAGAIN, unless configured otherwise.
pub const DEFAULT_TRANSACTION_ATTEMPTS: u32 = 10;
/// Watch events kept while nothing dispatches them; older ones are dropped
/// beyond this (watches may fire spuriously, so consumers re-read anyway).
pub const MAX_QUEUED_EVENTS: usize = 256;
/// What stands in for a result [`Client::call_many`] did not produce (it
/// produces one per request).
const NO_RESULT: Error = Error::Broken {
    reason: Fault::RequestCutShort,
};
/// Timed-out requests whose late replies are still recognised and dropped.
const MAX_ABANDONED: usize = 16;

/// A failed xenstore operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// xenstored answered with an ERROR reply.
    Xenstore(XsdError),
    /// The request payload would exceed `XENSTORE_PAYLOAD_MAX`; nothing was
    /// sent.
    PayloadTooLarge {
        /// The payload length.
        len: usize,
    },
    /// A path or token contains a NUL byte; nothing was sent.
    NulInArgument,
    /// No reply within the request timeout.
    Timeout {
        /// The request.
        request: MessageType,
        /// The timeout, in milliseconds.
        waited_ms: u64,
    },
    /// xenstored sent something that breaks the protocol.
    Malformed {
        /// What was wrong.
        reason: Fault,
    },
    /// The connection was given up after an earlier fault.
    Broken {
        /// The fault that ended it.
        reason: Fault,
    },
    /// A value read as a string is not UTF-8.
    NotUtf8,
    /// A transaction still ended in EAGAIN after this many attempts.
    TransactionConflict {
        /// Attempts made.
        attempts: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xenstore(error) => write!(f, "xenstored replied {error}"),
            Error::PayloadTooLarge { len } => write!(
                f,
                "request payload of {len} bytes exceeds {} bytes; not sent",
                wire::XENSTORE_PAYLOAD_MAX
            ),
            Error::NulInArgument => f.write_str("path or token contains a NUL byte; not sent"),
            Error::Timeout { request, waited_ms } => {
                write!(f, "no reply to {request} within {waited_ms} ms")
            }
            Error::Malformed { reason } => write!(f, "malformed message from xenstored: {reason}"),
            Error::Broken { reason } => {
                write!(f, "xenstore connection given up after: {reason}")
            }
            Error::NotUtf8 => f.write_str("value is not UTF-8"),
            Error::TransactionConflict { attempts } => {
                write!(
                    f,
                    "transaction still conflicting (EAGAIN) after {attempts} attempts"
                )
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<EncodeError> for Error {
    fn from(error: EncodeError) -> Self {
        match error {
            EncodeError::PayloadTooLarge { len } => Error::PayloadTooLarge { len },
            EncodeError::NulInArgument => Error::NulInArgument,
        }
    }
}

/// One operation of a [`Client::batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOp<'a> {
    /// READ of a node.
    Read(&'a str),
    /// WRITE of a node and value.
    Write(&'a str, &'a [u8]),
    /// DIRECTORY of a node.
    Directory(&'a str),
}

impl<'a> BatchOp<'a> {
    fn request(self) -> Request<'a> {
        match self {
            BatchOp::Read(path) => Request::Read { path },
            BatchOp::Write(path, value) => Request::Write { path, value },
            BatchOp::Directory(path) => Request::Directory { path },
        }
    }
}

/// The reply to one operation of a [`Client::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchReply {
    /// A READ's value.
    Value(Vec<u8>),
    /// A WRITE was done.
    Written,
    /// A DIRECTORY's child names.
    Names(Vec<String>),
}

impl BatchReply {
    /// The value of a READ (`None` for the other kinds).
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            BatchReply::Value(value) => Some(value),
            _ => None,
        }
    }

    /// The names of a DIRECTORY (`None` for the other kinds).
    pub fn into_names(self) -> Option<Vec<String>> {
        match self {
            BatchReply::Names(names) => Some(names),
            _ => None,
        }
    }
}

/// A transaction id from TRANSACTION_START.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionId(pub u32);

/// A registered watch; give it back to [`Client::unwatch`]. Dropping it
/// leaves the watch in place.
#[derive(Debug, PartialEq, Eq)]
pub struct WatchHandle {
    path: String,
    token: String,
}

impl WatchHandle {
    /// The watched path, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The token the client chose for it.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// A callback run with the path of each event of its watch.
pub type WatchCallback = Box<dyn FnMut(&str) + Send>;

struct Watch {
    token: String,
    callback: WatchCallback,
}

/// A complete message from xenstored.
struct Message {
    header: Header,
    msg_type: MessageType,
    payload: Vec<u8>,
}

/// Reassembles messages from the byte stream, which may arrive in pieces.
struct Incoming {
    header: [u8; HEADER_SIZE],
    header_filled: usize,
    /// The checked header and the payload bytes so far, once the header is in.
    body: Option<(Header, MessageType, Vec<u8>, usize)>,
}

impl Incoming {
    const fn new() -> Self {
        Incoming {
            header: [0; HEADER_SIZE],
            header_filled: 0,
            body: None,
        }
    }
}

/// A xenstore client. See the module documentation.
pub struct Client<T: Stream> {
    transport: T,
    request_timeout_ns: u64,
    transaction_attempts: u32,
    next_request_id: u32,
    next_watch_id: u64,
    incoming: Incoming,
    abandoned: VecDeque<u32>,
    events: VecDeque<WatchEvent>,
    watches: Vec<Watch>,
    broken: Option<Fault>,
}

impl<T: Stream> Client<T> {
    /// A client over `transport` with the default timeout and attempts.
    pub fn new(transport: T) -> Self {
        Client {
            transport,
            request_timeout_ns: DEFAULT_REQUEST_TIMEOUT_NS,
            transaction_attempts: DEFAULT_TRANSACTION_ATTEMPTS,
            next_request_id: 1,
            next_watch_id: 1,
            incoming: Incoming::new(),
            abandoned: VecDeque::new(),
            events: VecDeque::new(),
            watches: Vec::new(),
            broken: None,
        }
    }

    /// Sets how long each request waits for its reply.
    pub fn set_request_timeout_ns(&mut self, timeout_ns: u64) {
        self.request_timeout_ns = timeout_ns;
    }

    /// Sets how many times [`Client::transaction`] tries (at least once).
    pub fn set_transaction_attempts(&mut self, attempts: u32) {
        self.transaction_attempts = attempts.max(1);
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (fakes are scripted through it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The fault that ended the connection, if any.
    pub fn broken(&self) -> Option<Fault> {
        self.broken
    }

    /// The transport's monotonic clock.
    pub fn now_ns(&self) -> u64 {
        self.transport.now_ns()
    }

    /// Reads a node's value (READ).
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        self.read_in(0, path)
    }

    /// Reads a node's value as UTF-8 text.
    pub fn read_string(&mut self, path: &str) -> Result<String, Error> {
        self.read_string_in(0, path)
    }

    /// Writes a node, creating missing parents (WRITE).
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        self.write_in(0, path, value)
    }

    /// Creates a node and missing parents; existing values stay (MKDIR).
    pub fn mkdir(&mut self, path: &str) -> Result<(), Error> {
        self.mkdir_in(0, path)
    }

    /// Removes a node and its children (RM).
    pub fn rm(&mut self, path: &str) -> Result<(), Error> {
        self.rm_in(0, path)
    }

    /// The leaf names of a node's children (DIRECTORY).
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, Error> {
        self.directory_in(0, path)
    }

    /// Runs `ops` as one batch: every request is sent before the first reply
    /// is awaited, so the batch costs one round trip to xenstored rather
    /// than one per operation (xenstored answers them in order; a batch
    /// larger than the request ring goes in parts, one round trip each). The
    /// results are in the order of `ops`, each what the single operation
    /// would have returned: one failing does not stop the others.
    pub fn batch(&mut self, ops: &[BatchOp<'_>]) -> Vec<Result<BatchReply, Error>> {
        self.batch_in(0, ops)
    }

    /// The home path of a domain, `/local/domain/<domid>` (GET_DOMAIN_PATH).
    pub fn get_domain_path(&mut self, domid: u16) -> Result<String, Error> {
        let payload = self.call(0, &Request::GetDomainPath { domid })?;
        wire::decode_path(&payload).map_err(|reason| Error::Malformed { reason })
    }

    /// Watches `path` and its descendants (WATCH): `callback` runs with the
    /// changed path on each event, from [`Client::dispatch_watches`].
    /// xenstored fires a new watch once straight away; that event is
    /// delivered like any other.
    pub fn watch(&mut self, path: &str, callback: WatchCallback) -> Result<WatchHandle, Error> {
        let token = format!("vdispl-os/{}", self.next_watch_id);
        self.next_watch_id += 1;
        // Registered before the request: the first event may come before
        // the reply.
        self.watches.push(Watch {
            token: token.clone(),
            callback,
        });
        let result = self.call_ok(
            0,
            &Request::Watch {
                path,
                token: &token,
            },
        );
        match result {
            Ok(()) => Ok(WatchHandle {
                path: String::from(path),
                token,
            }),
            Err(error) => {
                self.forget_watch(&token);
                Err(error)
            }
        }
    }

    /// Removes a watch (UNWATCH). Its callback never runs again, even if
    /// xenstored refuses the request.
    pub fn unwatch(&mut self, handle: WatchHandle) -> Result<(), Error> {
        self.forget_watch(&handle.token);
        self.call_ok(
            0,
            &Request::Unwatch {
                path: &handle.path,
                token: &handle.token,
            },
        )
    }

    /// Starts a transaction (TRANSACTION_START).
    pub fn transaction_start(&mut self) -> Result<TransactionId, Error> {
        let payload = self.call(0, &Request::TransactionStart)?;
        wire::decode_transaction_id(&payload)
            .map(TransactionId)
            .map_err(|reason| Error::Malformed { reason })
    }

    /// Commits (`commit`) or aborts a transaction (TRANSACTION_END). A commit
    /// that conflicted fails with `Error::Xenstore(XsdError::Again)`.
    pub fn transaction_end(&mut self, id: TransactionId, commit: bool) -> Result<(), Error> {
        self.call_ok(id.0, &Request::TransactionEnd { commit })
    }

    /// Operations inside transaction `id`, started with
    /// [`Client::transaction_start`].
    pub fn in_transaction(&mut self, id: TransactionId) -> Transaction<'_, T> {
        Transaction { client: self, id }
    }

    /// Runs `body` inside a transaction and commits it. On EAGAIN (from the
    /// commit or from an operation) the transaction is abandoned and the
    /// whole body runs again, up to the configured number of attempts; any
    /// other error from `body` aborts the transaction and is returned.
    pub fn transaction<R>(
        &mut self,
        mut body: impl FnMut(&mut Transaction<'_, T>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let again = Error::Xenstore(XsdError::Again);
        for _ in 0..self.transaction_attempts {
            let id = self.transaction_start()?;
            match body(&mut self.in_transaction(id)) {
                Ok(value) => match self.transaction_end(id, true) {
                    Ok(()) => return Ok(value),
                    Err(error) if error == again => continue,
                    Err(error) => return Err(error),
                },
                Err(error) => {
                    // Best effort: a failed abort leaves nothing to undo here,
                    // and the body's error is the one worth reporting.
                    if let Err(abort) = self.transaction_end(id, false) {
                        log::debug!("xenstore: aborting transaction {}: {abort}", id.0);
                    }
                    if error != again {
                        return Err(error);
                    }
                }
            }
        }
        Err(Error::TransactionConflict {
            attempts: self.transaction_attempts,
        })
    }

    /// Takes in whatever xenstored has sent, without blocking: watch events
    /// are queued for [`Client::dispatch_watches`]. Returns how many events
    /// are queued. Call it when the store event channel fires.
    pub fn poll(&mut self) -> Result<usize, Error> {
        self.check_usable()?;
        while let Some(message) = self.next_message()? {
            self.take_unsolicited(message)?;
        }
        Ok(self.events.len())
    }

    /// Runs the callbacks of the queued watch events, in arrival order;
    /// returns how many ran. Events of watches removed meanwhile are dropped.
    pub fn dispatch_watches(&mut self) -> usize {
        let mut ran = 0;
        while let Some(event) = self.events.pop_front() {
            match self.watches.iter_mut().find(|w| w.token == event.token) {
                Some(watch) => {
                    (watch.callback)(&event.path);
                    ran += 1;
                }
                None => log::debug!(
                    "xenstore: event {} for unknown watch {}",
                    event.path,
                    event.token
                ),
            }
        }
        ran
    }

    /// Waits until a watch event arrives or the clock reaches `deadline_ns`,
    /// then dispatches what is queued; returns how many callbacks ran. Blocks
    /// in [`Stream::wait`], never spins.
    pub fn wait_for_watches(&mut self, deadline_ns: u64) -> Result<usize, Error> {
        self.wait_for_events(deadline_ns)?;
        Ok(self.dispatch_watches())
    }

    /// Waits until a watch event is queued or the clock reaches
    /// `deadline_ns`, without running callbacks; returns how many events are
    /// queued.
    pub fn wait_for_events(&mut self, deadline_ns: u64) -> Result<usize, Error> {
        self.poll()?;
        if self.events.is_empty() && self.transport.now_ns() < deadline_ns {
            self.transport.wait(deadline_ns);
            self.poll()?;
        }
        Ok(self.events.len())
    }

    /// Watches `path` and its descendants with the caller's `token` (WATCH)
    /// and no callback: its events are handed out by [`Client::take_event`].
    pub fn watch_token(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.call_ok(0, &Request::Watch { path, token })
    }

    /// Removes a watch set with [`Client::watch_token`] (UNWATCH).
    pub fn unwatch_token(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.call_ok(0, &Request::Unwatch { path, token })
    }

    /// The oldest queued watch event, taken off the queue; for watches set
    /// with [`Client::watch_token`] (callbacks are run by
    /// [`Client::dispatch_watches`] instead).
    pub fn take_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// How many watch events are queued.
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    /// Sets a node's permissions (SET_PERMS): `permissions[0]` names the
    /// owner and what every domain not listed may do.
    pub fn set_perms(&mut self, path: &str, permissions: &[Permission]) -> Result<(), Error> {
        self.set_perms_in(0, path, permissions)
    }

    fn read_in(&mut self, tx_id: u32, path: &str) -> Result<Vec<u8>, Error> {
        self.call(tx_id, &Request::Read { path })
    }

    fn read_string_in(&mut self, tx_id: u32, path: &str) -> Result<String, Error> {
        String::from_utf8(self.read_in(tx_id, path)?).map_err(|_| Error::NotUtf8)
    }

    fn write_in(&mut self, tx_id: u32, path: &str, value: &[u8]) -> Result<(), Error> {
        self.call_ok(tx_id, &Request::Write { path, value })
    }

    fn mkdir_in(&mut self, tx_id: u32, path: &str) -> Result<(), Error> {
        self.call_ok(tx_id, &Request::Mkdir { path })
    }

    fn rm_in(&mut self, tx_id: u32, path: &str) -> Result<(), Error> {
        self.call_ok(tx_id, &Request::Rm { path })
    }

    fn directory_in(&mut self, tx_id: u32, path: &str) -> Result<Vec<String>, Error> {
        let payload = self.call(tx_id, &Request::Directory { path })?;
        wire::decode_directory(&payload).map_err(|reason| Error::Malformed { reason })
    }

    fn set_perms_in(
        &mut self,
        tx_id: u32,
        path: &str,
        permissions: &[Permission],
    ) -> Result<(), Error> {
        self.call_ok(tx_id, &Request::SetPerms { path, permissions })
    }

    fn forget_watch(&mut self, token: &str) {
        self.watches.retain(|watch| watch.token != token);
    }

    /// A request whose reply is `OK|`.
    fn call_ok(&mut self, tx_id: u32, request: &Request<'_>) -> Result<(), Error> {
        let payload = self.call(tx_id, request)?;
        wire::decode_ok(&payload).map_err(|reason| Error::Malformed { reason })
    }

    fn batch_in(&mut self, tx_id: u32, ops: &[BatchOp<'_>]) -> Vec<Result<BatchReply, Error>> {
        let requests: Vec<Request<'_>> = ops.iter().map(|op| op.request()).collect();
        let payloads = self.call_many(tx_id, &requests);
        ops.iter()
            .zip(payloads)
            .map(|(op, payload)| {
                let payload = payload?;
                let malformed = |reason| Error::Malformed { reason };
                Ok(match op {
                    BatchOp::Read(_) => BatchReply::Value(payload),
                    BatchOp::Write(..) => {
                        wire::decode_ok(&payload).map_err(malformed)?;
                        BatchReply::Written
                    }
                    BatchOp::Directory(_) => {
                        BatchReply::Names(wire::decode_directory(&payload).map_err(malformed)?)
                    }
                })
            })
            .collect()
    }

    /// A fresh request id (never 0, the id of watch events).
    fn new_request_id(&mut self) -> u32 {
        let req_id = self.next_request_id;
        self.next_request_id = match req_id.wrapping_add(1) {
            0 => 1,
            next => next,
        };
        req_id
    }

    /// The payload of `reply` to a request of type `request_type`, or the
    /// error it carries.
    fn reply_payload(reply: Message, request_type: MessageType) -> Result<Vec<u8>, Error> {
        match reply.msg_type {
            MessageType::Error => match wire::decode_error(&reply.payload) {
                Ok(error) => Err(Error::Xenstore(error)),
                Err(reason) => Err(Error::Malformed { reason }),
            },
            got if got == request_type => Ok(reply.payload),
            got => Err(Error::Malformed {
                reason: Fault::UnexpectedReplyType {
                    expected: request_type,
                    got,
                },
            }),
        }
    }

    /// Sends `request` and returns the payload of its reply.
    fn call(&mut self, tx_id: u32, request: &Request<'_>) -> Result<Vec<u8>, Error> {
        self.call_many(tx_id, core::slice::from_ref(request))
            .pop()
            .unwrap_or(Err(NO_RESULT))
    }

    /// Sends `requests` in parts that fit the request ring together (the
    /// ring is empty between parts: every earlier request was answered), each
    /// part's requests one after the other, then awaits the part's replies;
    /// the payload or error of each request, in order.
    fn call_many(&mut self, tx_id: u32, requests: &[Request<'_>]) -> Vec<Result<Vec<u8>, Error>> {
        let mut results: Vec<Option<Result<Vec<u8>, Error>>> =
            requests.iter().map(|_| None).collect();
        let mut next = 0;
        while next < requests.len() {
            if self.check_usable().is_err() {
                for slot in &mut results[next..] {
                    *slot = Some(Err(self.given_up()));
                }
                break;
            }
            let deadline = self
                .transport
                .now_ns()
                .saturating_add(self.request_timeout_ns);
            let mut part = Vec::new();
            let mut bytes = 0;
            while next < requests.len() {
                let request = &requests[next];
                let request_type = request.message_type();
                let req_id = self.new_request_id();
                let message = match request.encode(req_id, tx_id) {
                    Ok(message) => message,
                    Err(error) => {
                        results[next] = Some(Err(error.into()));
                        next += 1;
                        continue;
                    }
                };
                if !part.is_empty() && bytes + message.len() > XENSTORE_RING_SIZE {
                    break;
                }
                bytes += message.len();
                let sent = self.send(&message, request_type, deadline);
                let failed = sent.is_err();
                match sent {
                    Ok(()) => part.push((next, req_id, request_type)),
                    Err(error) => results[next] = Some(Err(error)),
                }
                next += 1;
                if failed {
                    break;
                }
            }
            for (index, result) in self.await_replies(part, deadline) {
                results[index] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or(Err(NO_RESULT)))
            .collect()
    }

    /// Waits for the replies to `waiting` (index in the batch, request id,
    /// request type), queueing watch events meanwhile; each request's result
    /// by its index.
    fn await_replies(
        &mut self,
        mut waiting: Vec<(usize, u32, MessageType)>,
        deadline: u64,
    ) -> Vec<(usize, Result<Vec<u8>, Error>)> {
        let mut done = Vec::new();
        while !waiting.is_empty() {
            match self.next_message() {
                Ok(Some(message)) => {
                    let got = message.header.req_id;
                    if message.msg_type == MessageType::WatchEvent {
                        self.queue_event(&message);
                    } else if let Some(position) = waiting.iter().position(|w| w.1 == got) {
                        let (index, _, request_type) = waiting.remove(position);
                        done.push((index, Self::reply_payload(message, request_type)));
                    } else if !self.drop_abandoned(got) {
                        // Not a reply to the batch: the oldest request still
                        // waiting is given up (its reply, if it comes, is
                        // dropped), as a single call does.
                        let (index, req_id, _) = waiting.remove(0);
                        self.abandon(req_id);
                        done.push((
                            index,
                            Err(Error::Malformed {
                                reason: Fault::UnexpectedRequestId {
                                    expected: Some(req_id),
                                    got,
                                },
                            }),
                        ));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    // The first request waiting gets the fault, the others
                    // the connection given up.
                    let mut error = Some(error);
                    for (index, ..) in waiting.drain(..) {
                        done.push((index, Err(error.take().unwrap_or(self.given_up()))));
                    }
                    break;
                }
            }
            // xenstored may have given the ring up instead of answering.
            if self.check_usable().is_err() {
                for (index, ..) in waiting.drain(..) {
                    done.push((index, Err(self.given_up())));
                }
                break;
            }
            if self.transport.now_ns() >= deadline {
                for (index, req_id, request_type) in waiting.drain(..) {
                    self.abandon(req_id);
                    done.push((index, Err(self.timeout(request_type))));
                }
                break;
            }
            self.transport.wait(deadline);
        }
        done
    }

    /// The error of a request that finds the connection given up.
    fn given_up(&self) -> Error {
        Error::Broken {
            reason: self.broken.unwrap_or(Fault::RequestCutShort),
        }
    }

    /// Fails if the connection was given up, or xenstored reports it gone.
    fn check_usable(&mut self) -> Result<(), Error> {
        if self.broken.is_none() {
            self.broken = self.transport.given_up();
        }
        match self.broken {
            Some(reason) => Err(Error::Broken { reason }),
            None => Ok(()),
        }
    }

    /// Gives the connection up: the message boundaries are lost.
    fn break_with(&mut self, reason: Fault) -> Error {
        log::warn!("xenstore: connection given up: {reason}");
        self.broken = Some(reason);
        Error::Malformed { reason }
    }

    fn timeout(&self, request: MessageType) -> Error {
        Error::Timeout {
            request,
            waited_ms: self.request_timeout_ns / 1_000_000,
        }
    }

    /// Streams `message` into the request ring, waiting for room as needed.
    fn send(&mut self, message: &[u8], request: MessageType, deadline: u64) -> Result<(), Error> {
        let mut sent = 0;
        loop {
            let taken = match self.transport.send(&message[sent..]) {
                Ok(taken) => taken,
                Err(fault) => return Err(self.break_with(fault)),
            };
            if taken > 0 {
                sent += taken;
                self.transport.notify();
                if sent == message.len() {
                    return Ok(());
                }
                // A stream may take a message in pieces: offer the rest
                // before waiting.
                continue;
            }
            // Keep the response ring moving while the request ring is full.
            while let Some(message) = self.next_message()? {
                if let Err(error) = self.take_unsolicited(message) {
                    // Returning now would cut the request short: drop it.
                    log::warn!("xenstore: while sending: {error}");
                }
            }
            if self.transport.now_ns() >= deadline {
                if sent > 0 {
                    self.broken = Some(Fault::RequestCutShort);
                }
                return Err(self.timeout(request));
            }
            self.transport.wait(deadline);
        }
    }

    /// Handles a message that arrived with no request waiting for it.
    fn take_unsolicited(&mut self, message: Message) -> Result<(), Error> {
        if message.msg_type == MessageType::WatchEvent {
            self.queue_event(&message);
            return Ok(());
        }
        let got = message.header.req_id;
        if self.drop_abandoned(got) {
            return Ok(());
        }
        Err(Error::Malformed {
            reason: Fault::UnexpectedRequestId {
                expected: None,
                got,
            },
        })
    }

    fn abandon(&mut self, req_id: u32) {
        if self.abandoned.len() == MAX_ABANDONED {
            self.abandoned.pop_front();
        }
        self.abandoned.push_back(req_id);
    }

    /// Whether `req_id` belongs to a timed-out request (forgotten now).
    fn drop_abandoned(&mut self, req_id: u32) -> bool {
        match self.abandoned.iter().position(|&id| id == req_id) {
            Some(index) => {
                self.abandoned.remove(index);
                log::debug!("xenstore: dropped late reply to request {req_id}");
                true
            }
            None => false,
        }
    }

    fn queue_event(&mut self, message: &Message) {
        let event = match wire::decode_watch_event(&message.payload) {
            Ok(event) => event,
            Err(fault) => {
                log::warn!("xenstore: dropped watch event: {fault}");
                return;
            }
        };
        if self.events.contains(&event) {
            return; // Still pending: one callback covers both.
        }
        if self.events.len() == MAX_QUEUED_EVENTS {
            if let Some(old) = self.events.pop_front() {
                log::warn!("xenstore: event queue full, dropped {}", old.path);
            }
        }
        self.events.push_back(event);
    }

    /// Reads from the response ring until a whole message is in or the ring
    /// is empty. Framing faults give the connection up.
    fn next_message(&mut self) -> Result<Option<Message>, Error> {
        let mut consumed = false;
        let result = self.reassemble(&mut consumed);
        if consumed {
            // Room in the ring: xenstored may have more to send.
            self.transport.notify();
        }
        match result {
            Ok(message) => Ok(message),
            Err(fault) => Err(self.break_with(fault)),
        }
    }

    fn reassemble(&mut self, consumed: &mut bool) -> Result<Option<Message>, Fault> {
        let transport = &mut self.transport;
        let incoming = &mut self.incoming;
        loop {
            match &mut incoming.body {
                None => {
                    let read = transport.receive(&mut incoming.header[incoming.header_filled..])?;
                    if read == 0 {
                        return Ok(None);
                    }
                    *consumed = true;
                    incoming.header_filled += read;
                    if incoming.header_filled == HEADER_SIZE {
                        incoming.header_filled = 0;
                        let header = Header::from_bytes(&incoming.header);
                        let msg_type = header.check()?;
                        let payload = vec![0; header.len as usize];
                        incoming.body = Some((header, msg_type, payload, 0));
                    }
                }
                Some((header, msg_type, payload, filled)) => {
                    if *filled < payload.len() {
                        let read = transport.receive(&mut payload[*filled..])?;
                        if read == 0 {
                            return Ok(None);
                        }
                        *consumed = true;
                        *filled += read;
                    }
                    if *filled == payload.len() {
                        let message = Message {
                            header: *header,
                            msg_type: *msg_type,
                            payload: core::mem::take(payload),
                        };
                        incoming.body = None;
                        return Ok(Some(message));
                    }
                }
            }
        }
    }
}

/// Operations inside a transaction: every request carries its id.
pub struct Transaction<'a, T: Stream> {
    client: &'a mut Client<T>,
    id: TransactionId,
}

impl<T: Stream> Transaction<'_, T> {
    /// The transaction id.
    pub fn id(&self) -> TransactionId {
        self.id
    }

    /// [`Client::read`] inside the transaction.
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        self.client.read_in(self.id.0, path)
    }

    /// [`Client::read_string`] inside the transaction.
    pub fn read_string(&mut self, path: &str) -> Result<String, Error> {
        self.client.read_string_in(self.id.0, path)
    }

    /// [`Client::write`] inside the transaction.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        self.client.write_in(self.id.0, path, value)
    }

    /// [`Client::mkdir`] inside the transaction.
    pub fn mkdir(&mut self, path: &str) -> Result<(), Error> {
        self.client.mkdir_in(self.id.0, path)
    }

    /// [`Client::rm`] inside the transaction.
    pub fn rm(&mut self, path: &str) -> Result<(), Error> {
        self.client.rm_in(self.id.0, path)
    }

    /// [`Client::directory`] inside the transaction.
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, Error> {
        self.client.directory_in(self.id.0, path)
    }

    /// [`Client::set_perms`] inside the transaction.
    pub fn set_perms(&mut self, path: &str, permissions: &[Permission]) -> Result<(), Error> {
        self.client.set_perms_in(self.id.0, path, permissions)
    }

    /// [`Client::batch`] inside the transaction.
    pub fn batch(&mut self, ops: &[BatchOp<'_>]) -> Vec<Result<BatchReply, Error>> {
        self.client.batch_in(self.id.0, ops)
    }
}
