//! The xenstore wire protocol (xen/include/public/io/xs_wire.h and
//! docs/misc/xenstore.txt): the message header, the message types, the error
//! names of the `xsd_errors` table, request encoders and reply decoders.
//!
//! Every message is a 16-byte little-endian header `{ u32 type, req_id, tx_id,
//! len }` followed by `len` bytes of payload, at most [`XENSTORE_PAYLOAD_MAX`]
//! in either direction. Payloads are NUL-terminated strings, except that a
//! WRITE value and a READ reply are raw bytes without a terminator.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::ring::IndexError;

/// Size of `struct xsd_sockmsg`.
pub const HEADER_SIZE: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`: the largest payload in either direction.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// `enum xsd_sockmsg_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MessageType {
    /// `XS_CONTROL` (formerly `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: sent by xenstored only, with `req_id` 0.
    WatchEvent = 15,
    /// `XS_ERROR`: sent by xenstored only.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`. (20, `XS_RESTRICT`, was removed.)
    SetTarget = 19,
    /// `XS_RESET_WATCHES`.
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart = 22,
    /// `XS_GET_FEATURE`.
    GetFeature = 23,
    /// `XS_SET_FEATURE`.
    SetFeature = 24,
    /// `XS_GET_QUOTA`.
    GetQuota = 25,
    /// `XS_SET_QUOTA`.
    SetQuota = 26,
    /// `XS_INVALID`: guaranteed never to be a valid type.
    Invalid = 0xffff,
}

impl MessageType {
    /// The name without the `XS_` prefix, as in docs/misc/xenstore.txt.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Control => "CONTROL",
            MessageType::Directory => "DIRECTORY",
            MessageType::Read => "READ",
            MessageType::GetPerms => "GET_PERMS",
            MessageType::Watch => "WATCH",
            MessageType::Unwatch => "UNWATCH",
            MessageType::TransactionStart => "TRANSACTION_START",
            MessageType::TransactionEnd => "TRANSACTION_END",
            MessageType::Introduce => "INTRODUCE",
            MessageType::Release => "RELEASE",
            MessageType::GetDomainPath => "GET_DOMAIN_PATH",
            MessageType::Write => "WRITE",
            MessageType::Mkdir => "MKDIR",
            MessageType::Rm => "RM",
            MessageType::SetPerms => "SET_PERMS",
            MessageType::WatchEvent => "WATCH_EVENT",
            MessageType::Error => "ERROR",
            MessageType::IsDomainIntroduced => "IS_DOMAIN_INTRODUCED",
            MessageType::Resume => "RESUME",
            MessageType::SetTarget => "SET_TARGET",
            MessageType::ResetWatches => "RESET_WATCHES",
            MessageType::DirectoryPart => "DIRECTORY_PART",
            MessageType::GetFeature => "GET_FEATURE",
            MessageType::SetFeature => "SET_FEATURE",
            MessageType::GetQuota => "GET_QUOTA",
            MessageType::SetQuota => "SET_QUOTA",
            MessageType::Invalid => "INVALID",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `type` value that xs_wire.h does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMessageType(pub u32);

impl TryFrom<u32> for MessageType {
    type Error = UnknownMessageType;

    fn try_from(raw: u32) -> Result<Self, UnknownMessageType> {
        use MessageType::*;
        Ok(match raw {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            23 => GetFeature,
            24 => SetFeature,
            25 => GetQuota,
            26 => SetQuota,
            0xffff => Invalid,
            _ => return Err(UnknownMessageType(raw)),
        })
    }
}

/// `struct xsd_sockmsg`, the header in front of every message. `msg_type` stays
/// raw so that any 16 bytes decode; [`Header::check`] validates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `type`: an `XS_*` value.
    pub msg_type: u32,
    /// `req_id`: chosen by the client, echoed in the reply; 0 in watch events.
    pub req_id: u32,
    /// `tx_id`: the transaction, or 0.
    pub tx_id: u32,
    /// `len`: payload bytes following the header.
    pub len: u32,
}

impl Header {
    /// The little-endian wire form.
    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        for (chunk, field) in
            bytes
                .chunks_exact_mut(4)
                .zip([self.msg_type, self.req_id, self.tx_id, self.len])
        {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        bytes
    }

