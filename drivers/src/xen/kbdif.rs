//! The virtual keyboard, pointer and multi-touch protocol
//! (xen/include/public/io/kbdif.h): the xenstore fields, the 40-byte input
//! events and the shared page that carries them from the backend to the
//! frontend.
//!
//! The page starts with four 32-bit indexes (`in_cons` @0, `in_prod` @4,
//! `out_cons` @8, `out_prod` @12); the in ring holds 51 events of 40 bytes
//! at offset 1024 (indexed with `%`, as `XENKBD_IN_RING_REF` does), the out
//! ring 25 at offset 3072 (no out event is defined). Events are copied as
//! 64-bit atomic words, so no access to the shared page is a data race; the
//! producer index is published with release ordering after the event, and
//! read with acquire ordering before it. Nothing read from the page is
//! trusted: a producer index more than a ring ahead is an overrun, reported
//! and skipped, never an out-of-bounds access.

extern crate alloc;

pub mod script;

use super::ring::{InRing, PageBox, RingError};
use alloc::boxed::Box;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes of every in and out event.
pub const EVENT_SIZE: usize = 40;
/// Where the in ring starts in the page.
pub const IN_RING_OFFSET: usize = 1024;
/// Events in the in ring: 2048 / 40.
pub const IN_RING_LEN: usize = 2048 / EVENT_SIZE;
/// Where the out ring starts in the page.
pub const OUT_RING_OFFSET: usize = IN_RING_OFFSET + 2048;
/// Events in the out ring: 1024 / 40.
pub const OUT_RING_LEN: usize = 1024 / EVENT_SIZE;

/// One 40-byte event.
pub type RawEvent = [u8; EVENT_SIZE];

/// `XENKBD_TYPE_MOTION`: relative pointer movement.
pub const TYPE_MOTION: u8 = 1;
/// `XENKBD_TYPE_RESERVED`: never sent.
pub const TYPE_RESERVED: u8 = 2;
/// `XENKBD_TYPE_KEY`: a key or pointer button.
pub const TYPE_KEY: u8 = 3;
/// `XENKBD_TYPE_POS`: absolute pointer position.
pub const TYPE_POS: u8 = 4;
/// `XENKBD_TYPE_MTOUCH`: a multi-touch event.
pub const TYPE_MTOUCH: u8 = 5;

/// `XENKBD_MT_EV_DOWN`.
pub const MT_EV_DOWN: u8 = 0;
/// `XENKBD_MT_EV_UP`.
pub const MT_EV_UP: u8 = 1;
/// `XENKBD_MT_EV_MOTION`.
pub const MT_EV_MOTION: u8 = 2;
/// `XENKBD_MT_EV_SYN`.
pub const MT_EV_SYN: u8 = 3;
/// `XENKBD_MT_EV_SHAPE`.
pub const MT_EV_SHAPE: u8 = 4;
/// `XENKBD_MT_EV_ORIENT`.
pub const MT_EV_ORIENT: u8 = 5;

/// xenstore field names (`XENKBD_FIELD_*`).
pub mod field {
    /// Backend: the frontend need not expose a keyboard.
    pub const FEAT_DSBL_KEYBRD: &str = "feature-disable-keyboard";
    /// Backend: the frontend need not expose a pointer.
    pub const FEAT_DSBL_POINTER: &str = "feature-disable-pointer";
    /// Backend: it can report absolute pointer positions.
    pub const FEAT_ABS_POINTER: &str = "feature-abs-pointer";
    /// Backend: it can report raw (unscaled) absolute positions.
    pub const FEAT_RAW_POINTER: &str = "feature-raw-pointer";
    /// Backend: it can report multi-touch events.
    pub const FEAT_MTOUCH: &str = "feature-multi-touch";
    /// Frontend: absolute positions instead of relative motion, please.
    pub const REQ_ABS_POINTER: &str = "request-abs-pointer";
    /// Frontend: raw absolute positions, please.
    pub const REQ_RAW_POINTER: &str = "request-raw-pointer";
    /// Frontend: multi-touch events, please.
    pub const REQ_MTOUCH: &str = "request-multi-touch";
    /// Frontend: the grant of the shared page.
    pub const RING_GREF: &str = "page-gref";
    /// Frontend: the event channel.
    pub const EVT_CHANNEL: &str = "event-channel";
    /// Backend: the largest X coordinate of pointer events.
    pub const WIDTH: &str = "width";
    /// Backend: the largest Y coordinate of pointer events.
    pub const HEIGHT: &str = "height";
    /// Backend: the width of the touch area.
    pub const MT_WIDTH: &str = "multi-touch-width";
    /// Backend: the height of the touch area.
    pub const MT_HEIGHT: &str = "multi-touch-height";
    /// Backend: simultaneous contacts reported.
    pub const MT_NUM_CONTACTS: &str = "multi-touch-num-contacts";
    /// The display connector the device belongs to (xl.cfg `vkb=`).
    pub const UNIQUE_ID: &str = "unique-id";
}

