//! Xenstore: the wire protocol, the shared ring and a client
//! (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt,
//! docs/misc/xenstore-ring.txt).

pub mod client;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod ring;
#[cfg(test)]
mod tests;
pub mod wire;
