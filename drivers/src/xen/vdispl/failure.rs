//! Why a connector stopped, why a device's connection ended, and how the
//! backend left: typed up to the adapter that prints them.

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

/// Why a connector stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorError {
    /// A request failed (status, timeout, ring).
    Request(VdisplError),
    /// Its flips cannot go on.
    Flip(FlipError),
    /// Memory ran short: no reconnection cures that.
    NoMemory(Allocation),
    /// A page could not be granted.
    Grant(GrantError),
    /// The buffer does not fit its size.
    Framebuffer(FramebufferError),
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
    /// Whether a new connection cannot cure it.
    pub fn for_good(&self) -> bool {
        matches!(self, ConnectorError::NoMemory(_))
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
            ConnectorError::NoMemory(what) => write!(f, "no memory for {what}"),
            ConnectorError::Grant(error) => write!(f, "{error}"),
            ConnectorError::Framebuffer(error) => write!(f, "framebuffer: {error}"),
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

impl From<GrantError> for ConnectorError {
    fn from(error: GrantError) -> Self {
        ConnectorError::Grant(error)
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
    /// while the handshake waited for it.
    Refused(Step, Gone),
    /// The backend left InitWait before the version could be read.
    LeftInitWait,
    /// An event channel could not be allocated.
    Channel(XenError),
    /// A ring page could not be granted.
    Grant(GrantError),
    /// No memory for a connector's rings.
    NoMemory(Allocation),
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
    /// Whether no later attempt can cure it: the device's configuration
    /// breaks displif.h's rules or this frontend's limits.
    pub fn permanent(&self) -> bool {
        matches!(
            self,
            DeviceError::Store(
                _,
                VdisplError::TooManyConnectors { .. } | VdisplError::ConnectorGap { .. }
            )
        )
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NoXenstore => f.write_str("the domain has no xenstore"),
            DeviceError::Store(step, error) => write!(f, "{step}: {error}"),
            DeviceError::Refused(step, gone) => write!(f, "{step}: {gone}"),
            DeviceError::LeftInitWait => {
                f.write_str("the backend left InitWait before the version")
            }
            DeviceError::Channel(error) => write!(f, "EVTCHNOP_alloc_unbound: {error}"),
            DeviceError::Grant(error) => write!(f, "granting a ring: {error}"),
            DeviceError::NoMemory(what) => write!(f, "no memory for {what}"),
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
