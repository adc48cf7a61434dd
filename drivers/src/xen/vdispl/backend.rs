//! The backend's rules, independent of how pages are mapped: what each
//! request must satisfy and what it changes. The Dom0 backend and the host
//! tests' fake backend both run requests through [`BackendModel`], so the
//! frontend is tested against the same checks it meets in the rig.

use crate::xen::displif::{
    buffer_pages, read_directory_page, stride, DbufCreate, Request, Response, DBUF_FLAG_REQ_ALLOC,
    FOURCC_RGB565, FOURCC_XRGB8888, REFS_PER_DIRECTORY_PAGE,
};
use crate::xen::gnttab::GrantRef;
use crate::xen::ring::Slot;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// `-XEN_EINVAL`.
pub const EINVAL: i32 = -22;
/// `-XEN_ENOENT`.
pub const ENOENT: i32 = -2;
/// `-XEN_EEXIST`.
pub const EEXIST: i32 = -17;
/// `-XEN_EOPNOTSUPP`.
pub const EOPNOTSUPP: i32 = -95;
/// `-XEN_ENOMEM`.
pub const ENOMEM: i32 = -12;

/// Reads the pages of a frontend's page directory.
pub trait DirectoryReader {
    /// The page granted as `gref`, or `None` if it cannot be mapped.
    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]>;
}

/// A display buffer the backend knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayBuffer {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per pixel.
    pub bpp: u32,
    /// Size in bytes.
    pub buffer_sz: u32,
    /// Grants of its pages, in order.
    pub refs: Vec<GrantRef>,
}

/// A framebuffer attached to a display buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framebuffer {
    /// The display buffer.
    pub dbuf_cookie: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM FOURCC.
    pub pixel_format: u32,
}

/// What a request changed, for the backend to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond the response.
    None,
    /// A display buffer exists now: map its pages.
    Created(u64),
    /// A display buffer is gone: unmap its pages.
    Destroyed(u64),
    /// The connector shows this framebuffer now (SET_CONFIG).
    Configured(Option<u64>),
    /// A flip: capture the framebuffer, then send EVT_PG_FLIP.
    Flipped(u64),
}

/// The state of the objects one frontend created.
#[derive(Default)]
pub struct BackendModel {
    /// Display buffers by cookie.
    pub buffers: BTreeMap<u64, DisplayBuffer>,
    /// Framebuffers by cookie.
    pub framebuffers: BTreeMap<u64, Framebuffer>,
}

fn respond(slot: &Slot, status: i32) -> Response {
    Response {
        id: u16::from_le_bytes([slot[0], slot[1]]),
        operation: slot[2],
        status,
        edid_sz: 0,
    }
}

impl BackendModel {
    /// Applies one request packet; returns the response to send and what
    /// changed. Bad requests get an error status and change nothing.
    pub fn handle(&mut self, slot: &Slot, reader: &mut impl DirectoryReader) -> (Response, Effect) {
        let Ok((_, request)) = Request::decode(slot) else {
            return (respond(slot, EINVAL), Effect::None);
        };
        match self.apply(request, reader) {
            Ok(effect) => (respond(slot, 0), effect),
            Err(status) => (respond(slot, status), Effect::None),
        }
    }

    fn apply(
        &mut self,
        request: Request,
        reader: &mut impl DirectoryReader,
    ) -> Result<Effect, i32> {
        match request {
            Request::DbufCreate(create) => self.create(create, reader),
            Request::DbufDestroy { dbuf_cookie } => {
                if self
                    .framebuffers
                    .values()
                    .any(|fb| fb.dbuf_cookie == dbuf_cookie)
                {
                    return Err(EINVAL);
                }
                self.buffers.remove(&dbuf_cookie).ok_or(ENOENT)?;
                Ok(Effect::Destroyed(dbuf_cookie))
            }
            Request::FbAttach {
                dbuf_cookie,
                fb_cookie,
                width,
                height,
                pixel_format,
            } => {
                let buffer = self.buffers.get(&dbuf_cookie).ok_or(ENOENT)?;
                if fb_cookie == 0 || self.framebuffers.contains_key(&fb_cookie) {
                    return Err(EINVAL);
                }
                let bpp = match pixel_format {
                    FOURCC_XRGB8888 => 32,
                    FOURCC_RGB565 => 16,
                    _ => return Err(EINVAL),
                };
                if width > buffer.width || height > buffer.height || bpp != buffer.bpp {
                    return Err(EINVAL);
                }
                self.framebuffers.insert(
                    fb_cookie,
                    Framebuffer {
                        dbuf_cookie,
                        width,
                        height,
                        pixel_format,
                    },
                );
                Ok(Effect::None)
            }
            Request::FbDetach { fb_cookie } => {
                self.framebuffers.remove(&fb_cookie).ok_or(ENOENT)?;
                Ok(Effect::None)
            }
            Request::SetConfig {
                fb_cookie,
                x,
                y,
                width,
                height,
                bpp,
            } => {
                if fb_cookie == 0 && (x, y, width, height, bpp) == (0, 0, 0, 0, 0) {
                    return Ok(Effect::Configured(None));
                }
                let framebuffer = self.framebuffers.get(&fb_cookie).ok_or(ENOENT)?;
                if width > framebuffer.width || height > framebuffer.height {
                    return Err(EINVAL);
                }
                Ok(Effect::Configured(Some(fb_cookie)))
            }
            Request::PageFlip { fb_cookie } => {
                self.framebuffers.get(&fb_cookie).ok_or(ENOENT)?;
                Ok(Effect::Flipped(fb_cookie))
            }
            Request::GetEdid { .. } => Err(EOPNOTSUPP),
        }
    }

    fn create(
        &mut self,
        create: DbufCreate,
        reader: &mut impl DirectoryReader,
    ) -> Result<Effect, i32> {
        if create.dbuf_cookie == 0 || self.buffers.contains_key(&create.dbuf_cookie) {
            return Err(EINVAL);
        }
        if create.flags & DBUF_FLAG_REQ_ALLOC != 0 {
            // Buffers are always frontend-allocated here (be-alloc = 0).
            return Err(EOPNOTSUPP);
        }
        if !matches!(create.bpp, 16 | 32)
            || create.width == 0
            || create.height == 0
            || create.data_ofs != 0
        {
            return Err(EINVAL);
        }
        let needed = u64::from(stride(create.width, create.bpp)) * u64::from(create.height);
        if u64::from(create.buffer_sz) != needed {
            return Err(EINVAL);
        }
        let total = buffer_pages(create.buffer_sz);
        let mut refs = Vec::with_capacity(total);
        let mut next = create.gref_directory;
        while refs.len() < total {
            if next == 0 {
                // The directory lists too few pages.
                return Err(EINVAL);
            }
            let page = reader.read_page(next).ok_or(EINVAL)?;
            let want = (total - refs.len()).min(REFS_PER_DIRECTORY_PAGE);
            let (link, page_refs) = read_directory_page(&page, want);
            refs.extend(page_refs);
            next = link;
        }
        self.buffers.insert(
            create.dbuf_cookie,
            DisplayBuffer {
                width: create.width,
                height: create.height,
                bpp: create.bpp,
                buffer_sz: create.buffer_sz,
                refs,
            },
        );
        Ok(Effect::Created(create.dbuf_cookie))
    }
}
