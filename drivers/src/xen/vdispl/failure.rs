//! Why a connector stopped, why a device's connection ended, and how the
//! backend left: typed up to the adapter that prints them.
//!
//! Every failure has a [`FailureClass`], which decides what comes next
//! ([`super::recovery`]):
//! - a *configuration* error (a node's value, or the device's shape) is
//!   permanent: the connector or device it names is not driven, with one line
//!   naming the node and its value;
//! - a *connection* error (the backend's state, a ring, a request) is retried
//!   under the reconnect policy;
//! - a *resource* error (memory, grant references, event channels) stops what
//!   needed the resource, saying how much was asked for and how much there
//!   is; a retry would ask for the same again.

use super::env::ForeignError;
use super::flip::FlipError;
use super::VdisplError;
use crate::framebuffer::FramebufferError;
use crate::xen::error::XenError;
use crate::xen::gnttab::GrantError;
use crate::xen::xenbus::{XenbusError, XenbusState};
use alloc::string::String;
use core::fmt;

/// What memory ran short for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// A display buffer of this size.
    Buffer {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A page directory.
    Directory,
    /// The EDID buffer.
    Edid,
    /// A connector's ring and event pages.
    Rings,
}

impl fmt::Display for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allocation::Buffer { width, height } => write!(f, "a {width}x{height} buffer"),
            Allocation::Directory => f.write_str("a page directory"),
            Allocation::Edid => f.write_str("the EDID"),
            Allocation::Rings => f.write_str("the rings"),
        }
    }
}

/// What kind of failure it is (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// A node's value or the device's shape: permanent.
    Configuration,
    /// The backend's state, a ring or a request: retried.
    Connection,
    /// Memory, grant references or event channels ran short.
    Resource,
}

/// Why a connector stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorError {
    /// A request failed (status, timeout, ring).
    Request(VdisplError),
    /// Its flips cannot go on.
    Flip(FlipError),
    /// Its configuration cannot be driven (a node's value).
    Config(VdisplError),
    /// Memory ran short: no reconnection cures that.
    NoMemory {
        /// What it was for.
        what: Allocation,
        /// Bytes asked for.
        asked: usize,
        /// Bytes the heap had free.
        free: usize,
    },
    /// The pages of a buffer could not all be granted.
    Grants {
        /// What they were for.
        what: Allocation,
        /// References asked for.
        asked: usize,
        /// Why the grant failed.
        error: GrantError,
    },
    /// The buffer does not fit its size.
    Framebuffer(FramebufferError),
    /// A buffer the backend allocated (`be-alloc`) cannot be used.
    BackendBuffer(BackendBufferError),
    /// It has no buffer to draw into.
    NoBuffers,
    /// The backend refused display buffers of this depth (DBUF_CREATE
    /// answered `status`, -EINVAL or -EOPNOTSUPP): the connector falls back
    /// to XRGB8888 (32 bpp).
    DepthRefused {
        /// The depth refused.
        bpp: u32,
        /// DBUF_CREATE's status.
        status: i32,
    },
}

impl ConnectorError {
    /// What kind of failure it is.
    pub fn class(&self) -> FailureClass {
        match self {
            ConnectorError::Config(_) => FailureClass::Configuration,
            ConnectorError::NoMemory { .. }
            | ConnectorError::Grants { .. }
            | ConnectorError::BackendBuffer(_)
            | ConnectorError::Framebuffer(_)
            | ConnectorError::NoBuffers => FailureClass::Resource,
            ConnectorError::Request(_)
            | ConnectorError::Flip(_)
            | ConnectorError::DepthRefused { .. } => FailureClass::Connection,
        }
    }

    /// Whether no retry can cure it.
    pub fn for_good(&self) -> bool {
        self.class() != FailureClass::Connection
    }

