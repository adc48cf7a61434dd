//! The vdispl frontend: finding the display devices in xenstore, the xenbus
//! handshake with the backend, and each connector's request ring and event
//! page (io/displif.h, "Feature and Parameter Negotiation" and "STATE
//! DIAGRAMS").
//!
//! The OS supplies pages, grants and event channels; this module decides what
//! goes where and checks everything the backend sends.

extern crate alloc;

pub mod backend;
pub mod config;
pub mod connector;
pub mod env;
pub mod failure;
pub mod fault;
pub mod flip;
pub mod frontend;
pub mod recovery;
pub mod server;

#[cfg(test)]
mod failure_tests;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(any(test, feature = "fake"))]
pub mod fake_env;
#[cfg(test)]
mod frontend_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

use super::displif::{Operation, ResolutionError};
use super::ring::RingError;
use super::xenbus::XenbusError;
use super::xenstore::client::Error as StoreError;
use alloc::string::String;
use core::fmt;

/// At most this many connectors per device are driven. displif.h sets no
/// limit; a device that lists more (or lists them with a gap) is not
/// driven at all, with an error naming the first node beyond the limit (see
/// [`config::read_device`]): the toolstack's configuration needs a fix,
/// driving part of it would hide that, and the backend, which serves every
/// connector listed, would wait for rings this frontend never publishes.
pub const MAX_CONNECTORS: usize = 4;

/// What went wrong with a display device or connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VdisplError {
    /// A xenstore operation failed.
    Store {
        /// The node.
        node: String,
        /// The error.
        error: StoreError,
    },
    /// A xenbus state wait or write failed.
    Xenbus(XenbusError),
    /// A node holds something that cannot be right.
    BadNode {
        /// The node.
        node: String,
        /// Its value.
        value: String,
    },
    /// A `resolution` node that cannot be driven.
    BadResolution {
        /// The node.
        node: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: ResolutionError,
    },
    /// The device lists no connector.
    NoConnectors(String),
    /// The device lists more connectors than [`MAX_CONNECTORS`].
    TooManyConnectors {
        /// The device's directory.
        device: String,
    },
    /// The device's connectors are not numbered contiguously from 0.
    ConnectorGap {
        /// The device's directory.
        device: String,
        /// The missing connector.
        missing: u32,
        /// A connector listed after it.
        listed: u32,
    },
    /// The backend supports no version this frontend speaks.
    NoCommonVersion(String),
    /// The ring or event page is inconsistent.
    Ring(RingError),
    /// The backend answered with a status other than 0.
    Status {
        /// The request.
        operation: Operation,
        /// The status (`-XEN_Exx`).
        status: i32,
    },
    /// No response to a request in time.
    Timeout {
        /// The request.
        operation: Operation,
        /// How long it waited.
        waited_ms: u64,
    },
    /// A response that answers no request in flight.
    UnexpectedResponse {
        /// Its id.
        id: u16,
    },
    /// No room for another request.
    RingFull,
}

impl fmt::Display for VdisplError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VdisplError::Store { node, error } => write!(f, "xenstore {node}: {error}"),
            VdisplError::Xenbus(error) => write!(f, "{error}"),
            VdisplError::BadNode { node, value } => write!(f, "{node} holds {value:?}"),
            VdisplError::BadResolution { node, value, why } => {
                write!(f, "{node} holds {value:?} ({why})")
            }
            VdisplError::NoConnectors(device) => write!(f, "{device} lists no connector"),
            VdisplError::TooManyConnectors { device } => write!(
                f,
                "{device}/{MAX_CONNECTORS}: this frontend drives at most {MAX_CONNECTORS} \
                 connectors per device"
            ),
            VdisplError::ConnectorGap {
                device,
                missing,
                listed,
            } => write!(
                f,
                "{device}/{missing} is missing but {device}/{listed} is listed: displif.h numbers \
                 connectors from 0 without gaps"
            ),
            VdisplError::NoCommonVersion(versions) => {
                write!(f, "the backend offers versions {versions:?}, none of 1..=2")
            }
            VdisplError::Ring(error) => write!(f, "ring: {error}"),
            VdisplError::Status { operation, status } => {
                write!(f, "{operation} failed with status {status}")
            }
            VdisplError::Timeout {
                operation,
                waited_ms,
            } => write!(f, "{operation} got no response in {waited_ms} ms"),
            VdisplError::UnexpectedResponse { id } => {
                write!(f, "response id {id} answers no request in flight")
            }
            VdisplError::RingFull => write!(f, "the request ring is full"),
        }
    }
}

impl From<RingError> for VdisplError {
    fn from(error: RingError) -> Self {
        VdisplError::Ring(error)
    }
}

impl From<XenbusError> for VdisplError {
    fn from(error: XenbusError) -> Self {
        VdisplError::Xenbus(error)
    }
}