    /// Decodes the wire form; never fails (see [`Header::check`]).
    pub fn from_bytes(bytes: &[u8; HEADER_SIZE]) -> Header {
        let field = |index: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[index * 4..index * 4 + 4]);
            u32::from_le_bytes(word)
        };
        Header {
            msg_type: field(0),
            req_id: field(1),
            tx_id: field(2),
            len: field(3),
        }
    }

    /// Checks a received header: a defined type and a payload within
    /// [`XENSTORE_PAYLOAD_MAX`]. Either failure means the stream has lost its
    /// message boundaries.
    pub fn check(&self) -> Result<MessageType, Fault> {
        let msg_type = MessageType::try_from(self.msg_type)
            .map_err(|UnknownMessageType(raw)| Fault::UnknownType { raw })?;
        if self.len as usize > XENSTORE_PAYLOAD_MAX {
            return Err(Fault::PayloadTooLong { len: self.len });
        }
        Ok(msg_type)
    }
}

/// The error names xenstored sends in ERROR replies (xs_wire.h `xsd_errors`,
/// plus `EQUOTA` from oxenstored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsdError {
    /// `EINVAL`: invalid argument (a bad path, for instance).
    Invalid,
    /// `EACCES`: permission denied.
    AccessDenied,
    /// `EEXIST`: already exists.
    Exists,
    /// `EISDIR`: is a directory.
    IsDirectory,
    /// `ENOENT`: no such node (or transaction).
    NoEntry,
    /// `ENOMEM`: out of memory.
    NoMemory,
    /// `ENOSPC`: quota exceeded (C xenstored).
    NoSpace,
    /// `EIO`: I/O error.
    Io,
    /// `ENOTEMPTY`: directory not empty.
    NotEmpty,
    /// `ENOSYS`: unsupported message type.
    NotImplemented,
    /// `EROFS`: read-only.
    ReadOnly,
    /// `EBUSY`: busy.
    Busy,
    /// `EAGAIN`: a transaction conflicted; retry it.
    Again,
    /// `EISCONN`: already connected.
    IsConnected,
    /// `E2BIG`: too big.
    TooBig,
    /// `EPERM`: operation not permitted.
    NotPermitted,
    /// `EQUOTA`: quota exceeded (oxenstored).
    Quota,
    /// A name not in the table, kept for the report.
    Other(String),
}

/// The named entries of the error table, in xs_wire.h order.
const ERROR_NAMES: [(&str, XsdError); 17] = [
    ("EINVAL", XsdError::Invalid),
    ("EACCES", XsdError::AccessDenied),
    ("EEXIST", XsdError::Exists),
    ("EISDIR", XsdError::IsDirectory),
    ("ENOENT", XsdError::NoEntry),
    ("ENOMEM", XsdError::NoMemory),
    ("ENOSPC", XsdError::NoSpace),
    ("EIO", XsdError::Io),
    ("ENOTEMPTY", XsdError::NotEmpty),
    ("ENOSYS", XsdError::NotImplemented),
    ("EROFS", XsdError::ReadOnly),
    ("EBUSY", XsdError::Busy),
    ("EAGAIN", XsdError::Again),
    ("EISCONN", XsdError::IsConnected),
    ("E2BIG", XsdError::TooBig),
    ("EPERM", XsdError::NotPermitted),
    ("EQUOTA", XsdError::Quota),
];

impl XsdError {
    /// The error for a name as sent on the wire (without the NUL).
    pub fn from_name(name: &str) -> XsdError {
        ERROR_NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, error)| error.clone())
            .unwrap_or_else(|| XsdError::Other(String::from(name)))
    }

    /// The name as sent on the wire, such as `"ENOENT"`.
    pub fn name(&self) -> &str {
        match self {
            XsdError::Other(name) => name,
            known => ERROR_NAMES
                .iter()
                .find(|(_, error)| error == known)
                .map_or("E?", |(name, _)| name),
        }
    }
}

