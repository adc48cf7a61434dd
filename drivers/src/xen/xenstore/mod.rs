//! Xenstore: the wire protocol, the shared ring, a client over the ring or a
//! byte stream, and the wait
//! for a store that comes up after the domain starts
//! (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt,
//! docs/misc/xenstore-ring.txt, docs/features/dom0less.pandoc).

pub mod client;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(any(test, feature = "fake"))]
pub mod fake_stream;
pub mod late;
pub mod ring;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
pub mod wire;
