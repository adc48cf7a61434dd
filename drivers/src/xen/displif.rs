//! The para-virtual display protocol, version 2 (xen/include/public/io/
//! displif.h): requests, responses and events as 64-byte little-endian
//! packets, the buffer page directory, and the xenstore node names.
//!
//! Offsets below are those of the header's C structs (`struct xendispl_req`
//! and friends); the header's diagrams label rows by their end offset.
//! Encoding and decoding are explicit so that the frontend and the Dom0
//! backend share one definition, and decoding never trusts its input.

extern crate alloc;

use super::gnttab::GrantRef;
use super::ring::{Slot, SLOT_SIZE};
use alloc::vec::Vec;
use core::fmt;

/// `XENDISPL_PROTOCOL_VERSION_INT`.
pub const PROTOCOL_VERSION: u32 = 2;
/// `XENDISPL_DBUF_FLG_REQ_ALLOC`: the backend allocates the buffer.
pub const DBUF_FLAG_REQ_ALLOC: u32 = 1;
/// `XENDISPL_EDID_MAX_SIZE`.
pub const EDID_MAX_SIZE: u32 = 128 * 256;
/// Grant references in one page-directory page (the first word is the link).
pub const REFS_PER_DIRECTORY_PAGE: usize = 4096 / 4 - 1;

/// Xenstore node names (`XENDISPL_FIELD_*`).
pub mod field {
    /// Backend: protocol versions it supports, comma separated.
    pub const BE_VERSIONS: &str = "versions";
    /// Frontend: the protocol version chosen.
    pub const FE_VERSION: &str = "version";
    /// Per connector: grant of the request ring page.
    pub const REQ_RING_REF: &str = "req-ring-ref";
    /// Per connector: event channel of the request ring.
    pub const REQ_CHANNEL: &str = "req-event-channel";
    /// Per connector: grant of the event page.
    pub const EVT_RING_REF: &str = "evt-ring-ref";
    /// Per connector: event channel of the event page.
    pub const EVT_CHANNEL: &str = "evt-event-channel";
    /// Per connector: `<width>x<height>`.
    pub const RESOLUTION: &str = "resolution";
    /// Whether the backend may allocate buffers ("1").
    pub const BE_ALLOC: &str = "be-alloc";
    /// Per connector: its unique id.
    pub const UNIQUE_ID: &str = "unique-id";
}

/// DRM FOURCC of 32-bit XRGB8888 (`DRM_FORMAT_XRGB8888`, "XR24").
pub const FOURCC_XRGB8888: u32 = u32::from_le_bytes(*b"XR24");
/// DRM FOURCC of 16-bit RGB565 (`DRM_FORMAT_RGB565`, "RG16").
pub const FOURCC_RGB565: u32 = u32::from_le_bytes(*b"RG16");
/// DRM FOURCC of 24-bit RGB888 (`DRM_FORMAT_RGB888`, "RG24"): bytes B, G, R.
pub const FOURCC_RGB888: u32 = u32::from_le_bytes(*b"RG24");
/// DRM FOURCC of 32-bit ARGB8888 (`DRM_FORMAT_ARGB8888`, "AR24").
pub const FOURCC_ARGB8888: u32 = u32::from_le_bytes(*b"AR24");
/// DRM FOURCC of 16-bit XRGB4444 (`DRM_FORMAT_XRGB4444`, "XR12").
pub const FOURCC_XRGB4444: u32 = u32::from_le_bytes(*b"XR12");
/// DRM FOURCC of 16-bit ARGB4444 (`DRM_FORMAT_ARGB4444`, "AR12").
pub const FOURCC_ARGB4444: u32 = u32::from_le_bytes(*b"AR12");
/// DRM FOURCC of 16-bit XRGB1555 (`DRM_FORMAT_XRGB1555`, "XR15").
pub const FOURCC_XRGB1555: u32 = u32::from_le_bytes(*b"XR15");
/// DRM FOURCC of 16-bit ARGB1555 (`DRM_FORMAT_ARGB1555`, "AR15").
pub const FOURCC_ARGB1555: u32 = u32::from_le_bytes(*b"AR15");
/// DRM FOURCC of packed YUV 4:2:2 (`DRM_FORMAT_YUYV`, "YUYV"): Y0, U, Y1, V
/// per two pixels, 16 bits per pixel.
pub const FOURCC_YUYV: u32 = u32::from_le_bytes(*b"YUYV");