impl fmt::Display for XsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the stream from xenstored, or a message in it, cannot be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Ring indexes past the ring.
    RingIndexes(IndexError),
    /// A header announcing more than [`XENSTORE_PAYLOAD_MAX`] bytes.
    PayloadTooLong {
        /// The announced length.
        len: u32,
    },
    /// A header whose type xs_wire.h does not define.
    UnknownType {
        /// The raw type.
        raw: u32,
    },
    /// A reply whose `req_id` is not that of the request in flight.
    UnexpectedRequestId {
        /// The request in flight, if any.
        expected: Option<u32>,
        /// The `req_id` received.
        got: u32,
    },
    /// A reply whose type is neither the request's nor ERROR.
    UnexpectedReplyType {
        /// The request's type.
        expected: MessageType,
        /// The type received.
        got: MessageType,
    },
    /// A payload without the shape its type requires.
    BadPayload {
        /// What was wrong.
        what: &'static str,
    },
    /// xenstored set the ring page's error field (`XENSTORE_ERROR_*`) and has
    /// stopped serving the ring.
    ServerError {
        /// The error field.
        code: u32,
    },
    /// A timeout struck with a request only part-way into the ring.
    RequestCutShort,
    /// The byte stream to xenstored ended (end of file on a xenbus device).
    StreamClosed,
    /// Reading or writing the byte stream failed with this OS error number.
    StreamFailed {
        /// The OS error number (`errno`).
        errno: i32,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::RingIndexes(error) => write!(f, "{error}"),
            Fault::PayloadTooLong { len } => write!(
                f,
                "message announces {len} payload bytes, more than {XENSTORE_PAYLOAD_MAX}"
            ),
            Fault::UnknownType { raw } => write!(f, "message of unknown type {raw}"),
            Fault::UnexpectedRequestId {
                expected: Some(expected),
                got,
            } => write!(f, "reply to request {got} while waiting for {expected}"),
            Fault::UnexpectedRequestId {
                expected: None,
                got,
            } => {
                write!(f, "reply to request {got} with no request in flight")
            }
            Fault::UnexpectedReplyType { expected, got } => {
                write!(f, "{got} reply to a {expected} request")
            }
            Fault::BadPayload { what } => write!(f, "bad payload: {what}"),
            Fault::ServerError { code } => {
                write!(f, "xenstored reports connection error {code}")
            }
            Fault::RequestCutShort => f.write_str("a request timed out part-way into the ring"),
            Fault::StreamClosed => f.write_str("the connection to xenstored was closed"),
            Fault::StreamFailed { errno } => {
                write!(f, "the connection to xenstored failed (errno {errno})")
            }
        }
    }
}

impl From<IndexError> for Fault {
    fn from(error: IndexError) -> Self {
        Fault::RingIndexes(error)
    }
}

/// A request that cannot be encoded; nothing is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload would exceed [`XENSTORE_PAYLOAD_MAX`] (xenstored drops the
    /// connection of a client that sends one).
    PayloadTooLarge {
        /// The payload length.
        len: usize,
    },
    /// A path or token contains a NUL byte, which would shift the arguments.
    NulInArgument,
}

/// A request, with the payload layouts of docs/misc/xenstore.txt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// READ `path|`.
    Read {
        /// Node.
        path: &'a str,
    },
    /// WRITE `path|value` (the value has no terminator).
    Write {
        /// Node.
        path: &'a str,
        /// Raw value.
        value: &'a [u8],
    },
    /// MKDIR `path|`.
    Mkdir {
        /// Node.
        path: &'a str,
    },
    /// RM `path|`.
    Rm {
        /// Node.
        path: &'a str,
    },
    /// DIRECTORY `path|`.
    Directory {
        /// Node.
        path: &'a str,
    },
    /// WATCH `path|token|`.
    Watch {
        /// Node or `@special` path.
        path: &'a str,
        /// Token echoed in events.
        token: &'a str,
    },
    /// UNWATCH `path|token|`.
    Unwatch {
        /// As given to WATCH.
        path: &'a str,
        /// As given to WATCH.
        token: &'a str,
    },
    /// TRANSACTION_START `|`.
    TransactionStart,
    /// TRANSACTION_END `T|` (commit) or `F|` (abort).
    TransactionEnd {
        /// Commit rather than abort.
        commit: bool,
    },
    /// GET_DOMAIN_PATH `domid|`.
    GetDomainPath {
        /// Domain.
        domid: u16,
    },
    /// SET_PERMS `path|perm|perm|...`: the first permission names the node's
    /// owner and what every domain not listed may do, the others what the
    /// domains they name may do.
    SetPerms {
        /// Node.
        path: &'a str,
        /// Owner first.
        permissions: &'a [Permission],
    },
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

