//! Xenstore: the wire protocol and the shared ring
//! (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt,
//! docs/misc/xenstore-ring.txt).

pub mod ring;
pub mod wire;