/// The pixel formats Linux's xen-drm-front offers on every connector
/// (`plane_formats` in drivers/gpu/drm/xen/xen_drm_front_conn.c), which a
/// backend must accept in FB_ATTACH.
pub const FRONTEND_FORMATS: [u32; 9] = [
    FOURCC_RGB565,
    FOURCC_RGB888,
    FOURCC_XRGB8888,
    FOURCC_ARGB8888,
    FOURCC_XRGB4444,
    FOURCC_ARGB4444,
    FOURCC_XRGB1555,
    FOURCC_ARGB1555,
    FOURCC_YUYV,
];

/// Bits per pixel of a pixel format of [`FRONTEND_FORMATS`] (what the
/// display buffer's `bpp` and SET_CONFIG's `bpp` carry for it: Linux sends
/// `cpp[0] * 8`), or `None` for another FOURCC.
pub fn format_bpp(fourcc: u32) -> Option<u32> {
    match fourcc {
        FOURCC_XRGB8888 | FOURCC_ARGB8888 => Some(32),
        FOURCC_RGB888 => Some(24),
        FOURCC_RGB565 | FOURCC_XRGB4444 | FOURCC_ARGB4444 | FOURCC_XRGB1555 | FOURCC_ARGB1555
        | FOURCC_YUYV => Some(16),
        _ => None,
    }
}

/// A FOURCC as its four characters (non-printable bytes as `?`), for logs.
pub fn fourcc_name(fourcc: u32) -> [char; 4] {
    fourcc.to_le_bytes().map(|byte| match byte {
        0x20..=0x7e => char::from(byte),
        _ => '?',
    })
}

/// Request operation codes (`XENDISPL_OP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Operation {
    /// `XENDISPL_OP_DBUF_CREATE`.
    DbufCreate = 0x10,
    /// `XENDISPL_OP_DBUF_DESTROY`.
    DbufDestroy = 0x11,
    /// `XENDISPL_OP_FB_ATTACH`.
    FbAttach = 0x12,
    /// `XENDISPL_OP_FB_DETACH`.
    FbDetach = 0x13,
    /// `XENDISPL_OP_SET_CONFIG`.
    SetConfig = 0x14,
    /// `XENDISPL_OP_PG_FLIP`.
    PageFlip = 0x15,
    /// `XENDISPL_OP_GET_EDID` (protocol version 2).
    GetEdid = 0x16,
}

impl TryFrom<u8> for Operation {
    type Error = DecodeError;
    fn try_from(value: u8) -> Result<Self, DecodeError> {
        Ok(match value {
            0x10 => Operation::DbufCreate,
            0x11 => Operation::DbufDestroy,
            0x12 => Operation::FbAttach,
            0x13 => Operation::FbDetach,
            0x14 => Operation::SetConfig,
            0x15 => Operation::PageFlip,
            0x16 => Operation::GetEdid,
            other => return Err(DecodeError::UnknownOperation(other)),
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::DbufCreate => "DBUF_CREATE",
            Operation::DbufDestroy => "DBUF_DESTROY",
            Operation::FbAttach => "FB_ATTACH",
            Operation::FbDetach => "FB_DETACH",
            Operation::SetConfig => "SET_CONFIG",
            Operation::PageFlip => "PG_FLIP",
            Operation::GetEdid => "GET_EDID",
        })
    }
}

/// `XENDISPL_EVT_PG_FLIP`.
pub const EVT_PG_FLIP: u8 = 0x00;

/// Why a packet could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Operation code not defined by the protocol.
    UnknownOperation(u8),
    /// Event type not defined by the protocol.
    UnknownEvent(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownOperation(code) => write!(f, "unknown operation {code:#04x}"),
            DecodeError::UnknownEvent(code) => write!(f, "unknown event type {code:#04x}"),
        }
    }
}

/// `struct xendispl_dbuf_create_req`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbufCreate {
    /// Cookie naming the buffer (non-zero, unique).
    pub dbuf_cookie: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per pixel.
    pub bpp: u32,
    /// Buffer size in bytes.
    pub buffer_sz: u32,
    /// `XENDISPL_DBUF_FLG_*`.
    pub flags: u32,
    /// First page of the page directory.
    pub gref_directory: GrantRef,
    /// Offset of the data in the buffer (version 2).
    pub data_ofs: u32,
}