/// One entry of a node's permissions: a domain and what it may do (`r3`:
/// domain 3 may read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// What the domain may do.
    pub access: NodeAccess,
    /// The domain.
    pub domid: u32,
}

impl Permission {
    /// The permissions of a node Dom0 owns that no domain may touch but `domid`, which may
    /// read it: `n0`, `r<domid>` (a backend's node for its frontend, such as the xenbus
    /// error node).
    pub const fn readable_by(domid: u32) -> [Permission; 2] {
        [
            Permission {
                access: NodeAccess::None,
                domid: 0,
            },
            Permission {
                access: NodeAccess::Read,
                domid,
            },
        ]
    }
}

impl NodeAccess {
    /// The letter SET_PERMS and GET_PERMS use for it.
    pub fn letter(self) -> u8 {
        match self {
            NodeAccess::None => b'n',
            NodeAccess::Read => b'r',
            NodeAccess::Write => b'w',
            NodeAccess::Both => b'b',
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", char::from(self.access.letter()), self.domid)
    }
}

fn push_string(payload: &mut Vec<u8>, text: &str) -> Result<(), EncodeError> {
    if text.as_bytes().contains(&0) {
        return Err(EncodeError::NulInArgument);
    }
    payload.extend_from_slice(text.as_bytes());
    payload.push(0);
    Ok(())
}

impl Request<'_> {
    /// The header type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Request::Read { .. } => MessageType::Read,
            Request::Write { .. } => MessageType::Write,
            Request::Mkdir { .. } => MessageType::Mkdir,
            Request::Rm { .. } => MessageType::Rm,
            Request::Directory { .. } => MessageType::Directory,
            Request::Watch { .. } => MessageType::Watch,
            Request::Unwatch { .. } => MessageType::Unwatch,
            Request::TransactionStart => MessageType::TransactionStart,
            Request::TransactionEnd { .. } => MessageType::TransactionEnd,
            Request::GetDomainPath { .. } => MessageType::GetDomainPath,
            Request::SetPerms { .. } => MessageType::SetPerms,
        }
    }

    /// The payload.
    pub fn payload(&self) -> Result<Vec<u8>, EncodeError> {
        let mut payload = Vec::new();
        match *self {
            Request::Read { path }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::Directory { path } => push_string(&mut payload, path)?,
            Request::Write { path, value } => {
                push_string(&mut payload, path)?;
                payload.extend_from_slice(value);
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                push_string(&mut payload, path)?;
                push_string(&mut payload, token)?;
            }
            Request::TransactionStart => payload.push(0),
            Request::TransactionEnd { commit } => {
                payload.extend_from_slice(if commit { b"T\0" } else { b"F\0" })
            }
            Request::GetDomainPath { domid } => {
                let mut digits = [0u8; 5];
                push_string(&mut payload, decimal(u32::from(domid), &mut digits))?;
            }
            Request::SetPerms { path, permissions } => {
                push_string(&mut payload, path)?;
                for permission in permissions {
                    let mut digits = [0u8; 10];
                    payload.push(permission.access.letter());
                    push_string(&mut payload, decimal(permission.domid, &mut digits))?;
                }
            }
        }
        if payload.len() > XENSTORE_PAYLOAD_MAX {
            return Err(EncodeError::PayloadTooLarge { len: payload.len() });
        }
        Ok(payload)
    }

    /// The whole message, header and payload.
    pub fn encode(&self, req_id: u32, tx_id: u32) -> Result<Vec<u8>, EncodeError> {
        let payload = self.payload()?;
        let header = Header {
            msg_type: self.message_type() as u32,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        let mut message = Vec::with_capacity(HEADER_SIZE + payload.len());
        message.extend_from_slice(&header.to_bytes());
        message.extend_from_slice(&payload);
        Ok(message)
    }
}

/// Formats `value` in decimal into `buffer` (at least as long as the digits).
fn decimal(mut value: u32, buffer: &mut [u8]) -> &str {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    core::str::from_utf8(&buffer[start..]).unwrap_or("0")
}

const fn bad(what: &'static str) -> Fault {
    Fault::BadPayload { what }
}

/// Splits a payload of NUL-terminated strings; `None` if the last one lacks
/// its terminator.
fn split_strings(payload: &[u8]) -> Option<Vec<&[u8]>> {
    let body = payload.strip_suffix(&[0])?;
    Some(body.split(|&byte| byte == 0).collect())
}