/// What a multi-touch event says about its contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// A new contact at (x, y).
    Down {
        /// X in pixels.
        x: i32,
        /// Y in pixels.
        y: i32,
    },
    /// The contact moved to (x, y).
    Motion {
        /// X in pixels.
        x: i32,
        /// Y in pixels.
        y: i32,
    },
    /// The contact was lifted.
    Up,
    /// The end of a set of events that belong together.
    Sync,
    /// The contact's ellipse changed.
    Shape {
        /// The longer axis, pixels.
        major: u32,
        /// The shorter axis, pixels.
        minor: u32,
    },
    /// The ellipse turned: degrees clockwise from the Y axis.
    Orientation(i16),
}

/// One input event, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// Relative pointer movement (and wheel).
    Motion {
        /// X movement.
        rel_x: i32,
        /// Y movement.
        rel_y: i32,
        /// Wheel movement.
        rel_z: i32,
    },
    /// A key or pointer button (`KEY_*`/`BTN_*` codes of linux/input.h).
    Key {
        /// Pressed (true) or released.
        pressed: bool,
        /// The code.
        keycode: u32,
    },
    /// Absolute pointer position (and wheel).
    Position {
        /// X in pixels.
        x: i32,
        /// Y in pixels.
        y: i32,
        /// Wheel movement.
        rel_z: i32,
    },
    /// A multi-touch event of one contact.
    Touch {
        /// The contact's id.
        contact: u8,
        /// What happened to it.
        touch: Touch,
    },
}

/// Why an event from the backend cannot be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A key event whose `pressed` is neither 0 nor 1.
    Pressed(u8),
    /// A multi-touch event of an unknown sub-type.
    TouchType(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Pressed(value) => {
                write!(f, "key event with pressed = {value}, neither 0 nor 1")
            }
            DecodeError::TouchType(value) => {
                write!(f, "multi-touch event of unknown sub-type {value}")
            }
        }
    }
}

fn u32_at(raw: &RawEvent, offset: usize) -> u32 {
    u32::from_le_bytes([
        raw[offset],
        raw[offset + 1],
        raw[offset + 2],
        raw[offset + 3],
    ])
}

fn i32_at(raw: &RawEvent, offset: usize) -> i32 {
    u32_at(raw, offset) as i32
}

/// Decodes one event. `Ok(None)` for an event type this frontend does not
/// know, which kbdif.h says to ignore.
pub fn decode(raw: &RawEvent) -> Result<Option<InputEvent>, DecodeError> {
    let event = match raw[0] {
        TYPE_MOTION => InputEvent::Motion {
            rel_x: i32_at(raw, 4),
            rel_y: i32_at(raw, 8),
            rel_z: i32_at(raw, 12),
        },
        TYPE_KEY => InputEvent::Key {
            pressed: match raw[1] {
                0 => false,
                1 => true,
                other => return Err(DecodeError::Pressed(other)),
            },
            keycode: u32_at(raw, 4),
        },
        TYPE_POS => InputEvent::Position {
            x: i32_at(raw, 4),
            y: i32_at(raw, 8),
            rel_z: i32_at(raw, 12),
        },
        TYPE_MTOUCH => InputEvent::Touch {
            contact: raw[2],
            touch: match raw[1] {
                MT_EV_DOWN => Touch::Down {
                    x: i32_at(raw, 8),
                    y: i32_at(raw, 12),
                },
                MT_EV_MOTION => Touch::Motion {
                    x: i32_at(raw, 8),
                    y: i32_at(raw, 12),
                },
                MT_EV_UP => Touch::Up,
                MT_EV_SYN => Touch::Sync,
                MT_EV_SHAPE => Touch::Shape {
                    major: u32_at(raw, 8),
                    minor: u32_at(raw, 12),
                },
                MT_EV_ORIENT => Touch::Orientation(i16::from_le_bytes([raw[8], raw[9]])),
                other => return Err(DecodeError::TouchType(other)),
            },
        },
        _ => return Ok(None),
    };
    Ok(Some(event))
}