/// A request (`struct xendispl_req` without its id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Create a display buffer.
    DbufCreate(DbufCreate),
    /// Destroy a display buffer.
    DbufDestroy {
        /// The buffer.
        dbuf_cookie: u64,
    },
    /// Attach a framebuffer to a display buffer.
    FbAttach {
        /// The buffer.
        dbuf_cookie: u64,
        /// Cookie naming the framebuffer (non-zero, unique).
        fb_cookie: u64,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// DRM FOURCC.
        pixel_format: u32,
    },
    /// Detach a framebuffer.
    FbDetach {
        /// The framebuffer.
        fb_cookie: u64,
    },
    /// Show a framebuffer on the connector (all zero: disable).
    SetConfig {
        /// The framebuffer.
        fb_cookie: u64,
        /// Left edge.
        x: u32,
        /// Top edge.
        y: u32,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bits per pixel.
        bpp: u32,
    },
    /// Show a framebuffer from now on.
    PageFlip {
        /// The framebuffer.
        fb_cookie: u64,
    },
    /// Ask for the connector's EDID (version 2).
    GetEdid {
        /// Size of the buffer, at least [`EDID_MAX_SIZE`].
        buffer_sz: u32,
        /// First page of the buffer's page directory.
        gref_directory: GrantRef,
    },
}