/// The single NUL-terminated UTF-8 string of a payload.
fn single_string<'a>(payload: &'a [u8], what: &'static str) -> Result<&'a str, Fault> {
    match split_strings(payload).as_deref() {
        Some([text]) => core::str::from_utf8(text).map_err(|_| bad(what)),
        _ => Err(bad(what)),
    }
}

/// Checks the `OK|` payload of a successful WRITE, MKDIR, RM, WATCH, UNWATCH
/// or TRANSACTION_END.
pub fn decode_ok(payload: &[u8]) -> Result<(), Fault> {
    if payload == b"OK\0" {
        Ok(())
    } else {
        Err(bad("expected OK"))
    }
}

/// Decodes the `E<name>|` payload of an ERROR reply.
pub fn decode_error(payload: &[u8]) -> Result<XsdError, Fault> {
    const WHAT: &str = "ERROR reply is not one NUL-terminated error name";
    let name = single_string(payload, WHAT)?;
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(bad(WHAT));
    }
    Ok(XsdError::from_name(name))
}

/// Decodes a DIRECTORY reply: zero or more NUL-terminated leaf names.
pub fn decode_directory(payload: &[u8]) -> Result<Vec<String>, Fault> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let names = split_strings(payload).ok_or(bad("DIRECTORY reply is not NUL-terminated"))?;
    names
        .into_iter()
        .map(|name| match core::str::from_utf8(name) {
            Ok(name) if !name.is_empty() && !name.contains('/') => Ok(String::from(name)),
            _ => Err(bad("DIRECTORY reply holds an invalid child name")),
        })
        .collect()
}

/// Decodes a TRANSACTION_START reply: a non-zero decimal id.
pub fn decode_transaction_id(payload: &[u8]) -> Result<u32, Fault> {
    const WHAT: &str = "TRANSACTION_START reply is not a non-zero decimal id";
    let text = single_string(payload, WHAT)?;
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad(WHAT));
    }
    match text.parse::<u32>() {
        Ok(id) if id != 0 => Ok(id),
        _ => Err(bad(WHAT)),
    }
}

/// Decodes a GET_DOMAIN_PATH reply: one NUL-terminated path.
pub fn decode_path(payload: &[u8]) -> Result<String, Fault> {
    const WHAT: &str = "GET_DOMAIN_PATH reply is not one NUL-terminated path";
    let path = single_string(payload, WHAT)?;
    if path.is_empty() {
        return Err(bad(WHAT));
    }
    Ok(String::from(path))
}

/// A WATCH_EVENT: the path that changed and the watch's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The changed path (relative if the watch's path was).
    pub path: String,
    /// The token given to WATCH.
    pub token: String,
}

