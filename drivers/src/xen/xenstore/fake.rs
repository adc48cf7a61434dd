//! A fake xenstored for host tests: it plays the daemon's side of the ring on
//! an in-memory page and implements [`Transport`] with a fake clock.
//!
//! It keeps a small tree (nodes with values and children, relative paths under
//! `/local/domain/<domid>`), answers READ, WRITE, MKDIR, RM, DIRECTORY, WATCH,
//! UNWATCH, TRANSACTION_START/END and GET_DOMAIN_PATH, fires a watch once when
//! it is set and on every change under its path, and runs only when the client
//! waits: each [`Transport::wait`] is one step (take in requests, answer them,
//! move pending bytes into the response ring), after which the clock moves on
//! by [`FakeXenstored::step_ns`], or straight to the deadline (or the next timed
//! action) when the step did nothing. Faults are scripted: see [`Faults`],
//! [`Corruption`], [`FakeXenstored::fail_next`] and
//! [`FakeXenstored::send_raw`].
//!
//! It also plays a domain whose store comes up late ([`super::late`]):
//! [`FakeXenstored::start_late`] makes the page (and, in the older shape, the
//! `HVM_PARAM_STORE_PFN` it answers) say the store is not up, nothing is served
//! until [`FakeXenstored::introduce_at`]'s time, and then, as xenstored does,
//! the ring indexes are reset, the page is marked connected and the domain is
//! notified. It implements [`late::Source`] for that wait.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::client::Transport;
use super::late::{self, STORE_PFN_LATE};
use super::ring::{
    XenstoreInterface, XENSTORE_CONNECTED, XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX,
    XENSTORE_RECONNECT, XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_ERROR,
};
use super::wire::{Header, MessageType, HEADER_SIZE, XENSTORE_PAYLOAD_MAX};

/// Fault switches, all off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Takes requests in but never answers.
    pub silent: bool,
    /// Never takes requests out of the ring.
    pub stalled: bool,
    /// Sends the watch events a request causes (including the first event of
    /// a new watch) before its reply rather than after.
    pub events_before_reply: bool,
    /// Answers the next this many committing TRANSACTION_ENDs with EAGAIN.
    pub eagain_commits: u32,
    /// Moves at most this many bytes into the response ring per step.
    pub response_chunk: Option<usize>,
    /// Holds each reply back this long (watch events queue behind it).
    pub reply_delay_ns: u64,
}

/// A corruption of the next reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// Replaces the header's `len` (the payload is sent unchanged).
    Length(u32),
    /// Replaces the header's raw type.
    Type(u32),
    /// Replaces the `req_id`.
    RequestId(u32),
    /// Replaces the type with another valid one.
    ReplyType(MessageType),
    /// Replaces the payload (and `len`).
    Payload(Vec<u8>),
    /// Instead of replying, moves the response producer index past the ring.
    ProducerPastRing,
}

/// Something the daemon does when the clock reaches a time.
enum Timed {
    Set(String, Vec<u8>),
    ServerError(u32),
    Introduce,
    NotifyDomain,
}

/// The frame number the fake's store page answers to (`GUEST_MAGIC_BASE` + 1 page on Arm).
pub const FAKE_STORE_PFN: u64 = 0x39001;

/// Which late-initialisation shape the fake plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateShape {
    /// Xen 4.21: the page exists from the start, `connection` = `XENSTORE_RECONNECT`.
    PageFromXen,
    /// Xen up to 4.20: `HVM_PARAM_STORE_PFN` reads `~0` until the domain is introduced.
    PageFromToolstack,
}

struct FakeWatch {
    path: String,
    token: String,
}

struct FakeTransaction {
    nodes: BTreeMap<String, Vec<u8>>,
    generation: u64,
    changed: Vec<(String, bool)>,
}

/// Events to send: `(path, token)`.
type Events = Vec<(String, String)>;

