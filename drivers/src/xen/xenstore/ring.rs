//! The xenstore ring page shared with xenstored (xen/include/public/io/xs_wire.h
//! `struct xenstore_domain_interface`, docs/misc/xenstore-ring.txt).
//!
//! Two byte queues of 1024 bytes, requests from the guest and responses (replies
//! and watch events) from xenstored, each with a free-running 32-bit producer and
//! consumer index; byte `x` of a stream lives at `x & 1023`. The peer writes the
//! page concurrently, so every access is atomic: a producer publishes its index
//! with release ordering after the data, a consumer reads the producer index with
//! acquire ordering before the data and publishes its own index with release
//! ordering after it has read the data. Indexes come from the peer and are never
//! trusted: a producer more than a ring's size ahead of its consumer is an error,
//! never an access outside the ring.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// `XENSTORE_RING_SIZE`: bytes in each direction.
pub const XENSTORE_RING_SIZE: usize = 1024;

/// `XENSTORE_SERVER_FEATURE_RECONNECTION`: the connection field may be used.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`: the error field is valid.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_SERVER_FEATURE_WATCHDEPTH`: WATCH takes a depth argument.
pub const XENSTORE_SERVER_FEATURE_WATCHDEPTH: u32 = 4;
/// `XENSTORE_SERVER_FEATURE_DOMID_ANY`: permissions may name `DOMID_ANY`.
pub const XENSTORE_SERVER_FEATURE_DOMID_ANY: u32 = 8;

/// `XENSTORE_CONNECTED`: the steady state of the connection field.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`: a reconnection is in progress.
pub const XENSTORE_RECONNECT: u32 = 1;