/// Decodes a WATCH_EVENT payload `path|token|`.
pub fn decode_watch_event(payload: &[u8]) -> Result<WatchEvent, Fault> {
    const WHAT: &str = "WATCH_EVENT is not a NUL-terminated path and token";
    match split_strings(payload).as_deref() {
        Some([path, token]) if !path.is_empty() => Ok(WatchEvent {
            path: String::from(core::str::from_utf8(path).map_err(|_| bad(WHAT))?),
            token: String::from(core::str::from_utf8(token).map_err(|_| bad(WHAT))?),
        }),
        _ => Err(bad(WHAT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    /// A header in wire form, written field by field from `struct xsd_sockmsg`.
    fn golden_header(msg_type: u8, req_id: u8, tx_id: u8, len: u16) -> Vec<u8> {
        let [len_low, len_high] = len.to_le_bytes();
        vec![
            msg_type, 0, 0, 0, // type
            req_id, 0, 0, 0, // req_id
            tx_id, 0, 0, 0, // tx_id
            len_low, len_high, 0, 0, // len
        ]
    }

    fn golden(msg_type: u8, req_id: u8, tx_id: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = golden_header(msg_type, req_id, tx_id, payload.len() as u16);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn header_is_four_little_endian_words() {
        let header = Header {
            msg_type: 0x0102_0304,
            req_id: 0x1122_3344,
            tx_id: 0xa0b0_c0d0,
            len: 0x0000_1000,
        };
        let bytes = header.to_bytes();
        assert_eq!(
            bytes,
            [
                0x04, 0x03, 0x02, 0x01, 0x44, 0x33, 0x22, 0x11, 0xd0, 0xc0, 0xb0, 0xa0, 0x00, 0x10,
                0x00, 0x00
            ]
        );
        assert_eq!(Header::from_bytes(&bytes), header);
    }

    #[test]
    fn requests_encode_byte_exact() {
        let cases: [(Request, Vec<u8>); 10] = [
            (Request::Read { path: "a/b" }, golden(2, 7, 0, b"a/b\0")),
            (
                Request::Write {
                    path: "state",
                    value: b"4",
                },
                golden(11, 7, 0, b"state\x004"),
            ),
            (Request::Mkdir { path: "/x" }, golden(12, 7, 0, b"/x\0")),
            (Request::Rm { path: "/x" }, golden(13, 7, 0, b"/x\0")),
            (
                Request::Directory { path: "device" },
                golden(1, 7, 0, b"device\0"),
            ),
            (
                Request::Watch {
                    path: "be/state",
                    token: "t1",
                },
                golden(4, 7, 0, b"be/state\0t1\0"),
            ),
            (
                Request::Unwatch {
                    path: "be/state",
                    token: "t1",
                },
                golden(5, 7, 0, b"be/state\0t1\0"),
            ),
            (Request::TransactionStart, golden(6, 7, 0, b"\0")),
            (
                Request::TransactionEnd { commit: true },
                golden(7, 7, 0, b"T\0"),
            ),
            (
                Request::GetDomainPath { domid: 65535 },
                golden(10, 7, 0, b"65535\0"),
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(request.encode(7, 0).unwrap(), expected, "{request:?}");
        }
        assert_eq!(
            Request::TransactionEnd { commit: false }
                .encode(1, 9)
                .unwrap(),
            golden(7, 1, 9, b"F\0")
        );
        assert_eq!(
            Request::GetDomainPath { domid: 0 }.encode(3, 0).unwrap(),
            golden(10, 3, 0, b"0\0")
        );
        assert_eq!(
            Request::Read { path: "p" }.encode(7, 5).unwrap(),
            golden(2, 7, 5, b"p\0")
        );
    }

    #[test]
    fn write_value_keeps_nul_bytes_and_has_no_terminator() {
        let payload = Request::Write {
            path: "k",
            value: b"a\0b",
        }
        .payload()
        .unwrap();
        assert_eq!(payload, b"k\0a\0b");
        let empty = Request::Write {
            path: "k",
            value: b"",
        };
        assert_eq!(empty.payload().unwrap(), b"k\0");
    }

    #[test]
    fn oversized_or_nul_arguments_are_refused() {
        let value = vec![b'v'; XENSTORE_PAYLOAD_MAX - 2];
        let fits = Request::Write {
            path: "k",
            value: &value,
        };
        assert_eq!(fits.payload().unwrap().len(), XENSTORE_PAYLOAD_MAX);
        let value = vec![b'v'; XENSTORE_PAYLOAD_MAX - 1];
        let over = Request::Write {
            path: "k",
            value: &value,
        };
        assert_eq!(
            over.encode(1, 0),
            Err(EncodeError::PayloadTooLarge {
                len: XENSTORE_PAYLOAD_MAX + 1
            })
        );
        assert_eq!(
            Request::Read { path: "a\0b" }.payload(),
            Err(EncodeError::NulInArgument)
        );
        assert_eq!(
            Request::Watch {
                path: "a",
                token: "t\0"
            }
            .payload(),
            Err(EncodeError::NulInArgument)
        );
    }

    #[test]
    fn every_message_type_round_trips_and_gaps_are_unknown() {
        for raw in (0..=26).chain([0xffff]) {
            if raw == 20 {
                assert_eq!(MessageType::try_from(20), Err(UnknownMessageType(20)));
                continue;
            }
            let msg_type = MessageType::try_from(raw).unwrap();
            assert_eq!(msg_type as u32, raw);
        }
        for raw in [27, 100, 0xfffe, 0x1_0000, u32::MAX] {
            assert_eq!(MessageType::try_from(raw), Err(UnknownMessageType(raw)));
        }
        assert_eq!(MessageType::DirectoryPart as u32, 22);
        assert_eq!(MessageType::SetQuota as u32, 26);
        assert_eq!(MessageType::GetDomainPath.to_string(), "GET_DOMAIN_PATH");
    }

    #[test]
    fn header_check_rejects_unknown_types_and_long_payloads() {
        let header = |msg_type, len| Header {
            msg_type,
            req_id: 1,
            tx_id: 0,
            len,
        };
        assert_eq!(header(2, 4096).check(), Ok(MessageType::Read));
        assert_eq!(
            header(2, 4097).check(),
            Err(Fault::PayloadTooLong { len: 4097 })
        );
        assert_eq!(header(20, 0).check(), Err(Fault::UnknownType { raw: 20 }));
    }

    #[test]
    fn error_names_map_to_the_xsd_errors_table() {
        let table = [
            ("EINVAL", XsdError::Invalid),
            ("EACCES", XsdError::AccessDenied),
            ("EEXIST", XsdError::Exists),
            ("EISDIR", XsdError::IsDirectory),
            ("ENOENT", XsdError::NoEntry),
            ("ENOMEM", XsdError::NoMemory),
            ("ENOSPC", XsdError::NoSpace),
            ("EIO", XsdError::Io),
            ("ENOTEMPTY", XsdError::NotEmpty),
            ("ENOSYS", XsdError::NotImplemented),
            ("EROFS", XsdError::ReadOnly),
            ("EBUSY", XsdError::Busy),
            ("EAGAIN", XsdError::Again),
            ("EISCONN", XsdError::IsConnected),
            ("E2BIG", XsdError::TooBig),
            ("EPERM", XsdError::NotPermitted),
            ("EQUOTA", XsdError::Quota),
        ];
        for (name, error) in table {
            let mut payload = name.as_bytes().to_vec();
            payload.push(0);
            assert_eq!(decode_error(&payload), Ok(error.clone()));
            assert_eq!(error.name(), name);
            assert_eq!(error.to_string(), name);
        }
        assert_eq!(
            decode_error(b"EWEIRD\0"),
            Ok(XsdError::Other("EWEIRD".to_string()))
        );
        for broken in [&b""[..], b"ENOENT", b"\0", b"ENOENT\0x\0", b"E NO\0"] {
            assert!(decode_error(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn replies_decode_or_fail_typed() {
        assert_eq!(decode_ok(b"OK\0"), Ok(()));
        assert!(decode_ok(b"OK").is_err());
        assert!(decode_ok(b"").is_err());

        assert_eq!(decode_directory(b""), Ok(vec![]));
        assert_eq!(
            decode_directory(b"0\0backend\0"),
            Ok(vec!["0".to_string(), "backend".to_string()])
        );
        for broken in [&b"a\0b"[..], b"\0", b"a\0\0", b"a/b\0", b"\xff\0"] {
            assert!(decode_directory(broken).is_err(), "{broken:?}");
        }

        assert_eq!(decode_transaction_id(b"17\0"), Ok(17));
        assert_eq!(decode_transaction_id(b"4294967295\0"), Ok(u32::MAX));
        for broken in [
            &b"17"[..],
            b"0\0",
            b"-1\0",
            b"+1\0",
            b"4294967296\0",
            b"\0",
            b"1\x002\0",
        ] {
            assert!(decode_transaction_id(broken).is_err(), "{broken:?}");
        }

        assert_eq!(
            decode_path(b"/local/domain/3\0"),
            Ok("/local/domain/3".to_string())
        );
        assert!(decode_path(b"/local/domain/3").is_err());
        assert!(decode_path(b"\0").is_err());

        assert_eq!(
            decode_watch_event(b"device/vdispl/0\0tok\0"),
            Ok(WatchEvent {
                path: "device/vdispl/0".to_string(),
                token: "tok".to_string()
            })
        );
        for broken in [&b"p\0t"[..], b"p\0", b"\0t\0", b"p\0t\0x\0", b"\xff\0t\0"] {
            assert!(decode_watch_event(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn faults_read_clearly() {
        assert_eq!(
            Fault::UnexpectedRequestId {
                expected: Some(3),
                got: 9
            }
            .to_string(),
            "reply to request 9 while waiting for 3"
        );
        assert_eq!(
            Fault::UnexpectedReplyType {
                expected: MessageType::Write,
                got: MessageType::Read
            }
            .to_string(),
            "READ reply to a WRITE request"
        );
        assert_eq!(
            Fault::PayloadTooLong { len: 5000 }.to_string(),
            "message announces 5000 payload bytes, more than 4096"
        );
    }
}