/// The fake daemon. See the module documentation.
pub struct FakeXenstored {
    page: Box<XenstoreInterface>,
    now_ns: u64,
    /// How far the clock moves after a step that did something.
    pub step_ns: u64,
    /// Fault switches.
    pub faults: Faults,
    domid: u16,
    nodes: BTreeMap<String, Vec<u8>>,
    generation: u64,
    watches: Vec<FakeWatch>,
    transactions: BTreeMap<u32, FakeTransaction>,
    next_transaction: u32,
    request_bytes: Vec<u8>,
    pending: VecDeque<(u64, Vec<u8>)>,
    outgoing: VecDeque<u8>,
    scheduled: Vec<(u64, Timed)>,
    errors: VecDeque<(MessageType, String)>,
    corruption: Option<Corruption>,
    requests: Vec<(Header, Vec<u8>)>,
    notifications: u64,
    waits: u64,
    /// The late shape while the domain is not introduced yet.
    late: Option<LateShape>,
    /// Events sent to the domain and not taken yet.
    domain_events: u32,
    /// `connection` reads of the page by [`late::Source`].
    connection_reads: u32,
}

fn is_child(child: &str, parent: &str) -> bool {
    parent == "/"
        || child == parent
        || (child.starts_with(parent) && child.as_bytes().get(parent.len()) == Some(&b'/'))
}

fn valid_path(path: &str) -> bool {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"-/_@".contains(&byte);
    !path.is_empty()
        && path.bytes().all(allowed)
        && !path.contains("//")
        && (path == "/" || !path.ends_with('/'))
}

fn ensure_parents(nodes: &mut BTreeMap<String, Vec<u8>>, path: &str) {
    for (index, _) in path.match_indices('/') {
        let parent = if index == 0 { "/" } else { &path[..index] };
        nodes.entry(parent.to_string()).or_default();
    }
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(index) => &path[..index],
    }
}

/// The single NUL-terminated argument of a payload.
fn one_arg(payload: &[u8]) -> Result<&str, String> {
    let body = payload.strip_suffix(&[0]).ok_or("EINVAL")?;
    if body.contains(&0) {
        return Err("EINVAL".to_string());
    }
    core::str::from_utf8(body).map_err(|_| "EINVAL".to_string())
}

/// The two NUL-terminated arguments of a payload.
fn two_args(payload: &[u8]) -> Result<(&str, &str), String> {
    let body = payload.strip_suffix(&[0]).ok_or("EINVAL")?;
    let split = body.iter().position(|&byte| byte == 0).ok_or("EINVAL")?;
    let second = &body[split + 1..];
    if second.contains(&0) {
        return Err("EINVAL".to_string());
    }
    let text = |bytes| core::str::from_utf8(bytes).map_err(|_| "EINVAL".to_string());
    Ok((text(&body[..split])?, text(second)?))
}

impl Default for FakeXenstored {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeXenstored {
    /// A daemon serving domain 1, with `/local/domain/1` in the tree.
    pub fn new() -> Self {
        Self::with_domid(1)
    }

    /// A daemon serving domain `domid`.
    pub fn with_domid(domid: u16) -> Self {
        let mut fake = FakeXenstored {
            page: Box::new(XenstoreInterface::new()),
            now_ns: 0,
            step_ns: 10_000,
            faults: Faults::default(),
            domid,
            nodes: BTreeMap::new(),
            generation: 0,
            watches: Vec::new(),
            transactions: BTreeMap::new(),
            next_transaction: 1,
            request_bytes: Vec::new(),
            pending: VecDeque::new(),
            outgoing: VecDeque::new(),
            scheduled: Vec::new(),
            errors: VecDeque::new(),
            corruption: None,
            requests: Vec::new(),
            notifications: 0,
            waits: 0,
            late: None,
            domain_events: 0,
            connection_reads: 0,
        };
        fake.nodes.insert("/".to_string(), Vec::new());
        let home = fake.home();
        ensure_parents(&mut fake.nodes, &home);
        fake.nodes.insert(home, Vec::new());
        fake
    }

