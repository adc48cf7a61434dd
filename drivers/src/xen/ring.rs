//! Shared rings between a frontend and a backend (xen/include/public/io/ring.h)
//! and the displif event page (io/displif.h `struct xendispl_event_page`).
//!
//! A request ring page starts with a 64-byte header (`req_prod` @0,
//! `req_event` @4, `rsp_prod` @8, `rsp_event` @12) followed by slots sized
//! for the larger of request and response, as many as fit rounded down to a
//! power of two. Indexes are free-running 32-bit counters. Slots are copied
//! as 64-bit atomic words so no access to the shared page is a data race, and
//! producer indexes are published with release ordering after the slot
//! contents. Nothing read from the page is trusted: an index that claims more
//! entries than can exist is an error, never an out-of-bounds access.

extern crate alloc;

use alloc::boxed::Box;
use core::fmt;
use core::ops::Deref;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Size of one slot and of every displif request, response and event.
pub const SLOT_SIZE: usize = 64;
const SLOT_WORDS: usize = SLOT_SIZE / 8;
/// Slots in a one-page ring of 64-byte entries: (4096 - 64) / 64 = 63,
/// rounded down to a power of two.
pub const RING_SLOTS: usize = 32;
/// Events in the displif event page: (4096 - 64) / 64, used with `%`.
pub const EVENT_SLOTS: usize = 63;

/// One 64-byte message.
pub type Slot = [u8; SLOT_SIZE];

#[repr(C)]
struct SlotWords([AtomicU64; SLOT_WORDS]);

const fn empty_slot() -> SlotWords {
    SlotWords([const { AtomicU64::new(0) }; SLOT_WORDS])
}

impl SlotWords {
    fn store(&self, message: &Slot) {
        for (word, bytes) in self.0.iter().zip(message.chunks_exact(8)) {
            let mut value = [0u8; 8];
            value.copy_from_slice(bytes);
            word.store(u64::from_le_bytes(value), Ordering::Relaxed);
        }
    }

    fn load(&self) -> Slot {
        let mut message = [0u8; SLOT_SIZE];
        for (word, bytes) in self.0.iter().zip(message.chunks_exact_mut(8)) {
            bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        message
    }
}

/// `struct xen_displif_sring`: a request/response ring filling one page.
#[repr(C)]
pub struct SharedRing {
    req_prod: AtomicU32,
    req_event: AtomicU32,
    rsp_prod: AtomicU32,
    rsp_event: AtomicU32,
    _pad: [u8; 48],
    slots: [SlotWords; RING_SLOTS],
}

/// `struct xendispl_event_page` followed by its event ring.
#[repr(C)]
pub struct EventPage {
    in_cons: AtomicU32,
    in_prod: AtomicU32,
    _reserved: [u8; 56],
    slots: [SlotWords; EVENT_SLOTS],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(SharedRing, req_event) == 4);
    assert!(offset_of!(SharedRing, rsp_prod) == 8);
    assert!(offset_of!(SharedRing, rsp_event) == 12);
    assert!(offset_of!(SharedRing, slots) == 64);
    assert!(size_of::<SharedRing>() == 64 + 32 * 64);
    assert!(offset_of!(EventPage, in_prod) == 4);
    assert!(offset_of!(EventPage, slots) == 64);
    assert!(size_of::<EventPage>() == 4096);
    assert!(size_of::<RingPage>() == 4096 && core::mem::align_of::<RingPage>() == 4096);
    assert!(size_of::<EventFrame>() == 4096 && core::mem::align_of::<EventFrame>() == 4096);
};

/// A page-aligned page on the heap that dereferences to what it holds, so
/// that rings can own their pages.
pub struct PageBox<P>(Box<P>);

impl<P> PageBox<P> {
    /// Holds `page`, a page-aligned page-sized value.
    pub(crate) fn from_box(page: Box<P>) -> Self {
        PageBox(page)
    }

    /// The page's address.
    pub fn address(&self) -> usize {
        core::ptr::from_ref(&*self.0) as usize
    }
}