fn put32(slot: &mut Slot, offset: usize, value: u32) {
    slot[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put64(slot: &mut Slot, offset: usize, value: u64) {
    slot[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn get32(slot: &Slot, offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&slot[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

fn get64(slot: &Slot, offset: usize) -> u64 {
    (u64::from(get32(slot, offset + 4)) << 32) | u64::from(get32(slot, offset))
}

impl Request {
    /// SET_CONFIG with every field zero: switch the connector off.
    pub const DISABLE: Request = Request::SetConfig {
        fb_cookie: 0,
        x: 0,
        y: 0,
        width: 0,
        height: 0,
        bpp: 0,
    };

    /// Its operation code.
    pub fn operation(&self) -> Operation {
        match self {
            Request::DbufCreate(_) => Operation::DbufCreate,
            Request::DbufDestroy { .. } => Operation::DbufDestroy,
            Request::FbAttach { .. } => Operation::FbAttach,
            Request::FbDetach { .. } => Operation::FbDetach,
            Request::SetConfig { .. } => Operation::SetConfig,
            Request::PageFlip { .. } => Operation::PageFlip,
            Request::GetEdid { .. } => Operation::GetEdid,
        }
    }

    /// The 64-byte packet with request id `id`; reserved bytes are zero.
    pub fn encode(&self, id: u16) -> Slot {
        let mut slot = [0u8; SLOT_SIZE];
        slot[0..2].copy_from_slice(&id.to_le_bytes());
        slot[2] = self.operation() as u8;
        match *self {
            Request::DbufCreate(create) => {
                put64(&mut slot, 8, create.dbuf_cookie);
                put32(&mut slot, 16, create.width);
                put32(&mut slot, 20, create.height);
                put32(&mut slot, 24, create.bpp);
                put32(&mut slot, 28, create.buffer_sz);
                put32(&mut slot, 32, create.flags);
                put32(&mut slot, 36, create.gref_directory);
                put32(&mut slot, 40, create.data_ofs);
            }
            Request::DbufDestroy { dbuf_cookie } => put64(&mut slot, 8, dbuf_cookie),
            Request::FbAttach {
                dbuf_cookie,
                fb_cookie,
                width,
                height,
                pixel_format,
            } => {
                put64(&mut slot, 8, dbuf_cookie);
                put64(&mut slot, 16, fb_cookie);
                put32(&mut slot, 24, width);
                put32(&mut slot, 28, height);
                put32(&mut slot, 32, pixel_format);
            }
            Request::FbDetach { fb_cookie } | Request::PageFlip { fb_cookie } => {
                put64(&mut slot, 8, fb_cookie)
            }
            Request::SetConfig {
                fb_cookie,
                x,
                y,
                width,
                height,
                bpp,
            } => {
                put64(&mut slot, 8, fb_cookie);
                put32(&mut slot, 16, x);
                put32(&mut slot, 20, y);
                put32(&mut slot, 24, width);
                put32(&mut slot, 28, height);
                put32(&mut slot, 32, bpp);
            }
            Request::GetEdid {
                buffer_sz,
                gref_directory,
            } => {
                put32(&mut slot, 8, buffer_sz);
                put32(&mut slot, 12, gref_directory);
            }
        }
        slot
    }

    /// Decodes a packet: `(id, request)`.
    pub fn decode(slot: &Slot) -> Result<(u16, Request), DecodeError> {
        let id = u16::from_le_bytes([slot[0], slot[1]]);
        let request = match Operation::try_from(slot[2])? {
            Operation::DbufCreate => Request::DbufCreate(DbufCreate {
                dbuf_cookie: get64(slot, 8),
                width: get32(slot, 16),
                height: get32(slot, 20),
                bpp: get32(slot, 24),
                buffer_sz: get32(slot, 28),
                flags: get32(slot, 32),
                gref_directory: get32(slot, 36),
                data_ofs: get32(slot, 40),
            }),
            Operation::DbufDestroy => Request::DbufDestroy {
                dbuf_cookie: get64(slot, 8),
            },
            Operation::FbAttach => Request::FbAttach {
                dbuf_cookie: get64(slot, 8),
                fb_cookie: get64(slot, 16),
                width: get32(slot, 24),
                height: get32(slot, 28),
                pixel_format: get32(slot, 32),
            },
            Operation::FbDetach => Request::FbDetach {
                fb_cookie: get64(slot, 8),
            },
            Operation::SetConfig => Request::SetConfig {
                fb_cookie: get64(slot, 8),
                x: get32(slot, 16),
                y: get32(slot, 20),
                width: get32(slot, 24),
                height: get32(slot, 28),
                bpp: get32(slot, 32),
            },
            Operation::PageFlip => Request::PageFlip {
                fb_cookie: get64(slot, 8),
            },
            Operation::GetEdid => Request::GetEdid {
                buffer_sz: get32(slot, 8),
                gref_directory: get32(slot, 12),
            },
        };
        Ok((id, request))
    }
}

/// A response (`struct xendispl_resp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request id it answers.
    pub id: u16,
    /// The request's operation code, as the backend echoed it.
    pub operation: u8,
    /// 0, or `-XEN_Exx`.
    pub status: i32,
    /// For GET_EDID: the EDID's size.
    pub edid_sz: u32,
}

impl Response {
    /// The 64-byte packet.
    pub fn encode(&self) -> Slot {
        let mut slot = [0u8; SLOT_SIZE];
        slot[0..2].copy_from_slice(&self.id.to_le_bytes());
        slot[2] = self.operation;
        slot[4..8].copy_from_slice(&self.status.to_le_bytes());
        put32(&mut slot, 8, self.edid_sz);
        slot
    }

    /// Decodes a packet (any content is representable).
    pub fn decode(slot: &Slot) -> Response {
        Response {
            id: u16::from_le_bytes([slot[0], slot[1]]),
            operation: slot[2],
            status: get32(slot, 4) as i32,
            edid_sz: get32(slot, 8),
        }
    }
}

/// An event from the backend (`struct xendispl_evt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A page flip completed: the framebuffer may be drawn again.
    PageFlip {
        /// The framebuffer now shown.
        fb_cookie: u64,
    },
}

impl Event {
    /// The 64-byte packet with event id `id`.
    pub fn encode(&self, id: u16) -> Slot {
        let mut slot = [0u8; SLOT_SIZE];
        slot[0..2].copy_from_slice(&id.to_le_bytes());
        match *self {
            Event::PageFlip { fb_cookie } => {
                slot[2] = EVT_PG_FLIP;
                put64(&mut slot, 8, fb_cookie);
            }
        }
        slot
    }

    /// Decodes a packet: `(id, event)`.
    pub fn decode(slot: &Slot) -> Result<(u16, Event), DecodeError> {
        let id = u16::from_le_bytes([slot[0], slot[1]]);
        match slot[2] {
            EVT_PG_FLIP => Ok((
                id,
                Event::PageFlip {
                    fb_cookie: get64(slot, 8),
                },
            )),
            other => Err(DecodeError::UnknownEvent(other)),
        }
    }
}

/// Pages of a buffer of `buffer_sz` bytes.
pub fn buffer_pages(buffer_sz: u32) -> usize {
    (buffer_sz as usize).div_ceil(4096)
}

/// Directory pages needed to list `pages` buffer pages.
pub fn directory_pages(pages: usize) -> usize {
    pages.div_ceil(REFS_PER_DIRECTORY_PAGE).max(1)
}

/// Writes one `struct xendispl_page_directory` page: the next page's grant
/// (0 on the last) and up to 1023 buffer grants.
pub fn write_directory_page(page: &mut [u8; 4096], next: GrantRef, refs: &[GrantRef]) {
    page.fill(0);
    page[0..4].copy_from_slice(&next.to_le_bytes());
    for (slot, gref) in page[4..]
        .chunks_exact_mut(4)
        .zip(refs.iter().take(REFS_PER_DIRECTORY_PAGE))
    {
        slot.copy_from_slice(&gref.to_le_bytes());
    }
}

/// Reads a directory page: `(next, the first `count` refs)` (count capped at
/// a page's worth).
pub fn read_directory_page(page: &[u8; 4096], count: usize) -> (GrantRef, Vec<GrantRef>) {
    let word = |chunk: &[u8]| u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    let next = word(&page[0..4]);
    let refs = page[4..]
        .chunks_exact(4)
        .take(count.min(REFS_PER_DIRECTORY_PAGE))
        .map(word)
        .collect();
    (next, refs)
}

/// The largest width or height accepted in a `resolution` node, by the
/// frontend and the backend alike. displif.h sets no limit; 8192 covers 8K
/// panels, and a 8192x8192 XRGB8888 buffer (256 MiB, 65,536 grant
/// references) is already beyond what a guest's grant table allows by
/// default.
pub const MAX_DIMENSION: u32 = 8192;

/// Why a `resolution` node's value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolutionError {
    /// Not `<width>x<height>` in decimal.
    NotWxH,
    /// A width or height of 0.
    Zero,
    /// A width or height beyond [`MAX_DIMENSION`].
    TooLarge,
}

impl core::fmt::Display for ResolutionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResolutionError::NotWxH => f.write_str("not <width>x<height>"),
            ResolutionError::Zero => f.write_str("a width or height of 0"),
            ResolutionError::TooLarge => write!(f, "beyond {MAX_DIMENSION}x{MAX_DIMENSION}"),
        }
    }
}