/// Encodes one event as the backend puts it on the page (reserved bytes 0).
pub fn encode(event: &InputEvent) -> RawEvent {
    let mut raw = [0u8; EVENT_SIZE];
    let mut put = |offset: usize, value: u32| {
        raw[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    };
    match *event {
        InputEvent::Motion {
            rel_x,
            rel_y,
            rel_z,
        } => {
            put(4, rel_x as u32);
            put(8, rel_y as u32);
            put(12, rel_z as u32);
            raw[0] = TYPE_MOTION;
        }
        InputEvent::Key { pressed, keycode } => {
            put(4, keycode);
            raw[0] = TYPE_KEY;
            raw[1] = u8::from(pressed);
        }
        InputEvent::Position { x, y, rel_z } => {
            put(4, x as u32);
            put(8, y as u32);
            put(12, rel_z as u32);
            raw[0] = TYPE_POS;
        }
        InputEvent::Touch { contact, touch } => {
            let sub = match touch {
                Touch::Down { x, y } | Touch::Motion { x, y } => {
                    put(8, x as u32);
                    put(12, y as u32);
                    if matches!(touch, Touch::Down { .. }) {
                        MT_EV_DOWN
                    } else {
                        MT_EV_MOTION
                    }
                }
                Touch::Up => MT_EV_UP,
                Touch::Sync => MT_EV_SYN,
                Touch::Shape { major, minor } => {
                    put(8, major);
                    put(12, minor);
                    MT_EV_SHAPE
                }
                Touch::Orientation(degrees) => {
                    raw[8..10].copy_from_slice(&degrees.to_le_bytes());
                    MT_EV_ORIENT
                }
            };
            raw[0] = TYPE_MTOUCH;
            raw[1] = sub;
            raw[2] = contact;
        }
    }
    raw
}

#[repr(C)]
struct EventWords([AtomicU64; EVENT_SIZE / 8]);

impl EventWords {
    fn store(&self, event: &RawEvent) {
        for (word, bytes) in self.0.iter().zip(event.chunks_exact(8)) {
            let mut value = [0u8; 8];
            value.copy_from_slice(bytes);
            word.store(u64::from_le_bytes(value), Ordering::Relaxed);
        }
    }

    fn load(&self) -> RawEvent {
        let mut event = [0u8; EVENT_SIZE];
        for (word, bytes) in self.0.iter().zip(event.chunks_exact_mut(8)) {
            bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        event
    }
}

/// `struct xenkbd_page` with its in and out rings: one page.
#[repr(C)]
pub struct KbdPage {
    in_cons: AtomicU32,
    in_prod: AtomicU32,
    out_cons: AtomicU32,
    out_prod: AtomicU32,
    _head: [u8; IN_RING_OFFSET - 16],
    in_ring: [EventWords; IN_RING_LEN],
    _gap: [u8; OUT_RING_OFFSET - IN_RING_OFFSET - IN_RING_LEN * EVENT_SIZE],
    out_ring: [EventWords; OUT_RING_LEN],
    _tail: [u8; 4096 - OUT_RING_OFFSET - OUT_RING_LEN * EVENT_SIZE],
}

const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(KbdPage, in_prod) == 4);
    assert!(offset_of!(KbdPage, out_cons) == 8);
    assert!(offset_of!(KbdPage, out_prod) == 12);
    assert!(offset_of!(KbdPage, in_ring) == 1024);
    assert!(offset_of!(KbdPage, out_ring) == 3072);
    assert!(IN_RING_LEN == 51 && OUT_RING_LEN == 25);
    assert!(size_of::<KbdPage>() == 4096);
    assert!(size_of::<KbdFrame>() == 4096 && align_of::<KbdFrame>() == 4096);
};

/// A [`KbdPage`] in a page-aligned page, as it is granted.
#[repr(C, align(4096))]
pub struct KbdFrame(KbdPage);

impl core::ops::Deref for KbdFrame {
    type Target = KbdPage;
    fn deref(&self) -> &KbdPage {
        &self.0
    }
}

const fn empty_event() -> EventWords {
    EventWords([const { AtomicU64::new(0) }; EVENT_SIZE / 8])
}