impl<P: Deref> Deref for PageBox<P> {
    type Target = P::Target;
    fn deref(&self) -> &P::Target {
        &self.0
    }
}

/// A [`SharedRing`] alone in a page-aligned page, as it is granted.
#[repr(C, align(4096))]
pub struct RingPage {
    ring: SharedRing,
    _rest: [u8; 4096 - core::mem::size_of::<SharedRing>()],
}

impl RingPage {
    /// A zeroed page on the heap.
    pub fn new_boxed() -> PageBox<RingPage> {
        PageBox(Box::new(RingPage {
            ring: SharedRing {
                req_prod: AtomicU32::new(0),
                req_event: AtomicU32::new(0),
                rsp_prod: AtomicU32::new(0),
                rsp_event: AtomicU32::new(0),
                _pad: [0; 48],
                slots: [const { empty_slot() }; RING_SLOTS],
            },
            _rest: [0; 4096 - core::mem::size_of::<SharedRing>()],
        }))
    }
}

impl Deref for RingPage {
    type Target = SharedRing;
    fn deref(&self) -> &SharedRing {
        &self.ring
    }
}

/// An [`EventPage`] in a page-aligned page, as it is granted.
#[repr(C, align(4096))]
pub struct EventFrame(EventPage);

impl EventFrame {
    /// A zeroed page on the heap.
    pub fn new_boxed() -> PageBox<EventFrame> {
        PageBox(Box::new(EventFrame(EventPage {
            in_cons: AtomicU32::new(0),
            in_prod: AtomicU32::new(0),
            _reserved: [0; 56],
            slots: [const { empty_slot() }; EVENT_SLOTS],
        })))
    }
}

impl Deref for EventFrame {
    type Target = EventPage;
    fn deref(&self) -> &EventPage {
        &self.0
    }
}

/// A ring index that cannot be right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The peer's producer index claims more entries than it may have
    /// produced.
    ProducerPastRing {
        /// Which index.
        index: &'static str,
        /// Our consumer index.
        consumer: u32,
        /// The peer's producer index.
        producer: u32,
    },
    /// No free slot.
    Full,
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RingError::ProducerPastRing {
                index,
                consumer,
                producer,
            } => write!(
                f,
                "{index} {producer} is past the ring (consumer at {consumer})"
            ),
            RingError::Full => write!(f, "the ring is full"),
        }
    }
}

impl SharedRing {
    /// `SHARED_RING_INIT`: empty, events requested for the first entry.
    pub fn init(&self) {
        self.req_prod.store(0, Ordering::Relaxed);
        self.rsp_prod.store(0, Ordering::Relaxed);
        self.req_event.store(1, Ordering::Relaxed);
        self.rsp_event.store(1, Ordering::Relaxed);
        fence(Ordering::Release);
    }
}

/// Stores a raw page image (zero-padded to 4096 bytes) into `indexes` (the
/// 32-bit words at offsets 0, 4, ...) and `slots` (from offset 64): what a
/// hostile peer can make the page hold. Test and fuzzing helper.
#[cfg(any(test, feature = "fake"))]
fn overwrite_page(indexes: &[&AtomicU32], slots: &[SlotWords], bytes: &[u8]) {
    let mut page = [0u8; 4096];
    let count = bytes.len().min(page.len());
    page[..count].copy_from_slice(&bytes[..count]);
    for (index, chunk) in indexes.iter().zip(page.chunks_exact(4)) {
        index.store(
            u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            Ordering::Relaxed,
        );
    }
    for (slot, chunk) in slots.iter().zip(page[64..].chunks_exact(SLOT_SIZE)) {
        let mut message = [0u8; SLOT_SIZE];
        message.copy_from_slice(chunk);
        slot.store(&message);
    }
    fence(Ordering::Release);
}

