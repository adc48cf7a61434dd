//! A fake xenstored for host tests of code that talks to xenstore through [`Xenbus`]: it serves
//! one client over a socket pair, keeps the nodes and their permissions, and records every
//! request as it arrived, so that tests check the bytes sent and what they left in the store.
//! It keeps the rules of docs/misc/xenstore.txt that such code relies on:
//!
//! - WRITE creates the missing parents with empty values; a new node gets its parent's
//!   permissions (xenstored's `construct_node`, for a Dom0 writer).
//! - READ, DIRECTORY and SET_PERMS of a missing node are ENOENT; RM of a missing node is OK
//!   unless its parent is missing too (ENOENT), and RM removes everything below the node.
//! - A transaction works on a copy: TRANSACTION_END `F` leaves the store as it was before
//!   TRANSACTION_START, `T` keeps what it did (there is one client, so nothing conflicts).
//! - WATCH and UNWATCH are answered OK and fire nothing.

use super::Xenbus;
use drivers::xen::xenstore::wire::{Fault, Header, MessageType, HEADER_SIZE};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

/// Splits the byte stream the client sends into messages.
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
        let Some(raw) = self.buffer.first_chunk::<HEADER_SIZE>() else {
            return Ok(None);
        };
        let header = Header::from_bytes(raw);
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

/// A node: its value and its permissions as SET_PERMS strings (`n0`, `r3`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The value.
    pub value: Vec<u8>,
    /// The permissions, owner first.
    pub perms: Vec<String>,
}

/// A request as the fake received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its type.
    pub msg_type: MessageType,
    /// Its transaction (0: none).
    pub tx_id: u32,
    /// Its payload, byte for byte.
    pub payload: Vec<u8>,
}

impl Seen {
    /// `TYPE tx=N payload`, NUL bytes shown as `|`.
    pub fn describe(&self) -> String {
        format!(
            "{} tx={} {}",
            self.msg_type,
            self.tx_id,
            String::from_utf8_lossy(&self.payload).replace('\0', "|")
        )
    }
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Node>,
    /// The store as it was when the open transaction started.
    before: Option<BTreeMap<String, Node>>,
    next_tx: u32,
    requests: Vec<Seen>,
}