    /// `/local/domain/<domid>`.
    pub fn home(&self) -> String {
        format!("/local/domain/{}", self.domid)
    }

    /// The ring page.
    pub fn page(&self) -> &XenstoreInterface {
        &self.page
    }

    /// An absolute path for `path` (relative ones live under [`Self::home`]).
    pub fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') || path.starts_with('@') {
            path.to_string()
        } else {
            format!("{}/{path}", self.home())
        }
    }

    /// Writes a node as another domain would, firing watches.
    pub fn set(&mut self, path: &str, value: &[u8]) {
        let path = self.absolute(path);
        ensure_parents(&mut self.nodes, &path);
        self.nodes.insert(path.clone(), value.to_vec());
        self.generation += 1;
        let mut events = Events::new();
        self.fire(&path, false, &mut events);
        self.send_events(events);
    }

    /// Removes a node and its children as another domain would, firing
    /// watches.
    pub fn remove(&mut self, path: &str) {
        let path = self.absolute(path);
        self.nodes.retain(|node, _| !is_child(node, &path));
        self.generation += 1;
        let mut events = Events::new();
        self.fire(&path, true, &mut events);
        self.send_events(events);
    }

    /// Schedules [`Self::set`] for when the clock reaches `at_ns`.
    pub fn set_at(&mut self, at_ns: u64, path: &str, value: &[u8]) {
        self.scheduled
            .push((at_ns, Timed::Set(path.to_string(), value.to_vec())));
    }

    /// Schedules [`Self::set_server_error`] for when the clock reaches `at_ns`.
    pub fn set_server_error_at(&mut self, at_ns: u64, code: u32) {
        self.scheduled.push((at_ns, Timed::ServerError(code)));
    }

    /// A node's value.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.nodes.get(&self.absolute(path)).map(Vec::as_slice)
    }

    /// Answers the next request of type `request` with ERROR `error`.
    pub fn fail_next(&mut self, request: MessageType, error: &str) {
        self.errors.push_back((request, error.to_string()));
    }

    /// Corrupts the next reply.
    pub fn corrupt_next_reply(&mut self, corruption: Corruption) {
        self.corruption = Some(corruption);
    }

    /// Queues a watch event, registered or not.
    pub fn send_event(&mut self, path: &str, token: &str) {
        let payload = format!("{path}\0{token}\0").into_bytes();
        self.queue_message(MessageType::WatchEvent as u32, 0, 0, &payload, 0);
    }

    /// Queues raw bytes for the response stream.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.pending.push_back((self.now_ns, bytes.to_vec()));
    }

    /// Sets the page's error field and advertises it, as xenstored does when
    /// it gives a connection up.
    pub fn set_server_error(&mut self, code: u32) {
        self.page
            .server_features
            .fetch_or(XENSTORE_SERVER_FEATURE_ERROR, Ordering::Release);
        self.page.error.store(code, Ordering::Release);
    }

    /// Plays a domain whose store is not up yet, in `shape`: the page says
    /// `XENSTORE_RECONNECT` and nothing is served until the domain is
    /// introduced ([`Self::introduce_at`]).
    pub fn start_late(&mut self, shape: LateShape) {
        self.late = Some(shape);
        self.page
            .connection
            .store(XENSTORE_RECONNECT, Ordering::Release);
    }

    /// Schedules the toolstack's introduction of the domain for `at_ns`: the
    /// ring indexes are reset (what the domain wrote before is lost), the page
    /// says `XENSTORE_CONNECTED`, the parameter names the page and the domain
    /// gets an event.
    pub fn introduce_at(&mut self, at_ns: u64) {
        self.scheduled.push((at_ns, Timed::Introduce));
    }

    /// Schedules an event to the domain on the store's channel at `at_ns`
    /// that changes nothing else.
    pub fn notify_domain_at(&mut self, at_ns: u64) {
        self.scheduled.push((at_ns, Timed::NotifyDomain));
    }

    /// Whether the domain was introduced (always, unless [`Self::start_late`]).
    pub fn introduced(&self) -> bool {
        self.late.is_none()
    }

    /// How many times [`late::Source::connection`] read the page.
    pub fn connection_reads(&self) -> u32 {
        self.connection_reads
    }

    fn introduce(&mut self) {
        if self.late.take().is_none() {
            return;
        }
        self.set_indexes(0);
        self.request_bytes.clear();
        self.outgoing.clear();
        self.page
            .connection
            .store(XENSTORE_CONNECTED, Ordering::Release);
        self.domain_events += 1;
    }

    /// Sets both indexes of both rings to `index` (rings start anywhere).
    pub fn set_indexes(&mut self, index: u32) {
        for field in [
            &self.page.req_cons,
            &self.page.req_prod,
            &self.page.rsp_cons,
            &self.page.rsp_prod,
        ] {
            field.store(index, Ordering::Release);
        }
    }

    /// Every request taken in: header and payload.
    pub fn requests(&self) -> &[(Header, Vec<u8>)] {
        &self.requests
    }

    /// Watches registered, as `(path, token)`.
    pub fn watches(&self) -> Vec<(String, String)> {
        self.watches
            .iter()
            .map(|watch| (watch.path.clone(), watch.token.clone()))
            .collect()
    }

    /// Transactions still open.
    pub fn open_transactions(&self) -> usize {
        self.transactions.len()
    }

    /// How many times the client notified.
    pub fn notifications(&self) -> u64 {
        self.notifications
    }

    /// How many times the client waited.
    pub fn waits(&self) -> u64 {
        self.waits
    }

    /// One step of the daemon: timed writes that are due, requests in the
    /// ring, replies that are due into the ring. Returns whether anything
    /// happened.
    pub fn step(&mut self) -> bool {
        let mut progress = false;
        let now = self.now_ns;
        let (mut due, later): (Vec<_>, Vec<_>) = core::mem::take(&mut self.scheduled)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.scheduled = later;
        due.sort_by_key(|(at, _)| *at);
        for (_, action) in due {
            match action {
                Timed::Set(path, value) => self.set(&path, &value),
                Timed::ServerError(code) => self.set_server_error(code),
                Timed::Introduce => self.introduce(),
                Timed::NotifyDomain => self.domain_events += 1,
            }
            progress = true;
        }
        if self.late.is_some() {
            // xenstored does not know the domain yet: its ring is not read.
            return progress;
        }
        if !self.faults.stalled {
            progress |= self.take_requests();
        }
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, bytes)) = self.pending.pop_front() {
                self.outgoing.extend(bytes);
            }
        }
        if !self.outgoing.is_empty() {
            let limit = self.faults.response_chunk.unwrap_or(usize::MAX);
            let bytes = self.outgoing.make_contiguous();
            let count = limit.min(bytes.len());
            if let Ok(written) = self.page.write_response(&bytes[..count]) {
                self.outgoing.drain(..written);
                progress |= written > 0;
            }
        }
        progress
    }

    fn take_requests(&mut self) -> bool {
        let mut buffer = [0u8; XENSTORE_RING_SIZE];
        let mut progress = false;
        loop {
            match self.page.read_request(&mut buffer) {
                Ok(0) => break,
                Ok(count) => {
                    self.request_bytes.extend_from_slice(&buffer[..count]);
                    progress = true;
                }
                Err(_) => {
                    self.set_server_error(XENSTORE_ERROR_RINGIDX);
                    return progress;
                }
            }
        }
        while self.request_bytes.len() >= HEADER_SIZE {
            let mut header = [0u8; HEADER_SIZE];
            header.copy_from_slice(&self.request_bytes[..HEADER_SIZE]);
            let header = Header::from_bytes(&header);
            let len = header.len as usize;
            if len > XENSTORE_PAYLOAD_MAX {
                // xenstored drops such a client.
                self.set_server_error(XENSTORE_ERROR_PROTO);
                self.request_bytes.clear();
                break;
            }
            if self.request_bytes.len() < HEADER_SIZE + len {
                break;
            }
            let payload = self.request_bytes[HEADER_SIZE..HEADER_SIZE + len].to_vec();
            self.request_bytes.drain(..HEADER_SIZE + len);
            self.handle(header, payload);
        }
        progress
    }

    fn handle(&mut self, header: Header, payload: Vec<u8>) {
        self.requests.push((header, payload.clone()));
        if self.faults.silent {
            return;
        }
        let mut events = Events::new();
        let result = match MessageType::try_from(header.msg_type) {
            Err(_) => Err("EINVAL".to_string()),
            Ok(msg_type) => match self.errors.iter().position(|(t, _)| *t == msg_type) {
                Some(index) => Err(self
                    .errors
                    .remove(index)
                    .map_or_else(String::new, |(_, error)| error)),
                None => self.execute(msg_type, header.tx_id, &payload, &mut events),
            },
        };
        if self.faults.events_before_reply {
            self.send_events(core::mem::take(&mut events));
        }
        self.reply(header, result);
        self.send_events(events);
    }

    fn reply(&mut self, request: Header, result: Result<Vec<u8>, String>) {
        let (mut msg_type, mut payload) = match result {
            Ok(payload) => (request.msg_type, payload),
            Err(error) => (MessageType::Error as u32, format!("{error}\0").into_bytes()),
        };
        let mut req_id = request.req_id;
        let mut len = None;
        match self.corruption.take() {
            None => {}
            Some(Corruption::Length(value)) => len = Some(value),
            Some(Corruption::Type(value)) => msg_type = value,
            Some(Corruption::RequestId(value)) => req_id = value,
            Some(Corruption::ReplyType(value)) => msg_type = value as u32,
            Some(Corruption::Payload(value)) => payload = value,
            Some(Corruption::ProducerPastRing) => {
                let consumer = self.page.rsp_cons.load(Ordering::Acquire);
                let past = consumer.wrapping_add(XENSTORE_RING_SIZE as u32 + 1);
                self.page.rsp_prod.store(past, Ordering::Release);
                return;
            }
        }
        let header = Header {
            msg_type,
            req_id,
            tx_id: request.tx_id,
            len: len.unwrap_or(payload.len() as u32),
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        let at = self.now_ns.saturating_add(self.faults.reply_delay_ns);
        self.pending.push_back((at, bytes));
    }

    fn queue_message(&mut self, msg_type: u32, req_id: u32, tx_id: u32, payload: &[u8], at: u64) {
        let header = Header {
            msg_type,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        self.pending.push_back((self.now_ns.max(at), bytes));
    }

    fn send_events(&mut self, events: Events) {
        for (path, token) in events {
            self.send_event(&path, &token);
        }
    }

    /// Adds the events that a change of `changed` (absolute) causes.
    fn fire(&self, changed: &str, removal: bool, events: &mut Events) {
        let home = format!("{}/", self.home());
        for watch in &self.watches {
            let watched = self.absolute(&watch.path);
            let path = if is_child(changed, &watched) {
                if watch.path.starts_with('/') {
                    changed.to_string()
                } else {
                    changed.strip_prefix(&home).unwrap_or(changed).to_string()
                }
            } else if removal && is_child(&watched, changed) {
                watch.path.clone()
            } else {
                continue;
            };
            events.push((path, watch.token.clone()));
        }
    }

    /// A path argument resolved and checked.
    fn path_arg(&self, payload: &[u8]) -> Result<String, String> {
        let path = one_arg(payload)?;
        self.checked(path)
    }

    fn checked(&self, path: &str) -> Result<String, String> {
        if valid_path(path) {
            Ok(self.absolute(path))
        } else {
            Err("EINVAL".to_string())
        }
    }

    /// The tree a request works on: the transaction's copy or the store.
    fn tree(&mut self, tx_id: u32) -> Result<&mut BTreeMap<String, Vec<u8>>, String> {
        if tx_id == 0 {
            return Ok(&mut self.nodes);
        }
        match self.transactions.get_mut(&tx_id) {
            Some(transaction) => Ok(&mut transaction.nodes),
            None => Err("ENOENT".to_string()),
        }
    }

    /// Records a change: watches fire now, or at commit for a transaction.
    fn changed(&mut self, tx_id: u32, path: String, removal: bool, events: &mut Events) {
        match self.transactions.get_mut(&tx_id) {
            Some(transaction) => transaction.changed.push((path, removal)),
            None => {
                self.generation += 1;
                self.fire(&path, removal, events);
            }
        }
    }

    fn execute(
        &mut self,
        msg_type: MessageType,
        tx_id: u32,
        payload: &[u8],
        events: &mut Events,
    ) -> Result<Vec<u8>, String> {
        const OK: &[u8] = b"OK\0";
        match msg_type {
            MessageType::Read => {
                let path = self.path_arg(payload)?;
                self.tree(tx_id)?
                    .get(&path)
                    .cloned()
                    .ok_or("ENOENT".to_string())
            }
            MessageType::Write => {
                let split = payload.iter().position(|&byte| byte == 0).ok_or("EINVAL")?;
                let path = core::str::from_utf8(&payload[..split]).map_err(|_| "EINVAL")?;
                let path = self.checked(path)?;
                let value = payload[split + 1..].to_vec();
                let tree = self.tree(tx_id)?;
                ensure_parents(tree, &path);
                tree.insert(path.clone(), value);
                self.changed(tx_id, path, false, events);
                Ok(OK.to_vec())
            }
            MessageType::Mkdir => {
                let path = self.path_arg(payload)?;
                let tree = self.tree(tx_id)?;
                ensure_parents(tree, &path);
                if tree.contains_key(&path) {
                    return Ok(OK.to_vec());
                }
                tree.insert(path.clone(), Vec::new());
                self.changed(tx_id, path, false, events);
                Ok(OK.to_vec())
            }
            MessageType::Rm => {
                let path = self.path_arg(payload)?;
                if path == "/" {
                    return Err("EINVAL".to_string());
                }
                let tree = self.tree(tx_id)?;
                if !tree.contains_key(&path) {
                    return if tree.contains_key(parent_of(&path)) {
                        Ok(OK.to_vec())
                    } else {
                        Err("ENOENT".to_string())
                    };
                }
                tree.retain(|node, _| !is_child(node, &path));
                self.changed(tx_id, path, true, events);
                Ok(OK.to_vec())
            }
            MessageType::SetPerms => {
                // The permissions are recorded with the request; the node
                // must exist.
                let split = payload.iter().position(|&byte| byte == 0).ok_or("EINVAL")?;
                let path = core::str::from_utf8(&payload[..split]).map_err(|_| "EINVAL")?;
                let path = self.checked(path)?;
                if !self.tree(tx_id)?.contains_key(&path) {
                    return Err("ENOENT".to_string());
                }
                Ok(OK.to_vec())
            }
            MessageType::Directory => {
                let path = self.path_arg(payload)?;
                let tree = self.tree(tx_id)?;
                if !tree.contains_key(&path) {
                    return Err("ENOENT".to_string());
                }
                let prefix = if path == "/" {
                    path
                } else {
                    format!("{path}/")
                };
                let mut reply = Vec::new();
                for node in tree.keys().filter(|node| node.starts_with(&prefix)) {
                    let leaf = &node[prefix.len()..];
                    if !leaf.is_empty() && !leaf.contains('/') {
                        reply.extend_from_slice(leaf.as_bytes());
                        reply.push(0);
                    }
                }
                Ok(reply)
            }
            MessageType::Watch => {
                let (path, token) = two_args(payload)?;
                if !path.starts_with('@') {
                    self.checked(path)?;
                }
                if self
                    .watches
                    .iter()
                    .any(|watch| watch.path == path && watch.token == token)
                {
                    return Err("EEXIST".to_string());
                }
                self.watches.push(FakeWatch {
                    path: path.to_string(),
                    token: token.to_string(),
                });
                // A new watch fires once straight away.
                events.push((path.to_string(), token.to_string()));
                Ok(OK.to_vec())
            }
            MessageType::Unwatch => {
                let (path, token) = two_args(payload)?;
                let index = self
                    .watches
                    .iter()
                    .position(|watch| watch.path == path && watch.token == token)
                    .ok_or("ENOENT")?;
                self.watches.remove(index);
                Ok(OK.to_vec())
            }
            MessageType::TransactionStart => {
                if payload != b"\0" || tx_id != 0 {
                    return Err("EINVAL".to_string());
                }
                let id = self.next_transaction;
                self.next_transaction += 1;
                self.transactions.insert(
                    id,
                    FakeTransaction {
                        nodes: self.nodes.clone(),
                        generation: self.generation,
                        changed: Vec::new(),
                    },
                );
                Ok(format!("{id}\0").into_bytes())
            }
            MessageType::TransactionEnd => {
                let commit = match payload {
                    b"T\0" => true,
                    b"F\0" => false,
                    _ => return Err("EINVAL".to_string()),
                };
                let transaction = self.transactions.remove(&tx_id).ok_or("ENOENT")?;
                if !commit {
                    return Ok(OK.to_vec());
                }
                if self.faults.eagain_commits > 0 {
                    self.faults.eagain_commits -= 1;
                    return Err("EAGAIN".to_string());
                }
                if transaction.generation != self.generation {
                    return Err("EAGAIN".to_string());
                }
                self.nodes = transaction.nodes;
                for (path, removal) in transaction.changed {
                    self.changed(0, path, removal, events);
                }
                Ok(OK.to_vec())
            }
            MessageType::GetDomainPath => {
                let domid: u16 = one_arg(payload)?.parse().map_err(|_| "EINVAL")?;
                Ok(format!("/local/domain/{domid}\0").into_bytes())
            }
            _ => Err("ENOSYS".to_string()),
        }
    }
}

impl Transport for FakeXenstored {
    fn interface(&self) -> &XenstoreInterface {
        &self.page
    }

    fn notify(&mut self) {
        self.notifications += 1;
    }

    fn wait(&mut self, deadline_ns: u64) {
        self.waits += 1;
        if self.step() {
            let next = self.now_ns.saturating_add(self.step_ns).min(deadline_ns);
            self.now_ns = self.now_ns.max(next);
            return;
        }
        // Idle: sleep until the next timed action or the deadline.
        let next_action = self
            .scheduled
            .iter()
            .map(|(at, _)| *at)
            .chain(self.pending.front().map(|(at, _)| *at))
            .min();
        let wake = next_action.map_or(deadline_ns, |at| at.min(deadline_ns));
        self.now_ns = self.now_ns.max(wake);
        self.step();
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }
}

impl late::Source for FakeXenstored {
    type Error = String;

    fn store_pfn(&mut self) -> Result<u64, String> {
        Ok(match self.late {
            Some(LateShape::PageFromToolstack) => STORE_PFN_LATE,
            _ => FAKE_STORE_PFN,
        })
    }

    fn connection(&mut self, pfn: u64) -> Result<u32, String> {
        if pfn != FAKE_STORE_PFN {
            return Err(format!("no store page at pfn {pfn:#x}"));
        }
        self.connection_reads += 1;
        Ok(self.page.connection())
    }

    fn wait_event(&mut self, deadline_ns: u64) -> bool {
        loop {
            if self.domain_events > 0 {
                self.domain_events -= 1;
                return true;
            }
            if self.now_ns >= deadline_ns {
                return false;
            }
            Transport::wait(self, deadline_ns);
        }
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }
}