/// Parses a `resolution` node: `"<width>x<height>"`, both from 1 to
/// [`MAX_DIMENSION`].
pub fn parse_resolution(value: &str) -> Result<(u32, u32), ResolutionError> {
    let (width, height) = value
        .trim()
        .split_once('x')
        .ok_or(ResolutionError::NotWxH)?;
    let number = |text: &str| {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(ResolutionError::NotWxH);
        }
        // All digits: only too many of them fail to parse.
        text.parse::<u32>().map_err(|_| ResolutionError::TooLarge)
    };
    let (width, height) = (number(width)?, number(height)?);
    if width == 0 || height == 0 {
        return Err(ResolutionError::Zero);
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(ResolutionError::TooLarge);
    }
    Ok((width, height))
}

/// The highest version both ends support, from the backend's `versions`
/// node; a missing node means version 1 (libxl and existing backends never
/// write it).
pub fn negotiate_version(backend_versions: Option<&str>) -> Option<u32> {
    let Some(list) = backend_versions else {
        return Some(1);
    };
    list.split(',')
        .filter_map(|version| version.trim().parse::<u32>().ok())
        .filter(|&version| (1..=PROTOCOL_VERSION).contains(&version))
        .max()
}

/// Bytes per row for `width` pixels at `bpp`, rounded up so that a row is a
/// whole number of 32-bit words (what both Linux and displ_be assume when
/// width * bpp is a multiple of 32).
/// For sizes the caller chose; a peer's sizes go through [`checked_stride`].
pub fn stride(width: u32, bpp: u32) -> u32 {
    (width * bpp).div_ceil(32) * 4
}

/// [`stride`], or `None` when `width * bpp` does not fit in 32 bits (a
/// request no real buffer can satisfy).
pub fn checked_stride(width: u32, bpp: u32) -> Option<u32> {
    Some(width.checked_mul(bpp)?.div_ceil(32) * 4)
}