impl KbdPage {
    /// A zeroed page on the heap.
    pub fn new_boxed() -> PageBox<KbdFrame> {
        PageBox::from_box(Box::new(KbdFrame(KbdPage {
            in_cons: AtomicU32::new(0),
            in_prod: AtomicU32::new(0),
            out_cons: AtomicU32::new(0),
            out_prod: AtomicU32::new(0),
            _head: [0; IN_RING_OFFSET - 16],
            in_ring: [const { empty_event() }; IN_RING_LEN],
            _gap: [0; OUT_RING_OFFSET - IN_RING_OFFSET - IN_RING_LEN * EVENT_SIZE],
            out_ring: [const { empty_event() }; OUT_RING_LEN],
            _tail: [0; 4096 - OUT_RING_OFFSET - OUT_RING_LEN * EVENT_SIZE],
        })))
    }

    /// Empties both rings (frontend, before publishing the page).
    pub fn init(&self) {
        self.in_cons.store(0, Ordering::Relaxed);
        self.out_prod.store(0, Ordering::Relaxed);
        self.out_cons.store(0, Ordering::Relaxed);
        self.in_prod.store(0, Ordering::Release);
    }

    fn indexes(&self) -> InRing<'_> {
        InRing {
            cons: &self.in_cons,
            prod: &self.in_prod,
            len: IN_RING_LEN,
        }
    }

    /// Frontend: takes the next in event, if any. A producer index more
    /// than a ring ahead is [`RingError::ProducerPastRing`]; the caller
    /// then skips what is there with [`KbdPage::skip_to_producer`].
    pub fn take_event(&self) -> Result<Option<RawEvent>, RingError> {
        let ring = self.indexes();
        let Some((slot, consumer)) = ring.next()? else {
            return Ok(None);
        };
        let event = self.in_ring[slot].load();
        ring.consumed(consumer);
        Ok(Some(event))
    }

    /// Frontend: drops every event up to the producer index (after an
    /// overrun, whose events cannot be told from garbage); returns how many.
    pub fn skip_to_producer(&self) -> u32 {
        let producer = self.in_prod.load(Ordering::Acquire);
        let consumer = self.in_cons.load(Ordering::Relaxed);
        self.in_cons.store(producer, Ordering::Release);
        producer.wrapping_sub(consumer)
    }

    /// Backend: adds an in event; [`RingError::Full`] when the frontend has
    /// not consumed the last 51.
    pub fn push_event(&self, event: &RawEvent) -> Result<(), RingError> {
        let ring = self.indexes();
        let (slot, producer) = ring.free_slot()?;
        self.in_ring[slot].store(event);
        ring.produced(producer);
        Ok(())
    }

    /// Makes the page hold `bytes` (zero-padded), as a hostile backend
    /// could: the four indexes from the first 16 bytes, the in ring from
    /// offset 1024. Test and fuzzing helper.
    #[cfg(any(test, feature = "fake"))]
    pub fn overwrite_raw(&self, bytes: &[u8]) {
        let mut page = [0u8; 4096];
        let count = bytes.len().min(page.len());
        page[..count].copy_from_slice(&bytes[..count]);
        let indexes = [&self.in_cons, &self.in_prod, &self.out_cons, &self.out_prod];
        for (index, chunk) in indexes.iter().zip(page.chunks_exact(4)) {
            index.store(
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                Ordering::Relaxed,
            );
        }
        for (slot, chunk) in self
            .in_ring
            .iter()
            .zip(page[IN_RING_OFFSET..].chunks_exact(EVENT_SIZE))
        {
            let mut event = [0u8; EVENT_SIZE];
            event.copy_from_slice(chunk);
            slot.store(&event);
        }
        core::sync::atomic::fence(Ordering::Release);
    }

    /// Backend: the producer index it last published.
    pub fn producer_index(&self) -> u32 {
        self.in_prod.load(Ordering::Relaxed)
    }

    /// Backend: sets the producer index (a hostile backend's overrun, in
    /// tests and fault injection).
    pub fn force_in_prod(&self, producer: u32) {
        self.in_prod.store(producer, Ordering::Release);
    }
}

/// What the backend advertises for the device (kbdif.h "Backend XenBus
/// Nodes"), which bounds what its events may say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest pointer X (`width`); 0 when not advertised.
    pub width: u32,
    /// Largest pointer Y (`height`); 0 when not advertised.
    pub height: u32,
    /// Width of the touch area (`multi-touch-width`).
    pub mt_width: u32,
    /// Height of the touch area (`multi-touch-height`).
    pub mt_height: u32,
    /// Simultaneous contacts (`multi-touch-num-contacts`).
    pub contacts: u32,
}