    /// Whether it means the connector's ring or event page cannot be used
    /// any more: a producer index past the ring (`rsp_prod`, `in_prod`).
    /// Only a new connection resets them. Everything else (an error status,
    /// a response with a wrong id, a request never answered) leaves the
    /// ring usable: the connector tries again on it (see
    /// [`super::recovery`]).
    pub fn breaks_ring(&self) -> bool {
        matches!(
            self,
            ConnectorError::Request(VdisplError::Ring(_))
                | ConnectorError::Flip(FlipError::Backend(VdisplError::Ring(_)))
        )
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectorError::Request(error) => write!(f, "{error}"),
            ConnectorError::Flip(error) => write!(f, "{error}"),
            ConnectorError::Config(error) => write!(f, "configuration: {error}"),
            ConnectorError::NoMemory { what, asked, free } => write!(
                f,
                "no memory for {what}: {asked} bytes asked for, {free} bytes free in the heap"
            ),
            ConnectorError::Grants { what, asked, error } => {
                write!(f, "{what} needs {asked} grant references: {error}")
            }
            ConnectorError::Framebuffer(error) => write!(f, "framebuffer: {error}"),
            ConnectorError::BackendBuffer(error) => {
                write!(f, "the backend's buffer: {error}")
            }
            ConnectorError::NoBuffers => f.write_str("no buffers"),
            ConnectorError::DepthRefused { bpp, status } => write!(
                f,
                "the backend refused {bpp} bpp buffers (DBUF_CREATE failed with status {status})"
            ),
        }
    }
}

impl From<VdisplError> for ConnectorError {
    fn from(error: VdisplError) -> Self {
        ConnectorError::Request(error)
    }
}

impl From<FlipError> for ConnectorError {
    fn from(error: FlipError) -> Self {
        ConnectorError::Flip(error)
    }
}

/// Why a buffer the backend allocated cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendBufferError {
    /// The directory lists fewer pages than the buffer has, or a reference
    /// of 0.
    ShortDirectory {
        /// Pages listed.
        listed: usize,
        /// Pages the buffer has.
        pages: usize,
    },
    /// Its pages cannot be mapped.
    Map(ForeignError),
}

impl fmt::Display for BackendBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendBufferError::ShortDirectory { listed, pages } => write!(
                f,
                "the page directory lists {listed} usable references for {pages} pages"
            ),
            BackendBufferError::Map(error) => write!(f, "{error}"),
        }
    }
}

/// How the backend left a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gone {
    /// Its state is no longer Connected.
    State(XenbusState),
    /// Its state node cannot be read.
    Unreadable(XenbusError),
}

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gone::State(state) => write!(f, "the backend went to {state}"),
            Gone::Unreadable(error) => write!(f, "the backend's state is unreadable: {error}"),
        }
    }
}

/// A step of connecting a device, named in its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Listing `device/vdispl`.
    Enumerate,
    /// Reading the device's nodes.
    Configuration,
    /// Watching the backend's state.
    Watch,
    /// Reading the backend's state and versions.
    Version,
    /// Waiting for the backend's InitWait.
    AwaitBackend,
    /// Publishing the rings and channels.
    Publish,
    /// Waiting for the backend's Connected.
    AwaitConnected,
    /// Writing Connected.
    Connecting,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Enumerate => "device/vdispl",
            Step::Configuration => "device configuration",
            Step::Watch => "watching the backend",
            Step::Version => "version negotiation",
            Step::AwaitBackend => "waiting for the backend",
            Step::Publish => "publishing the connectors",
            Step::AwaitConnected => "waiting for the backend to connect",
            Step::Connecting => "connecting",
        })
    }
}