/// The shortest row a frontend may use for `width` pixels at `bpp`:
/// `ceil(width * bpp / 8)` bytes, Linux's dumb-buffer pitch; `None` when
/// `width * bpp` does not fit in 32 bits.
pub fn min_pitch(width: u32, bpp: u32) -> Option<u32> {
    Some(width.checked_mul(bpp)?.div_ceil(8))
}

/// The pitch (bytes from one row to the next) of a display buffer of
/// `buffer_sz` bytes holding `height` rows of `width` pixels at `bpp`.
/// displif.h has no stride field, so it is inferred from the size:
/// - Linux's `ceil(width * bpp / 8)` or the 32-bit-aligned
///   `4 * ceil(width * bpp / 32)` (this project's guest, displ_be) when the
///   size is exactly that pitch times the height;
/// - otherwise `buffer_sz / height` when the size divides evenly (a
///   frontend aligning its rows further allocates pitch * height);
/// - otherwise (a size padded past the last row) the 32-bit-aligned pitch
///   if the buffer holds it, else Linux's.
///
/// `None` when even the shortest pitch times the height exceeds
/// `buffer_sz`, or a product overflows.
pub fn infer_pitch(width: u32, height: u32, bpp: u32, buffer_sz: u32) -> Option<u32> {
    let shortest = min_pitch(width, bpp)?;
    let aligned = checked_stride(width, bpp)?;
    let size = u64::from(buffer_sz);
    let rows = u64::from(height);
    if height == 0 || u64::from(shortest) * rows > size {
        return None;
    }
    for pitch in [shortest, aligned] {
        if u64::from(pitch) * rows == size {
            return Some(pitch);
        }
    }
    if size % rows == 0 {
        return u32::try_from(size / rows).ok();
    }
    if u64::from(aligned) * rows <= size {
        return Some(aligned);
    }
    Some(shortest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet built from the header's field offsets, independently of
    /// the encoder.
    fn packet(fields: &[(usize, &[u8])]) -> Slot {
        let mut slot = [0u8; SLOT_SIZE];
        for (offset, bytes) in fields {
            slot[*offset..*offset + bytes.len()].copy_from_slice(bytes);
        }
        slot
    }

    #[test]
    fn dbuf_create_matches_the_struct_layout() {
        let request = Request::DbufCreate(DbufCreate {
            dbuf_cookie: 0x1122_3344_5566_7788,
            width: 1920,
            height: 1080,
            bpp: 32,
            buffer_sz: 1920 * 1080 * 4,
            flags: 0,
            gref_directory: 300,
            data_ofs: 0,
        });
        let expected = packet(&[
            (0, &5u16.to_le_bytes()),
            (2, &[0x10]),
            (8, &0x1122_3344_5566_7788u64.to_le_bytes()),
            (16, &1920u32.to_le_bytes()),
            (20, &1080u32.to_le_bytes()),
            (24, &32u32.to_le_bytes()),
            (28, &(1920u32 * 1080 * 4).to_le_bytes()),
            (36, &300u32.to_le_bytes()),
        ]);
        assert_eq!(request.encode(5), expected);
        assert_eq!(Request::decode(&expected), Ok((5, request)));
    }

    #[test]
    fn fb_attach_set_config_and_flip_match_the_struct_layout() {
        let attach = Request::FbAttach {
            dbuf_cookie: 1,
            fb_cookie: 2,
            width: 800,
            height: 600,
            pixel_format: FOURCC_XRGB8888,
        };
        assert_eq!(
            attach.encode(9),
            packet(&[
                (0, &9u16.to_le_bytes()),
                (2, &[0x12]),
                (8, &1u64.to_le_bytes()),
                (16, &2u64.to_le_bytes()),
                (24, &800u32.to_le_bytes()),
                (28, &600u32.to_le_bytes()),
                (32, b"XR24"),
            ])
        );
        let config = Request::SetConfig {
            fb_cookie: 2,
            x: 0,
            y: 0,
            width: 800,
            height: 600,
            bpp: 32,
        };
        assert_eq!(
            config.encode(1),
            packet(&[
                (0, &1u16.to_le_bytes()),
                (2, &[0x14]),
                (8, &2u64.to_le_bytes()),
                (24, &800u32.to_le_bytes()),
                (28, &600u32.to_le_bytes()),
                (32, &32u32.to_le_bytes()),
            ])
        );
        let flip = Request::PageFlip { fb_cookie: 7 };
        assert_eq!(
            flip.encode(2),
            packet(&[
                (0, &2u16.to_le_bytes()),
                (2, &[0x15]),
                (8, &7u64.to_le_bytes())
            ])
        );
        for request in [attach, config, flip] {
            assert_eq!(Request::decode(&request.encode(3)), Ok((3, request)));
        }
    }

    #[test]
    fn destroy_detach_and_edid_match_the_struct_layout() {
        assert_eq!(
            Request::DbufDestroy { dbuf_cookie: 4 }.encode(1),
            packet(&[
                (0, &1u16.to_le_bytes()),
                (2, &[0x11]),
                (8, &4u64.to_le_bytes())
            ])
        );
        assert_eq!(
            Request::FbDetach { fb_cookie: 4 }.encode(1),
            packet(&[
                (0, &1u16.to_le_bytes()),
                (2, &[0x13]),
                (8, &4u64.to_le_bytes())
            ])
        );
        assert_eq!(
            Request::GetEdid {
                buffer_sz: EDID_MAX_SIZE,
                gref_directory: 12
            }
            .encode(1),
            packet(&[
                (0, &1u16.to_le_bytes()),
                (2, &[0x16]),
                (8, &32768u32.to_le_bytes()),
                (12, &12u32.to_le_bytes()),
            ])
        );
    }

    #[test]
    fn unknown_operations_and_events_are_errors() {
        let mut slot = [0u8; SLOT_SIZE];
        slot[2] = 0x0f;
        assert_eq!(
            Request::decode(&slot),
            Err(DecodeError::UnknownOperation(0x0f))
        );
        slot[2] = 0x17;
        assert_eq!(
            Request::decode(&slot),
            Err(DecodeError::UnknownOperation(0x17))
        );
        slot[2] = 1;
        assert_eq!(Event::decode(&slot), Err(DecodeError::UnknownEvent(1)));
    }

    #[test]
    fn responses_and_events_match_the_struct_layout() {
        let response = Response {
            id: 0x1234,
            operation: 0x16,
            status: -22,
            edid_sz: 256,
        };
        let expected = packet(&[
            (0, &0x1234u16.to_le_bytes()),
            (2, &[0x16]),
            (4, &(-22i32).to_le_bytes()),
            (8, &256u32.to_le_bytes()),
        ]);
        assert_eq!(response.encode(), expected);
        assert_eq!(Response::decode(&expected), response);
        let event = Event::PageFlip { fb_cookie: 0xabcd };
        let expected = packet(&[
            (0, &3u16.to_le_bytes()),
            (2, &[0]),
            (8, &0xabcdu64.to_le_bytes()),
        ]);
        assert_eq!(event.encode(3), expected);
        assert_eq!(Event::decode(&expected), Ok((3, event)));
    }

    #[test]
    fn page_directory_chains_1023_refs_per_page() {
        let pages = buffer_pages(1920 * 1080 * 4);
        assert_eq!(pages, 2025);
        assert_eq!(directory_pages(pages), 2);
        assert_eq!(directory_pages(1023), 1);
        assert_eq!(directory_pages(1024), 2);
        let refs: Vec<u32> = (100..1200).collect();
        let mut page = [0xffu8; 4096];
        write_directory_page(&mut page, 77, &refs);
        assert_eq!(&page[0..4], &77u32.to_le_bytes());
        assert_eq!(&page[4..8], &100u32.to_le_bytes());
        assert_eq!(&page[4092..4096], &(100 + 1022u32).to_le_bytes());
        let (next, read) = read_directory_page(&page, 2000);
        assert_eq!(next, 77);
        assert_eq!(read.len(), 1023);
        assert_eq!(read[..], refs[..1023]);
    }

    #[test]
    fn fourcc_codes_match_drm() {
        assert_eq!(FOURCC_XRGB8888, 0x3432_5258);
        assert_eq!(FOURCC_RGB565, 0x3631_4752);
        // fourcc_code(a, b, c, d) = a | b << 8 | c << 16 | d << 24 (drm_fourcc.h).
        let code = |name: &[u8; 4]| {
            u32::from(name[0])
                | u32::from(name[1]) << 8
                | u32::from(name[2]) << 16
                | u32::from(name[3]) << 24
        };
        assert_eq!(FOURCC_RGB888, code(b"RG24"));
        assert_eq!(FOURCC_ARGB8888, code(b"AR24"));
        assert_eq!(FOURCC_XRGB4444, code(b"XR12"));
        assert_eq!(FOURCC_ARGB4444, code(b"AR12"));
        assert_eq!(FOURCC_XRGB1555, code(b"XR15"));
        assert_eq!(FOURCC_ARGB1555, code(b"AR15"));
        assert_eq!(FOURCC_YUYV, 0x5659_5559);
        let bpps: Vec<u32> = FRONTEND_FORMATS
            .iter()
            .filter_map(|f| format_bpp(*f))
            .collect();
        assert_eq!(bpps, [16, 24, 32, 32, 16, 16, 16, 16, 16]);
        assert_eq!(format_bpp(u32::from_le_bytes(*b"NV12")), None);
        assert_eq!(fourcc_name(FOURCC_YUYV), ['Y', 'U', 'Y', 'V']);
        assert_eq!(fourcc_name(0x0000_4142), ['B', 'A', '?', '?']);
    }

    #[test]
    fn the_pitch_follows_the_size_the_frontend_allocated() {
        // Linux: ceil(width * bpp / 8) * height, here 801 * 2 = 1602 bytes a row.
        assert_eq!(infer_pitch(801, 10, 16, 1602 * 10), Some(1602));
        // This project's guest and displ_be: 32-bit-aligned rows.
        assert_eq!(infer_pitch(801, 10, 16, 1604 * 10), Some(1604));
        // RGB888 at an odd width: 3 bytes a pixel, no padding.
        assert_eq!(infer_pitch(5, 3, 24, 15 * 3), Some(15));
        // Rows aligned to 64 bytes.
        assert_eq!(infer_pitch(801, 10, 16, 1664 * 10), Some(1664));
        // A size padded to whole pages: the aligned pitch.
        assert_eq!(infer_pitch(801, 3, 16, 8192 - 1), Some(1604));
        // Too small for even the shortest rows.
        assert_eq!(infer_pitch(801, 10, 16, 1602 * 10 - 1), None);
        assert_eq!(infer_pitch(801, 0, 16, 4096), None);
        assert_eq!(infer_pitch((1 << 27) + 1, 1, 32, 4), None);
        assert_eq!(min_pitch(801, 16), Some(1602));
        assert_eq!(min_pitch(3, 24), Some(9));
    }

    #[test]
    fn resolution_version_and_stride() {
        assert_eq!(parse_resolution("1280x720"), Ok((1280, 720)));
        assert_eq!(parse_resolution(" 8192x8192\n"), Ok((8192, 8192)));
        assert_eq!(parse_resolution("0x720"), Err(ResolutionError::Zero));
        assert_eq!(parse_resolution("0x0"), Err(ResolutionError::Zero));
        for bad in [
            "1280*720",
            "x",
            "1280x",
            "abc",
            "+1280x720",
            "-1x5",
            "12 80x720",
        ] {
            assert_eq!(parse_resolution(bad), Err(ResolutionError::NotWxH), "{bad}");
        }
        for big in ["8193x1", "100000x100000", "4294967295x1", "99999999999x1"] {
            assert_eq!(
                parse_resolution(big),
                Err(ResolutionError::TooLarge),
                "{big}"
            );
        }
        assert_eq!(negotiate_version(None), Some(1));
        assert_eq!(negotiate_version(Some("1,2")), Some(2));
        assert_eq!(negotiate_version(Some("1")), Some(1));
        assert_eq!(negotiate_version(Some("2,3,4")), Some(2));
        assert_eq!(negotiate_version(Some("3")), None);
        assert_eq!(negotiate_version(Some("")), None);
        assert_eq!(stride(800, 32), 3200);
        assert_eq!(stride(801, 16), 1604);
        assert_eq!(checked_stride(801, 16), Some(1604));
        assert_eq!(checked_stride(u32::MAX / 32, 32), Some(u32::MAX / 32 * 4));
        assert_eq!(checked_stride((1 << 27) + 1, 32), None, "width * bpp wraps");
    }
}