/// `XENSTORE_ERROR_NONE`.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `XENSTORE_ERROR_COMM`: communication problem (event channel).
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `XENSTORE_ERROR_RINGIDX`: xenstored saw an invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`: protocol violation (payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `struct xenstore_domain_interface`.
#[repr(C)]
pub struct XenstoreInterface {
    /// `req`: requests to xenstored.
    pub(crate) req: [AtomicU8; XENSTORE_RING_SIZE],
    /// `rsp`: replies and watch events from xenstored.
    pub(crate) rsp: [AtomicU8; XENSTORE_RING_SIZE],
    pub(crate) req_cons: AtomicU32,
    pub(crate) req_prod: AtomicU32,
    pub(crate) rsp_cons: AtomicU32,
    pub(crate) rsp_prod: AtomicU32,
    pub(crate) server_features: AtomicU32,
    pub(crate) connection: AtomicU32,
    pub(crate) error: AtomicU32,
    pub(crate) evtchn_port: AtomicU32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(XenstoreInterface, req) == 0);
    assert!(offset_of!(XenstoreInterface, rsp) == 1024);
    assert!(offset_of!(XenstoreInterface, req_cons) == 2048);
    assert!(offset_of!(XenstoreInterface, req_prod) == 2052);
    assert!(offset_of!(XenstoreInterface, rsp_cons) == 2056);
    assert!(offset_of!(XenstoreInterface, rsp_prod) == 2060);
    assert!(offset_of!(XenstoreInterface, server_features) == 2064);
    assert!(offset_of!(XenstoreInterface, connection) == 2068);
    assert!(offset_of!(XenstoreInterface, error) == 2072);
    assert!(offset_of!(XenstoreInterface, evtchn_port) == 2076);
    assert!(size_of::<XenstoreInterface>() == 2080);
};

/// Which of the two queues of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingName {
    /// `req`, written by the guest.
    Request,
    /// `rsp`, written by xenstored.
    Response,
}

/// A ring whose producer index is more than [`XENSTORE_RING_SIZE`] bytes ahead
/// of its consumer index: the page is corrupt and the stream is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexError {
    /// The ring concerned.
    pub ring: RingName,
    /// Its producer index.
    pub producer: u32,
    /// Its consumer index.
    pub consumer: u32,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = match self.ring {
            RingName::Request => "request",
            RingName::Response => "response",
        };
        write!(
            f,
            "{ring} ring producer {} is more than {XENSTORE_RING_SIZE} bytes ahead of consumer {}",
            self.producer, self.consumer
        )
    }
}

/// Bytes between `consumer` and `producer`, checked against the ring size.
fn used(ring: RingName, producer: u32, consumer: u32) -> Result<usize, IndexError> {
    let used = producer.wrapping_sub(consumer) as usize;
    if used > XENSTORE_RING_SIZE {
        return Err(IndexError {
            ring,
            producer,
            consumer,
        });
    }
    Ok(used)
}

/// Copies as much of `bytes` into `ring` as fits and publishes it.
fn produce(
    name: RingName,
    ring: &[AtomicU8; XENSTORE_RING_SIZE],
    consumer: &AtomicU32,
    producer: &AtomicU32,
    bytes: &[u8],
) -> Result<usize, IndexError> {
    // Acquire: the peer has finished reading the bytes it consumed before we
    // overwrite them.
    let cons = consumer.load(Ordering::Acquire);
    let prod = producer.load(Ordering::Relaxed);
    let free = XENSTORE_RING_SIZE - used(name, prod, cons)?;
    let count = free.min(bytes.len());
    for (offset, &byte) in bytes[..count].iter().enumerate() {
        let index = prod.wrapping_add(offset as u32) as usize & (XENSTORE_RING_SIZE - 1);
        ring[index].store(byte, Ordering::Relaxed);
    }
    // Release: the data is visible before the new producer index.
    producer.store(prod.wrapping_add(count as u32), Ordering::Release);
    Ok(count)
}

/// Takes up to `buffer.len()` bytes out of `ring`.
fn consume(
    name: RingName,
    ring: &[AtomicU8; XENSTORE_RING_SIZE],
    consumer: &AtomicU32,
    producer: &AtomicU32,
    buffer: &mut [u8],
) -> Result<usize, IndexError> {
    // Acquire: the data is read after the producer index that covers it.
    let prod = producer.load(Ordering::Acquire);
    let cons = consumer.load(Ordering::Relaxed);
    let count = used(name, prod, cons)?.min(buffer.len());
    for (offset, slot) in buffer[..count].iter_mut().enumerate() {
        let index = cons.wrapping_add(offset as u32) as usize & (XENSTORE_RING_SIZE - 1);
        *slot = ring[index].load(Ordering::Relaxed);
    }
    // Release: our reads are done before the peer may overwrite the bytes.
    consumer.store(cons.wrapping_add(count as u32), Ordering::Release);
    Ok(count)
}

impl XenstoreInterface {
    /// A zeroed page, as the domain builder leaves it (for tests and fakes; the
    /// guest uses the page at `HVM_PARAM_STORE_PFN`).
    pub const fn new() -> Self {
        XenstoreInterface {
            req: [const { AtomicU8::new(0) }; XENSTORE_RING_SIZE],
            rsp: [const { AtomicU8::new(0) }; XENSTORE_RING_SIZE],
            req_cons: AtomicU32::new(0),
            req_prod: AtomicU32::new(0),
            rsp_cons: AtomicU32::new(0),
            rsp_prod: AtomicU32::new(0),
            server_features: AtomicU32::new(0),
            connection: AtomicU32::new(0),
            error: AtomicU32::new(0),
            evtchn_port: AtomicU32::new(0),
        }
    }

    /// Guest side: copies as much of `bytes` into the request ring as fits and
    /// publishes it; returns how many bytes were taken. The caller notifies the
    /// event channel afterwards.
    pub fn write_request(&self, bytes: &[u8]) -> Result<usize, IndexError> {
        produce(
            RingName::Request,
            &self.req,
            &self.req_cons,
            &self.req_prod,
            bytes,
        )
    }

    /// Guest side: takes up to `buffer.len()` bytes from the response ring;
    /// returns the count. The caller notifies the event channel afterwards so
    /// that xenstored may refill the ring.
    pub fn read_response(&self, buffer: &mut [u8]) -> Result<usize, IndexError> {
        consume(
            RingName::Response,
            &self.rsp,
            &self.rsp_cons,
            &self.rsp_prod,
            buffer,
        )
    }

    /// xenstored side: takes up to `buffer.len()` bytes from the request ring
    /// (for fakes playing xenstored).
    pub fn read_request(&self, buffer: &mut [u8]) -> Result<usize, IndexError> {
        consume(
            RingName::Request,
            &self.req,
            &self.req_cons,
            &self.req_prod,
            buffer,
        )
    }

    /// xenstored side: copies as much of `bytes` into the response ring as fits
    /// (for fakes playing xenstored).
    pub fn write_response(&self, bytes: &[u8]) -> Result<usize, IndexError> {
        produce(
            RingName::Response,
            &self.rsp,
            &self.rsp_cons,
            &self.rsp_prod,
            bytes,
        )
    }

    /// `server_features`: `XENSTORE_SERVER_FEATURE_*` bits.
    pub fn server_features(&self) -> u32 {
        self.server_features.load(Ordering::Acquire)
    }

    /// `connection`: [`XENSTORE_CONNECTED`] or [`XENSTORE_RECONNECT`], valid
    /// only with [`XENSTORE_SERVER_FEATURE_RECONNECTION`].
    pub fn connection(&self) -> u32 {
        self.connection.load(Ordering::Acquire)
    }

    /// `error`: `XENSTORE_ERROR_*`, valid only with
    /// [`XENSTORE_SERVER_FEATURE_ERROR`].
    pub fn error(&self) -> u32 {
        self.error.load(Ordering::Acquire)
    }

    /// The connection error xenstored reports, if it advertises the error
    /// field and set it: xenstored has stopped serving this ring.
    pub fn reported_error(&self) -> Option<u32> {
        let supported = self.server_features() & XENSTORE_SERVER_FEATURE_ERROR != 0;
        let error = self.error();
        (supported && error != XENSTORE_ERROR_NONE).then_some(error)
    }

    /// `evtchn_port`: the event channel Xen filled in for dom0less domains, 0
    /// when unused.
    pub fn evtchn_port(&self) -> u32 {
        self.evtchn_port.load(Ordering::Acquire)
    }
}

impl Default for XenstoreInterface {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    fn page() -> Box<XenstoreInterface> {
        Box::new(XenstoreInterface::new())
    }

    fn page_bytes(page: &XenstoreInterface) -> &[u8] {
        // SAFETY: the interface is plain bytes and integers; reading it as bytes
        // while no one writes is sound.
        unsafe {
            core::slice::from_raw_parts(
                core::ptr::from_ref(page).cast::<u8>(),
                core::mem::size_of::<XenstoreInterface>(),
            )
        }
    }

    fn word(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes([
            bytes[offset],
            bytes[offset + 1],
            bytes[offset + 2],
            bytes[offset + 3],
        ])
    }

    #[test]
    fn requests_land_at_the_header_offsets() {
        let page = page();
        assert_eq!(page.write_request(b"abc"), Ok(3));
        let bytes = page_bytes(&page);
        assert_eq!(&bytes[0..3], b"abc");
        assert_eq!(word(bytes, 2052), 3); // req_prod
        assert_eq!(word(bytes, 2048), 0); // req_cons
    }

    #[test]
    fn responses_are_read_from_the_header_offsets() {
        let page = page();
        page.rsp[0].store(b'O', Ordering::Relaxed);
        page.rsp[1].store(b'K', Ordering::Relaxed);
        page.rsp_prod.store(2, Ordering::Release);
        let mut buffer = [0u8; 8];
        assert_eq!(page.read_response(&mut buffer), Ok(2));
        assert_eq!(&buffer[..2], b"OK");
        assert_eq!(word(page_bytes(&page), 2056), 2); // rsp_cons
        assert_eq!(page.read_response(&mut buffer), Ok(0));
    }

    #[test]
    fn status_fields_are_at_the_header_offsets() {
        let page = page();
        page.server_features.store(3, Ordering::Relaxed);
        page.connection.store(1, Ordering::Relaxed);
        page.error.store(2, Ordering::Relaxed);
        page.evtchn_port.store(9, Ordering::Relaxed);
        let bytes = page_bytes(&page);
        assert_eq!(
            [
                word(bytes, 2064),
                word(bytes, 2068),
                word(bytes, 2072),
                word(bytes, 2076)
            ],
            [3, 1, 2, 9]
        );
        assert_eq!(page.server_features(), 3);
        assert_eq!(page.connection(), XENSTORE_RECONNECT);
        assert_eq!(page.evtchn_port(), 9);
        assert_eq!(page.reported_error(), Some(XENSTORE_ERROR_RINGIDX));
        page.server_features.store(1, Ordering::Relaxed);
        assert_eq!(page.reported_error(), None);
    }

    #[test]
    fn a_full_ring_takes_only_what_fits() {
        let page = page();
        let big = vec![7u8; XENSTORE_RING_SIZE + 100];
        assert_eq!(page.write_request(&big), Ok(XENSTORE_RING_SIZE));
        assert_eq!(page.write_request(b"x"), Ok(0));
        let mut buffer = vec![0u8; 600];
        assert_eq!(page.read_request(&mut buffer), Ok(600));
        assert_eq!(page.write_request(&big), Ok(600));
    }

    #[test]
    fn indexes_wrap_around_u32_and_the_mask() {
        let page = page();
        let start = u32::MAX - 4;
        for index in [&page.rsp_cons, &page.rsp_prod] {
            index.store(start, Ordering::Relaxed);
        }
        let message: Vec<u8> = (0..20).collect();
        assert_eq!(page.write_response(&message), Ok(20));
        assert_eq!(page.rsp_prod.load(Ordering::Relaxed), 15);
        // Byte `x` of the stream sits at `x & 1023`: 0xffff_fffb & 1023 = 1019.
        assert_eq!(page.rsp[1019].load(Ordering::Relaxed), 0);
        assert_eq!(page.rsp[1023].load(Ordering::Relaxed), 4);
        assert_eq!(page.rsp[0].load(Ordering::Relaxed), 5);
        let mut buffer = [0u8; 32];
        assert_eq!(page.read_response(&mut buffer), Ok(20));
        assert_eq!(&buffer[..20], &message[..]);
    }

    #[test]
    fn a_response_producer_past_the_ring_is_an_error() {
        let page = page();
        page.rsp_cons.store(10, Ordering::Relaxed);
        page.rsp_prod.store(10 + 1025, Ordering::Relaxed);
        let mut buffer = [0u8; 4096];
        assert_eq!(
            page.read_response(&mut buffer),
            Err(IndexError {
                ring: RingName::Response,
                producer: 1035,
                consumer: 10
            })
        );
        // A consumer ahead of the producer is the same corruption.
        page.rsp_prod.store(9, Ordering::Relaxed);
        assert!(page.read_response(&mut buffer).is_err());
        assert_eq!(page.rsp_cons.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn a_request_consumer_past_the_producer_never_overwrites() {
        let page = page();
        page.req_cons.store(100, Ordering::Relaxed);
        let error = page.write_request(b"data").unwrap_err();
        assert_eq!(error.ring, RingName::Request);
        assert_eq!(page.req_prod.load(Ordering::Relaxed), 0);
        assert_eq!(
            std::string::ToString::to_string(&error),
            "request ring producer 0 is more than 1024 bytes ahead of consumer 100"
        );
    }

    #[test]
    fn exactly_a_full_ring_is_valid() {
        let page = page();
        page.rsp_prod.store(1024, Ordering::Relaxed);
        let mut buffer = vec![0u8; 2048];
        assert_eq!(page.read_response(&mut buffer), Ok(1024));
    }
}