/// Why a device's connection could not be made, or ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The domain has no xenstore connection.
    NoXenstore,
    /// A xenstore step failed.
    Store(Step, VdisplError),
    /// The backend went Closing or Closed (or its state could not be read)
    /// while the handshake waited for it; what its xenbus `error` node says,
    /// if it wrote one.
    Refused(Step, Gone, Option<String>),
    /// The backend left InitWait before the version could be read.
    LeftInitWait,
    /// An event channel to the backend's domain could not be allocated.
    Channel {
        /// The node naming the backend's domain (`backend-id`).
        node: String,
        /// The domain.
        domid: u16,
        /// What `EVTCHNOP_alloc_unbound` returned.
        error: XenError,
    },
    /// A ring page could not be granted.
    Grant(GrantError),
    /// No memory for a connector's rings.
    NoMemory {
        /// What it was for.
        what: Allocation,
        /// Bytes asked for.
        asked: usize,
        /// Bytes the heap had free.
        free: usize,
    },
    /// The backend left the connection.
    Gone(Gone),
    /// A connector's ring broke; the device is reconnected to reset it.
    BrokenRing {
        /// The connector's name.
        name: String,
        /// What broke it.
        error: ConnectorError,
        /// The reconnection for its sake in a row.
        retry: u32,
    },
}

impl DeviceError {
    /// What kind of failure it is.
    pub fn class(&self) -> FailureClass {
        match self {
            DeviceError::Store(
                _,
                VdisplError::BadNode { .. }
                | VdisplError::BadResolution { .. }
                | VdisplError::NoConnectors(_)
                | VdisplError::TooManyConnectors { .. }
                | VdisplError::ConnectorGap { .. },
            )
            | DeviceError::NoXenstore => FailureClass::Configuration,
            // No such domain, or one this domain may not talk to: what
            // `backend-id` names is wrong.
            DeviceError::Channel {
                error: XenError::NoSuchObject | XenError::Invalid | XenError::NotPermitted,
                ..
            } => FailureClass::Configuration,
            // A backend that closes in answer to the frontend's Initialised
            // refused the device as configured: another attempt would be
            // refused the same way (its xenbus error node, quoted, says why).
            DeviceError::Refused(
                Step::AwaitConnected,
                Gone::State(XenbusState::Closing | XenbusState::Closed),
                _,
            ) => FailureClass::Configuration,
            DeviceError::Channel { .. } | DeviceError::Grant(_) | DeviceError::NoMemory { .. } => {
                FailureClass::Resource
            }
            DeviceError::Store(..)
            | DeviceError::Refused(..)
            | DeviceError::LeftInitWait
            | DeviceError::Gone(_)
            | DeviceError::BrokenRing { .. } => FailureClass::Connection,
        }
    }

    /// Whether no later attempt can cure it: a configuration or resource
    /// error.
    pub fn permanent(&self) -> bool {
        self.class() != FailureClass::Connection
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NoXenstore => f.write_str("the domain has no xenstore"),
            DeviceError::Store(step, error) => write!(f, "{step}: {error}"),
            DeviceError::Refused(step, gone, None) => write!(f, "{step}: {gone}"),
            DeviceError::Refused(step, gone, Some(said)) => {
                write!(f, "{step}: {gone}, saying {said:?}")
            }
            DeviceError::LeftInitWait => {
                f.write_str("the backend left InitWait before the version")
            }
            DeviceError::Channel { node, domid, error } => match self.class() {
                FailureClass::Configuration => write!(
                    f,
                    "configuration: {node} names domain {domid}, which this domain cannot reach \
                     (EVTCHNOP_alloc_unbound: {error})"
                ),
                _ => write!(
                    f,
                    "no event channel to domain {domid} (EVTCHNOP_alloc_unbound: {error})"
                ),
            },
            DeviceError::Grant(error) => write!(f, "granting a ring: {error}"),
            DeviceError::NoMemory { what, asked, free } => write!(
                f,
                "no memory for {what}: {asked} bytes asked for, {free} bytes free in the heap"
            ),
            DeviceError::Gone(gone) => write!(f, "{gone}"),
            DeviceError::BrokenRing { name, error, retry } => write!(
                f,
                "{name} failed ({error}); reconnecting the device to recover it (retry {retry} \
                 of {})",
                super::recovery::MAX_CONNECTOR_RETRIES
            ),
        }
    }
}