/// The fake xenstored: see the module documentation.
pub struct FakeXenstored {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn parent(path: &str) -> Option<&str> {
    match path.rsplit_once('/') {
        Some(("", _)) if path != "/" => Some("/"),
        Some((parent, _)) if !parent.is_empty() => Some(parent),
        _ => None,
    }
}

/// The strings of a payload of NUL-terminated strings.
fn strings(payload: &[u8]) -> Vec<String> {
    payload
        .strip_suffix(&[0])
        .unwrap_or(payload)
        .split(|&byte| byte == 0)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

impl State {
    /// Creates `path` and its missing parents, each with its parent's permissions.
    fn create(&mut self, path: &str) {
        if self.nodes.contains_key(path) {
            return;
        }
        let perms = match parent(path) {
            Some(up) => {
                self.create(up);
                self.nodes
                    .get(up)
                    .map_or_else(|| vec!["n0".to_string()], |node| node.perms.clone())
            }
            None => vec!["n0".to_string()],
        };
        self.nodes.insert(
            path.to_string(),
            Node {
                value: Vec::new(),
                perms,
            },
        );
    }

    fn write(&mut self, path: &str, value: &[u8]) {
        self.create(path);
        if let Some(node) = self.nodes.get_mut(path) {
            node.value = value.to_vec();
        }
    }

    fn children(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| &key[prefix.len()..])
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(String::from)
            .collect()
    }

    fn remove(&mut self, path: &str) {
        let prefix = format!("{path}/");
        self.nodes
            .retain(|key, _| key != path && !key.starts_with(&prefix));
    }

    /// The reply to one request: its type and payload.
    fn answer(&mut self, message: &Message) -> (MessageType, Vec<u8>) {
        const ENOENT: &[u8] = b"ENOENT\0";
        const OK: &[u8] = b"OK\0";
        let args = strings(&message.payload);
        let path = args.first().cloned().unwrap_or_default();
        let error = |name: &[u8]| (MessageType::Error, name.to_vec());
        match message.msg_type {
            MessageType::Read => match self.nodes.get(&path) {
                Some(node) => (MessageType::Read, node.value.clone()),
                None => error(ENOENT),
            },
            MessageType::Write => {
                let split = message.payload.iter().position(|&byte| byte == 0);
                let Some(split) = split else {
                    return error(b"EINVAL\0");
                };
                let path = String::from_utf8_lossy(&message.payload[..split]).into_owned();
                self.write(&path, &message.payload[split + 1..]);
                (MessageType::Write, OK.to_vec())
            }
            MessageType::Directory => {
                if !self.nodes.contains_key(&path) {
                    return error(ENOENT);
                }
                let mut payload = Vec::new();
                for child in self.children(&path) {
                    payload.extend_from_slice(child.as_bytes());
                    payload.push(0);
                }
                (MessageType::Directory, payload)
            }
            MessageType::Rm => {
                if !self.nodes.contains_key(&path) {
                    let parent_exists = parent(&path).is_some_and(|up| self.nodes.contains_key(up));
                    if !parent_exists {
                        return error(ENOENT);
                    }
                }
                self.remove(&path);
                (MessageType::Rm, OK.to_vec())
            }
            MessageType::SetPerms => match self.nodes.get_mut(&path) {
                Some(node) if args.len() > 1 => {
                    node.perms = args[1..].to_vec();
                    (MessageType::SetPerms, OK.to_vec())
                }
                Some(_) => error(b"EINVAL\0"),
                None => error(ENOENT),
            },
            MessageType::TransactionStart => {
                self.next_tx += 1;
                self.before = Some(self.nodes.clone());
                let id = format!("{}\0", self.next_tx);
                (MessageType::TransactionStart, id.into_bytes())
            }
            MessageType::TransactionEnd => {
                let before = self.before.take();
                if message.payload == b"F\0" {
                    if let Some(before) = before {
                        self.nodes = before;
                    }
                }
                (MessageType::TransactionEnd, OK.to_vec())
            }
            MessageType::Watch | MessageType::Unwatch => (message.msg_type, OK.to_vec()),
            _ => error(b"EINVAL\0"),
        }
    }
}

impl FakeXenstored {
    /// Starts the fake with `/local/domain/0` (owned by Dom0, no access for others) and a
    /// client connected to it. The fake's thread ends when the client is dropped.
    pub fn start() -> (Self, Xenbus) {
        let state = Arc::new(Mutex::new(State::default()));
        lock(&state).create("/local/domain/0");
        let (client, mut server) = UnixStream::pair().expect("socket pair");
        let served = Arc::clone(&state);
        thread::spawn(move || {
            let mut decoder = Decoder::default();
            let mut chunk = [0u8; 8192];
            loop {
                let count = match server.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(count) => count,
                };
                decoder.push(&chunk[..count]);
                while let Ok(Some(message)) = decoder.next_message() {
                    let (msg_type, payload) = {
                        let mut state = lock(&served);
                        state.requests.push(Seen {
                            msg_type: message.msg_type,
                            tx_id: message.header.tx_id,
                            payload: message.payload.clone(),
                        });
                        state.answer(&message)
                    };
                    let mut reply = Header {
                        msg_type: msg_type as u32,
                        req_id: message.header.req_id,
                        tx_id: message.header.tx_id,
                        len: payload.len() as u32,
                    }
                    .to_bytes()
                    .to_vec();
                    reply.extend_from_slice(&payload);
                    if server.write_all(&reply).is_err() {
                        return;
                    }
                }
            }
        });
        (Self { state }, Xenbus::from_fd(OwnedFd::from(client)))
    }

    /// Writes a node as the toolstack would (its parents created, permissions inherited).
    pub fn write(&self, path: &str, value: &str) {
        lock(&self.state).write(path, value.as_bytes());
    }

    /// Removes a node and everything below it, as the toolstack would.
    pub fn remove(&self, path: &str) {
        lock(&self.state).remove(path);
    }

    /// A node, if it exists.
    pub fn node(&self, path: &str) -> Option<Node> {
        lock(&self.state).nodes.get(path).cloned()
    }

    /// Every path at or below `path`, in order.
    pub fn paths_under(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        lock(&self.state)
            .nodes
            .keys()
            .filter(|key| *key == path || key.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// The requests received since the last call.
    pub fn take_requests(&self) -> Vec<Seen> {
        std::mem::take(&mut lock(&self.state).requests)
    }
}