#[cfg(any(test, feature = "fake"))]
impl SharedRing {
    /// Makes the page hold `bytes` (zero-padded), as a hostile peer could:
    /// `req_prod`, `req_event`, `rsp_prod`, `rsp_event` from the first 16
    /// bytes, the slots from offset 64. Test and fuzzing helper.
    pub fn overwrite_raw(&self, bytes: &[u8]) {
        let indexes = [
            &self.req_prod,
            &self.req_event,
            &self.rsp_prod,
            &self.rsp_event,
        ];
        overwrite_page(&indexes, &self.slots, bytes);
    }
}

#[cfg(any(test, feature = "fake"))]
impl EventPage {
    /// Makes the page hold `bytes` (zero-padded), as a hostile backend
    /// could: `in_cons` and `in_prod` from the first 8 bytes, the events
    /// from offset 64. Test and fuzzing helper.
    pub fn overwrite_raw(&self, bytes: &[u8]) {
        overwrite_page(&[&self.in_cons, &self.in_prod], &self.slots, bytes);
    }
}

/// The frontend's side of a ring: produces requests, consumes responses.
pub struct FrontRing<R: Deref<Target = SharedRing>> {
    shared: R,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl<R: Deref<Target = SharedRing>> FrontRing<R> {
    /// The shared page.
    pub fn shared(&self) -> &SharedRing {
        &self.shared
    }

    /// The shared page back, once the ring is done with.
    pub fn into_shared(self) -> R {
        self.shared
    }

    /// `FRONT_RING_INIT` over a ring just set up with [`SharedRing::init`].
    pub fn new(shared: R) -> Self {
        FrontRing {
            shared,
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    /// Requests that can be queued now.
    pub fn free_requests(&self) -> usize {
        RING_SLOTS - self.req_prod_pvt.wrapping_sub(self.rsp_cons) as usize
    }

    /// Requests sent whose responses have not been consumed.
    pub fn outstanding(&self) -> usize {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons) as usize
    }

    /// Queues a request (not yet visible to the backend: see
    /// [`FrontRing::publish`]).
    pub fn push_request(&mut self, request: &Slot) -> Result<(), RingError> {
        if self.free_requests() == 0 {
            return Err(RingError::Full);
        }
        self.shared.slots[self.req_prod_pvt as usize % RING_SLOTS].store(request);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes queued requests and
    /// says whether the backend asked to be notified.
    pub fn publish(&mut self) -> bool {
        let old = self.shared.req_prod.load(Ordering::Relaxed);
        let new = self.req_prod_pvt;
        self.shared.req_prod.store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = self.shared.req_event.load(Ordering::Relaxed);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    fn responses_available(&self) -> Result<u32, RingError> {
        let producer = self.shared.rsp_prod.load(Ordering::Acquire);
        let available = producer.wrapping_sub(self.rsp_cons);
        if available as usize > self.outstanding() {
            return Err(RingError::ProducerPastRing {
                index: "rsp_prod",
                consumer: self.rsp_cons,
                producer,
            });
        }
        Ok(available)
    }

    /// Takes the next response, if the backend has produced one.
    pub fn take_response(&mut self) -> Result<Option<Slot>, RingError> {
        if self.responses_available()? == 0 {
            return Ok(None);
        }
        let response = self.shared.slots[self.rsp_cons as usize % RING_SLOTS].load();
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(response))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: asks for a notification on the next
    /// response and says whether one arrived meanwhile.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.responses_available()? > 0 {
            return Ok(true);
        }
        self.shared
            .rsp_event
            .store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.responses_available()? > 0)
    }
}

/// The backend's side of a ring: consumes requests, produces responses.
pub struct BackRing<R: Deref<Target = SharedRing>> {
    shared: R,
    rsp_prod_pvt: u32,
    req_cons: u32,
}

impl<R: Deref<Target = SharedRing>> BackRing<R> {
    /// `BACK_RING_INIT` over a ring the frontend initialised.
    pub fn new(shared: R) -> Self {
        BackRing {
            shared,
            rsp_prod_pvt: 0,
            req_cons: 0,
        }
    }