/// An event that breaks what the backend advertised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// A coordinate outside `0..=limit`.
    OutOfRange {
        /// Which coordinate.
        what: &'static str,
        /// Its value.
        value: i32,
        /// The largest allowed.
        limit: u32,
    },
    /// A contact id beyond `multi-touch-num-contacts`.
    Contact {
        /// The id.
        contact: u8,
        /// Contacts advertised.
        contacts: u32,
    },
    /// A multi-touch event although multi-touch was not negotiated.
    NoMultiTouch,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EventError::OutOfRange { what, value, limit } => {
                write!(f, "{what} {value} is outside 0..={limit}")
            }
            EventError::Contact { contact, contacts } => write!(
                f,
                "contact {contact} is beyond the {contacts} contacts advertised"
            ),
            EventError::NoMultiTouch => {
                f.write_str("a multi-touch event, but multi-touch was not negotiated")
            }
        }
    }
}

fn within(what: &'static str, value: i32, limit: u32) -> Result<(), EventError> {
    if value < 0 || value as u32 > limit {
        return Err(EventError::OutOfRange { what, value, limit });
    }
    Ok(())
}

impl Limits {
    /// Whether `event` keeps to these limits. A limit of 0 was not
    /// advertised and bounds nothing; touches need `contacts` > 0.
    pub fn check(&self, event: &InputEvent) -> Result<(), EventError> {
        match *event {
            InputEvent::Position { x, y, .. } => {
                if self.width > 0 {
                    within("x", x, self.width)?;
                }
                if self.height > 0 {
                    within("y", y, self.height)?;
                }
                Ok(())
            }
            InputEvent::Touch { contact, touch } => {
                if self.contacts == 0 {
                    return Err(EventError::NoMultiTouch);
                }
                if u32::from(contact) >= self.contacts {
                    return Err(EventError::Contact {
                        contact,
                        contacts: self.contacts,
                    });
                }
                if let Touch::Down { x, y } | Touch::Motion { x, y } = touch {
                    if self.mt_width > 0 {
                        within("touch x", x, self.mt_width)?;
                    }
                    if self.mt_height > 0 {
                        within("touch y", y, self.mt_height)?;
                    }
                }
                Ok(())
            }
            InputEvent::Motion { .. } | InputEvent::Key { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn page_bytes(page: &KbdPage) -> &[u8; 4096] {
        // SAFETY: the page is 4096 bytes of atomics and padding, read as
        // bytes while nothing writes it.
        unsafe { &*core::ptr::from_ref(page).cast::<[u8; 4096]>() }
    }

    #[test]
    fn events_have_the_layout_kbdif_h_draws() {
        let key = encode(&InputEvent::Key {
            pressed: true,
            keycode: 28,
        });
        assert_eq!(key[..8], [3, 1, 0, 0, 28, 0, 0, 0]);
        let motion = encode(&InputEvent::Motion {
            rel_x: -2,
            rel_y: 3,
            rel_z: 1,
        });
        assert_eq!(motion[0], 1);
        assert_eq!(motion[4..8], (-2i32).to_le_bytes());
        assert_eq!(motion[8..12], 3i32.to_le_bytes());
        assert_eq!(motion[12..16], 1i32.to_le_bytes());
        let position = encode(&InputEvent::Position {
            x: 640,
            y: 360,
            rel_z: 0,
        });
        assert_eq!(position[0], 4);
        assert_eq!(position[4..12], [128, 2, 0, 0, 104, 1, 0, 0]);
        let down = encode(&InputEvent::Touch {
            contact: 2,
            touch: Touch::Down { x: 100, y: 200 },
        });
        assert_eq!(down[..4], [5, 0, 2, 0]);
        assert_eq!(down[8..16], [100, 0, 0, 0, 200, 0, 0, 0]);
        let orient = encode(&InputEvent::Touch {
            contact: 0,
            touch: Touch::Orientation(-90),
        });
        assert_eq!(orient[..3], [5, 5, 0]);
        assert_eq!(orient[8..10], (-90i16).to_le_bytes());
        for event in [
            InputEvent::Touch {
                contact: 1,
                touch: Touch::Up,
            },
            InputEvent::Touch {
                contact: 1,
                touch: Touch::Sync,
            },
            InputEvent::Touch {
                contact: 1,
                touch: Touch::Shape { major: 9, minor: 4 },
            },
            InputEvent::Touch {
                contact: 3,
                touch: Touch::Motion { x: 5, y: 6 },
            },
        ] {
            assert_eq!(decode(&encode(&event)), Ok(Some(event)));
        }
        for event in [key, motion, position, down, orient] {
            assert_eq!(
                decode(&event).map(|decoded| decoded.map(|e| encode(&e))),
                Ok(Some(event))
            );
        }
    }

    #[test]
    fn unknown_types_are_ignored_and_bad_fields_are_named() {
        let mut raw = [0u8; EVENT_SIZE];
        for unknown in [0, TYPE_RESERVED, 6, 0xff] {
            raw[0] = unknown;
            assert_eq!(decode(&raw), Ok(None), "{unknown}");
        }
        raw[0] = TYPE_KEY;
        raw[1] = 7;
        assert_eq!(decode(&raw), Err(DecodeError::Pressed(7)));
        raw[0] = TYPE_MTOUCH;
        raw[1] = 9;
        assert_eq!(decode(&raw), Err(DecodeError::TouchType(9)));
    }

    #[test]
    fn the_page_has_its_indexes_and_rings_where_kbdif_h_puts_them() {
        let page = KbdPage::new_boxed();
        page.init();
        let event = encode(&InputEvent::Key {
            pressed: true,
            keycode: 30,
        });
        page.push_event(&event).unwrap();
        let bytes = page_bytes(&page);
        assert_eq!(bytes[4..8], 1u32.to_le_bytes(), "in_prod");
        assert_eq!(bytes[1024..1064], event);
        assert_eq!(page.take_event(), Ok(Some(event)));
        assert_eq!(page_bytes(&page)[0..4], 1u32.to_le_bytes(), "in_cons");
        assert_eq!(page.take_event(), Ok(None));
        // Slot 51 wraps to slot 0 (`% XENKBD_IN_RING_LEN`).
        for index in 1..=IN_RING_LEN as u32 {
            let event = encode(&InputEvent::Key {
                pressed: false,
                keycode: index,
            });
            page.push_event(&event).unwrap();
            assert_eq!(page.take_event(), Ok(Some(event)));
        }
        assert_eq!(page_bytes(&page)[1024 + 4..1024 + 8], 51u32.to_le_bytes());
    }

    #[test]
    fn a_full_ring_refuses_and_an_overrun_is_named_and_skipped() {
        let page = KbdPage::new_boxed();
        let event = encode(&InputEvent::Key {
            pressed: true,
            keycode: 1,
        });
        for _ in 0..IN_RING_LEN {
            page.push_event(&event).unwrap();
        }
        assert_eq!(page.push_event(&event), Err(RingError::Full));
        let taken: Vec<_> = core::iter::from_fn(|| page.take_event().unwrap()).collect();
        assert_eq!(taken.len(), IN_RING_LEN);
        page.force_in_prod(51 + 1000);
        assert_eq!(
            page.take_event(),
            Err(RingError::ProducerPastRing {
                index: "in_prod",
                consumer: 51,
                producer: 1051
            })
        );
        assert_eq!(page.skip_to_producer(), 1000);
        assert_eq!(page.take_event(), Ok(None));
    }

    #[test]
    fn limits_bound_positions_and_contacts() {
        let limits = Limits {
            width: 1279,
            height: 719,
            mt_width: 1279,
            mt_height: 719,
            contacts: 2,
        };
        let at = |x, y| InputEvent::Position { x, y, rel_z: 0 };
        assert_eq!(limits.check(&at(0, 0)), Ok(()));
        assert_eq!(limits.check(&at(1279, 719)), Ok(()));
        assert_eq!(
            limits.check(&at(1280, 5)),
            Err(EventError::OutOfRange {
                what: "x",
                value: 1280,
                limit: 1279
            })
        );
        assert!(limits.check(&at(5, -1)).is_err());
        let touch = |contact, touch| InputEvent::Touch { contact, touch };
        assert_eq!(limits.check(&touch(1, Touch::Down { x: 3, y: 4 })), Ok(()));
        assert_eq!(
            limits.check(&touch(2, Touch::Up)),
            Err(EventError::Contact {
                contact: 2,
                contacts: 2
            })
        );
        assert!(limits
            .check(&touch(0, Touch::Motion { x: 3, y: 720 }))
            .is_err());
        assert_eq!(
            Limits::default().check(&touch(0, Touch::Sync)),
            Err(EventError::NoMultiTouch)
        );
        assert_eq!(Limits::default().check(&at(100_000, 5)), Ok(()));
    }
}