    fn requests_available(&self) -> Result<u32, RingError> {
        let producer = self.shared.req_prod.load(Ordering::Acquire);
        let available = producer.wrapping_sub(self.req_cons);
        let unanswered = self.req_cons.wrapping_sub(self.rsp_prod_pvt) as usize;
        if available as usize + unanswered > RING_SLOTS {
            return Err(RingError::ProducerPastRing {
                index: "req_prod",
                consumer: self.req_cons,
                producer,
            });
        }
        Ok(available)
    }

    /// Takes the next request, if the frontend has produced one.
    pub fn take_request(&mut self) -> Result<Option<Slot>, RingError> {
        if self.requests_available()? == 0 {
            return Ok(None);
        }
        let request = self.shared.slots[self.req_cons as usize % RING_SLOTS].load();
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(request))
    }

    /// Queues a response into the slot of the oldest unanswered request.
    pub fn push_response(&mut self, response: &Slot) -> Result<(), RingError> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::Full);
        }
        self.shared.slots[self.rsp_prod_pvt as usize % RING_SLOTS].store(response);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
    pub fn publish(&mut self) -> bool {
        let old = self.shared.rsp_prod.load(Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        self.shared.rsp_prod.store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        let event = self.shared.rsp_event.load(Ordering::Relaxed);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Moves the shared `rsp_prod` `ahead` entries past its value, as a
    /// broken backend would (fault injection); returns the new value.
    pub fn force_rsp_prod(&mut self, ahead: u32) -> u32 {
        let value = self
            .shared
            .rsp_prod
            .load(Ordering::Relaxed)
            .wrapping_add(ahead);
        self.shared.rsp_prod.store(value, Ordering::Release);
        value
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.requests_available()? > 0 {
            return Ok(true);
        }
        self.shared
            .req_event
            .store(self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Ok(self.requests_available()? > 0)
    }
}

/// The indexes of an in ring whose slots are indexed with `%` (displif's
/// event page, kbdif's input page): `in_prod` read with acquire ordering
/// before a slot, `in_cons` published with release ordering after it, and a
/// producer more than a ring ahead an error, never an out-of-bounds slot.
pub(crate) struct InRing<'a> {
    pub(crate) cons: &'a AtomicU32,
    pub(crate) prod: &'a AtomicU32,
    pub(crate) len: usize,
}

impl InRing<'_> {
    /// Frontend: the slot of the next event and the consumer index, if any.
    pub(crate) fn next(&self) -> Result<Option<(usize, u32)>, RingError> {
        let producer = self.prod.load(Ordering::Acquire);
        let consumer = self.cons.load(Ordering::Relaxed);
        let available = producer.wrapping_sub(consumer);
        if available as usize > self.len {
            return Err(RingError::ProducerPastRing {
                index: "in_prod",
                consumer,
                producer,
            });
        }
        if available == 0 {
            return Ok(None);
        }
        Ok(Some((consumer as usize % self.len, consumer)))
    }

    /// Frontend: the event at `consumer` was read; the backend may reuse
    /// its slot.
    pub(crate) fn consumed(&self, consumer: u32) {
        self.cons.store(consumer.wrapping_add(1), Ordering::Release);
    }

    /// Backend: the slot for the next event and the producer index, or
    /// [`RingError::Full`] while the frontend has a ring's worth to read.
    pub(crate) fn free_slot(&self) -> Result<(usize, u32), RingError> {
        let producer = self.prod.load(Ordering::Relaxed);
        let consumer = self.cons.load(Ordering::Acquire);
        if producer.wrapping_sub(consumer) as usize >= self.len {
            return Err(RingError::Full);
        }
        Ok((producer as usize % self.len, producer))
    }

    /// Backend: the event at `producer` is written; the frontend may read
    /// it.
    pub(crate) fn produced(&self, producer: u32) {
        self.prod.store(producer.wrapping_add(1), Ordering::Release);
    }
}

impl EventPage {
    /// Empties the page (frontend, before publishing it).
    pub fn init(&self) {
        self.in_cons.store(0, Ordering::Relaxed);
        self.in_prod.store(0, Ordering::Release);
    }

    fn indexes(&self) -> InRing<'_> {
        InRing {
            cons: &self.in_cons,
            prod: &self.in_prod,
            len: EVENT_SLOTS,
        }
    }

    /// Frontend: takes the next event, if any. Slots are indexed with `%`
    /// as displif.h's `XENDISPL_IN_RING_REF` does.
    pub fn take_event(&self) -> Result<Option<Slot>, RingError> {
        let ring = self.indexes();
        let Some((slot, consumer)) = ring.next()? else {
            return Ok(None);
        };
        let event = self.slots[slot].load();
        ring.consumed(consumer);
        Ok(Some(event))
    }

    /// Backend: adds an event; [`RingError::Full`] when the frontend has
    /// not consumed the last 63.
    pub fn push_event(&self, event: &Slot) -> Result<(), RingError> {
        let ring = self.indexes();
        let (slot, producer) = ring.free_slot()?;
        self.slots[slot].store(event);
        ring.produced(producer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn ring() -> Box<SharedRing> {
        // SAFETY: zero is valid for every atomic and byte of the page.
        let ring: Box<SharedRing> = unsafe { Box::new(core::mem::zeroed()) };
        ring.init();
        ring
    }

    fn bytes_of<T>(value: &T) -> &[u8] {
        // SAFETY: the ring types are plain integers; read while no one writes.
        unsafe {
            core::slice::from_raw_parts(
                core::ptr::from_ref(value).cast(),
                core::mem::size_of::<T>(),
            )
        }
    }

    fn message(tag: u8) -> Slot {
        let mut slot = [0u8; SLOT_SIZE];
        slot[0] = tag;
        slot[63] = !tag;
        slot
    }

    #[test]
    fn request_lands_in_slot_zero_after_the_header_and_notifies_once() {
        let shared = ring();
        let mut front = FrontRing::new(&*shared);
        front.push_request(&message(7)).unwrap();
        assert!(front.publish(), "req_event = 1 asks for the first request");
        let bytes = bytes_of(&*shared);
        assert_eq!(&bytes[0..4], &1u32.to_le_bytes(), "req_prod");
        assert_eq!(bytes[64], 7);
        assert_eq!(bytes[127], !7);
        front.push_request(&message(8)).unwrap();
        assert!(!front.publish(), "no new req_event: no notification");
    }

    #[test]
    fn round_trip_with_the_back_ring_and_wrap_around() {
        let shared = ring();
        let mut front = FrontRing::new(&*shared);
        let mut back = BackRing::new(&*shared);
        for round in 0..100u8 {
            front.push_request(&message(round)).unwrap();
            front.publish();
            let request = back.take_request().unwrap().unwrap();
            assert_eq!(request[0], round);
            back.push_response(&message(round.wrapping_add(1))).unwrap();
            back.publish();
            assert_eq!(
                front.take_response().unwrap().unwrap()[0],
                round.wrapping_add(1)
            );
            assert_eq!(front.take_response().unwrap(), None);
        }
    }

    #[test]
    fn full_ring_refuses_more_requests() {
        let shared = ring();
        let mut front = FrontRing::new(&*shared);
        for index in 0..RING_SLOTS {
            front.push_request(&message(index as u8)).unwrap();
        }
        assert_eq!(front.push_request(&message(0)), Err(RingError::Full));
        assert_eq!(front.free_requests(), 0);
    }

    #[test]
    fn response_producer_past_the_outstanding_requests_is_an_error() {
        let shared = ring();
        let mut front = FrontRing::new(&*shared);
        front.push_request(&message(1)).unwrap();
        front.publish();
        shared.rsp_prod.store(5, Ordering::SeqCst);
        assert_eq!(
            front.take_response(),
            Err(RingError::ProducerPastRing {
                index: "rsp_prod",
                consumer: 0,
                producer: 5
            })
        );
        shared.rsp_prod.store(u32::MAX, Ordering::SeqCst);
        assert!(front.final_check_for_responses().is_err());
    }

    #[test]
    fn a_forced_response_producer_lands_at_offset_8_and_the_frontend_refuses_it() {
        let shared = ring();
        let mut front = FrontRing::new(&*shared);
        let mut back = BackRing::new(&*shared);
        front.push_request(&message(1)).unwrap();
        front.publish();
        back.take_request().unwrap();
        back.push_response(&message(2)).unwrap();
        back.publish();
        assert_eq!(back.force_rsp_prod(1000), 1001);
        // io/ring.h: rsp_prod is the third u32 of the page.
        assert_eq!(bytes_of(&*shared)[8..12], 1001u32.to_le_bytes());
        assert_eq!(
            front.take_response(),
            Err(RingError::ProducerPastRing {
                index: "rsp_prod",
                consumer: 0,
                producer: 1001
            })
        );
    }

    #[test]
    fn request_producer_past_the_ring_is_an_error_for_the_backend() {
        let shared = ring();
        let mut back = BackRing::new(&*shared);
        shared.req_prod.store(33, Ordering::SeqCst);
        assert!(matches!(
            back.take_request(),
            Err(RingError::ProducerPastRing { .. })
        ));
    }

    #[test]
    fn final_check_sets_the_event_index() {
        let shared = ring();
        let mut front = FrontRing::new(&*shared);
        assert_eq!(front.final_check_for_responses(), Ok(false));
        assert_eq!(shared.rsp_event.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn page_boxes_are_aligned_zeroed_pages_that_reach_the_ring() {
        let page = RingPage::new_boxed();
        assert_eq!(page.address() % 4096, 0);
        assert_eq!(page.req_prod.load(Ordering::SeqCst), 0);
        page.init();
        let mut front = FrontRing::new(page);
        front.push_request(&message(1)).unwrap();
        assert!(front.publish());
        let events = EventFrame::new_boxed();
        assert_eq!(events.address() % 4096, 0);
        assert_eq!(events.take_event(), Ok(None));
    }

    #[test]
    fn event_page_uses_63_slots_with_modulo_indexing() {
        // SAFETY: zero is valid for the event page.
        let page: Box<EventPage> = unsafe { Box::new(core::mem::zeroed()) };
        page.init();
        for round in 0..200u32 {
            page.push_event(&message(round as u8)).unwrap();
            let slot = (round as usize) % EVENT_SLOTS;
            assert_eq!(bytes_of(&*page)[64 + slot * 64], round as u8);
            assert_eq!(page.take_event().unwrap().unwrap()[0], round as u8);
        }
        assert_eq!(page.take_event(), Ok(None));
    }

    #[test]
    fn full_event_page_and_hostile_producer() {
        // SAFETY: zero is valid for the event page.
        let page: Box<EventPage> = unsafe { Box::new(core::mem::zeroed()) };
        for index in 0..EVENT_SLOTS {
            page.push_event(&message(index as u8)).unwrap();
        }
        assert_eq!(page.push_event(&message(0)), Err(RingError::Full));
        page.in_prod.store(1000, Ordering::SeqCst);
        assert!(matches!(
            page.take_event(),
            Err(RingError::ProducerPastRing { .. })
        ));
    }

    #[test]
    fn a_raw_page_image_lands_where_the_page_layout_says() {
        let shared = ring();
        let mut image = std::vec![0u8; 4096];
        for (offset, byte) in image.iter_mut().enumerate() {
            *byte = offset as u8 ^ 0x5a;
        }
        shared.overwrite_raw(&image);
        let bytes = bytes_of(&*shared);
        assert_eq!(&bytes[..16], &image[..16], "the four indexes");
        assert_eq!(&bytes[64..], &image[64..bytes.len()], "the slots");

        // SAFETY: zero is valid for every atomic and byte of the page.
        let events: Box<EventPage> = unsafe { Box::new(core::mem::zeroed()) };
        events.overwrite_raw(&[1, 0, 0, 0, 3]);
        let bytes = bytes_of(&*events);
        assert_eq!(&bytes[..8], &[1, 0, 0, 0, 3, 0, 0, 0]);
        assert!(bytes[64..].iter().all(|&byte| byte == 0), "zero-padded");
    }
}
