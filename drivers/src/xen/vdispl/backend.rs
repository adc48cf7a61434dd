//! The backend's rules, independent of how pages are mapped: what each
//! request must satisfy and what it changes. The Dom0 backend and the host
//! tests' fake backend both run requests through [`BackendModel`], so the
//! frontend is tested against the same checks it meets in the rig.

use crate::xen::displif::{
    buffer_pages, checked_stride, read_directory_page, DbufCreate, Request, Response,
    DBUF_FLAG_REQ_ALLOC, FOURCC_RGB565, FOURCC_XRGB8888, REFS_PER_DIRECTORY_PAGE,
};
use crate::xen::gnttab::GrantRef;
use crate::xen::ring::Slot;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
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

/// A request the backend refuses: the status it answers with, and why (for
/// the backend's log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The status (`-XEN_Exx`).
    pub status: i32,
    /// What was wrong with the request.
    pub reason: String,
}

impl Rejection {
    fn new(status: i32, reason: impl Into<String>) -> Self {
        Rejection {
            status,
            reason: reason.into(),
        }
    }
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (status {})", self.reason, self.status)
    }
}

/// Reads the grants of `pages` buffer pages from the page directory that
/// starts at `first` (`struct xendispl_page_directory` pages chained by
/// `gref_dir_next_page`). Fails if a directory page cannot be read or the
/// chain ends before listing `pages` grants.
pub fn read_directory(
    first: GrantRef,
    pages: usize,
    reader: &mut impl DirectoryReader,
) -> Result<Vec<GrantRef>, Rejection> {
    let mut refs = Vec::with_capacity(pages);
    let mut next = first;
    let mut directory_pages = 0;
    while refs.len() < pages {
        if next == 0 {
            return Err(Rejection::new(
                EINVAL,
                format!(
                    "the page directory lists {} of {pages} pages ({directory_pages} directory pages)",
                    refs.len()
                ),
            ));
        }
        let page = reader.read_page(next).ok_or_else(|| {
            Rejection::new(
                EINVAL,
                format!("directory page grant {next} cannot be mapped"),
            )
        })?;
        directory_pages += 1;
        let want = (pages - refs.len()).min(REFS_PER_DIRECTORY_PAGE);
        let (link, page_refs) = read_directory_page(&page, want);
        refs.extend(page_refs);
        next = link;
    }
    Ok(refs)
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

/// Bytes of display buffers one frontend may have at once unless the
/// backend sets another limit: room for four 3840x2160 XRGB8888 connectors
/// double-buffered.
pub const DEFAULT_BUFFER_LIMIT: u64 = 256 << 20;

/// The state of the objects one frontend created.
pub struct BackendModel {
    /// Display buffers by cookie.
    pub buffers: BTreeMap<u64, DisplayBuffer>,
    /// Framebuffers by cookie.
    pub framebuffers: BTreeMap<u64, Framebuffer>,
    /// The most bytes of display buffers the frontend may have at once:
    /// every buffer is mapped into the backend and each flip of it copied,
    /// so a frontend must not size them at will. A DBUF_CREATE that would
    /// go past it is refused with `-XEN_ENOMEM`.
    pub buffer_limit: u64,
}

impl Default for BackendModel {
    fn default() -> Self {
        BackendModel::with_buffer_limit(DEFAULT_BUFFER_LIMIT)
    }
}

/// The response to the request in `slot`: its id and operation, `status`.
pub fn respond(slot: &Slot, status: i32) -> Response {
    Response {
        id: u16::from_le_bytes([slot[0], slot[1]]),
        operation: slot[2],
        status,
        edid_sz: 0,
    }
}

impl BackendModel {
    /// A model for a new connection whose display buffers may total
    /// `buffer_limit` bytes.
    pub fn with_buffer_limit(buffer_limit: u64) -> Self {
        BackendModel {
            buffers: BTreeMap::new(),
            framebuffers: BTreeMap::new(),
            buffer_limit,
        }
    }

    /// Bytes of the display buffers that exist now.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffers
            .values()
            .map(|buffer| u64::from(buffer.buffer_sz))
            .sum()
    }

    /// Applies one request packet; returns the response to send and what
    /// changed. Bad requests get an error status and change nothing.
    pub fn handle(&mut self, slot: &Slot, reader: &mut impl DirectoryReader) -> (Response, Effect) {
        let (response, outcome) = self.handle_explained(slot, reader);
        (response, outcome.unwrap_or(Effect::None))
    }

    /// [`BackendModel::handle`], with the reason when the request is
    /// rejected.
    pub fn handle_explained(
        &mut self,
        slot: &Slot,
        reader: &mut impl DirectoryReader,
    ) -> (Response, Result<Effect, Rejection>) {
        let outcome = match Request::decode(slot) {
            Ok((_, request)) => self.apply(request, reader),
            Err(error) => Err(Rejection::new(EINVAL, format!("{error}"))),
        };
        let status = match &outcome {
            Ok(_) => 0,
            Err(rejection) => rejection.status,
        };
        (respond(slot, status), outcome)
    }

    fn apply(
        &mut self,
        request: Request,
        reader: &mut impl DirectoryReader,
    ) -> Result<Effect, Rejection> {
        match request {
            Request::DbufCreate(create) => self.create(create, reader),
            Request::DbufDestroy { dbuf_cookie } => {
                if let Some((fb_cookie, _)) = self
                    .framebuffers
                    .iter()
                    .find(|(_, fb)| fb.dbuf_cookie == dbuf_cookie)
                {
                    return Err(Rejection::new(
                        EINVAL,
                        format!(
                            "display buffer {dbuf_cookie:#x} still has framebuffer {fb_cookie:#x} attached"
                        ),
                    ));
                }
                self.buffers
                    .remove(&dbuf_cookie)
                    .ok_or_else(|| unknown("display buffer", dbuf_cookie))?;
                Ok(Effect::Destroyed(dbuf_cookie))
            }
            Request::FbAttach {
                dbuf_cookie,
                fb_cookie,
                width,
                height,
                pixel_format,
            } => {
                let buffer = self
                    .buffers
                    .get(&dbuf_cookie)
                    .ok_or_else(|| unknown("display buffer", dbuf_cookie))?;
                if fb_cookie == 0 {
                    return Err(Rejection::new(EINVAL, "framebuffer cookie 0"));
                }
                if self.framebuffers.contains_key(&fb_cookie) {
                    return Err(Rejection::new(
                        EINVAL,
                        format!("framebuffer cookie {fb_cookie:#x} is already in use"),
                    ));
                }
                let bpp = match pixel_format {
                    FOURCC_XRGB8888 => 32,
                    FOURCC_RGB565 => 16,
                    _ => {
                        return Err(Rejection::new(
                            EINVAL,
                            format!("pixel format {pixel_format:#010x} is neither XR24 nor RG16"),
                        ))
                    }
                };
                if width > buffer.width || height > buffer.height || bpp != buffer.bpp {
                    return Err(Rejection::new(
                        EINVAL,
                        format!(
                            "framebuffer {width}x{height} at {bpp} bpp does not fit display buffer \
                             {dbuf_cookie:#x} ({}x{} at {} bpp)",
                            buffer.width, buffer.height, buffer.bpp
                        ),
                    ));
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
                self.framebuffers
                    .remove(&fb_cookie)
                    .ok_or_else(|| unknown("framebuffer", fb_cookie))?;
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
                let framebuffer = self
                    .framebuffers
                    .get(&fb_cookie)
                    .ok_or_else(|| unknown("framebuffer", fb_cookie))?;
                if width > framebuffer.width || height > framebuffer.height {
                    return Err(Rejection::new(
                        EINVAL,
                        format!(
                            "mode {width}x{height} is larger than framebuffer {fb_cookie:#x} ({}x{})",
                            framebuffer.width, framebuffer.height
                        ),
                    ));
                }
                Ok(Effect::Configured(Some(fb_cookie)))
            }
            Request::PageFlip { fb_cookie } => {
                self.framebuffers
                    .get(&fb_cookie)
                    .ok_or_else(|| unknown("framebuffer", fb_cookie))?;
                Ok(Effect::Flipped(fb_cookie))
            }
            Request::GetEdid { .. } => Err(Rejection::new(
                EOPNOTSUPP,
                "GET_EDID is not supported (protocol version 1)",
            )),
        }
    }

    fn create(
        &mut self,
        create: DbufCreate,
        reader: &mut impl DirectoryReader,
    ) -> Result<Effect, Rejection> {
        let cookie = create.dbuf_cookie;
        if cookie == 0 {
            return Err(Rejection::new(EINVAL, "display buffer cookie 0"));
        }
        if self.buffers.contains_key(&cookie) {
            return Err(Rejection::new(
                EINVAL,
                format!("display buffer cookie {cookie:#x} is already in use"),
            ));
        }
        if create.flags & DBUF_FLAG_REQ_ALLOC != 0 {
            // Buffers are always frontend-allocated here (be-alloc = 0).
            return Err(Rejection::new(
                EOPNOTSUPP,
                "backend-allocated buffers (XENDISPL_DBUF_FLG_REQ_ALLOC) are not offered",
            ));
        }
        if !matches!(create.bpp, 16 | 32) {
            return Err(Rejection::new(
                EINVAL,
                format!("{} bits per pixel (16 or 32 expected)", create.bpp),
            ));
        }
        if create.width == 0 || create.height == 0 {
            return Err(Rejection::new(
                EINVAL,
                format!("empty buffer {}x{}", create.width, create.height),
            ));
        }
        if create.data_ofs != 0 {
            return Err(Rejection::new(
                EINVAL,
                format!("data offset {} (only 0 is supported)", create.data_ofs),
            ));
        }
        let row = checked_stride(create.width, create.bpp).ok_or_else(|| {
            Rejection::new(
                EINVAL,
                format!("a row of {} pixels at {} bpp", create.width, create.bpp),
            )
        })?;
        let needed = u64::from(row) * u64::from(create.height);
        if u64::from(create.buffer_sz) != needed {
            return Err(Rejection::new(
                EINVAL,
                format!(
                    "buffer_sz {} does not match {}x{} at {} bpp ({needed} bytes)",
                    create.buffer_sz, create.width, create.height, create.bpp
                ),
            ));
        }
        let in_use = self.buffer_bytes();
        if in_use + needed > self.buffer_limit {
            return Err(Rejection::new(
                ENOMEM,
                format!(
                    "a {}x{} buffer of {needed} bytes would bring the display buffers to {} \
                     bytes, over the limit of {}",
                    create.width,
                    create.height,
                    in_use + needed,
                    self.buffer_limit
                ),
            ));
        }
        let refs = read_directory(
            create.gref_directory,
            buffer_pages(create.buffer_sz),
            reader,
        )?;
        self.buffers.insert(
            cookie,
            DisplayBuffer {
                width: create.width,
                height: create.height,
                bpp: create.bpp,
                buffer_sz: create.buffer_sz,
                refs,
            },
        );
        Ok(Effect::Created(cookie))
    }
}

/// The rejection of a request naming a cookie nobody created.
fn unknown(what: &str, cookie: u64) -> Rejection {
    Rejection::new(ENOENT, format!("no {what} with cookie {cookie:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::displif::{write_directory_page, Request, FOURCC_XRGB8888};
    use std::boxed::Box;
    use std::collections::BTreeMap;
    use std::string::ToString;

    /// Directory pages by grant.
    #[derive(Default)]
    struct Pages(BTreeMap<GrantRef, Box<[u8; 4096]>>);

    impl DirectoryReader for Pages {
        fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]> {
            self.0.get(&gref).map(|page| **page)
        }
    }

    impl Pages {
        /// A directory listing `refs` on pages granted 100, 101, ...
        fn directory(refs: &[GrantRef]) -> Pages {
            let mut pages = Pages::default();
            let chunks: Vec<&[GrantRef]> = refs.chunks(REFS_PER_DIRECTORY_PAGE).collect();
            for (index, chunk) in chunks.iter().enumerate() {
                let next = if index + 1 < chunks.len() {
                    101 + index as GrantRef
                } else {
                    0
                };
                let mut page = Box::new([0u8; 4096]);
                write_directory_page(&mut page, next, chunk);
                pages.0.insert(100 + index as GrantRef, page);
            }
            pages
        }
    }

    #[test]
    fn a_chained_directory_is_read_across_its_pages() {
        let refs: Vec<GrantRef> = (1000..1000 + 1500).collect();
        let mut pages = Pages::directory(&refs);
        assert_eq!(read_directory(100, 1500, &mut pages).unwrap(), refs);
        // Fewer pages than listed: only those are taken.
        assert_eq!(read_directory(100, 3, &mut pages).unwrap(), refs[..3]);
    }

    #[test]
    fn a_short_or_unreadable_directory_is_named() {
        let refs: Vec<GrantRef> = (1000..1030 + 1000).collect();
        let mut pages = Pages::directory(&refs);
        // The first page ends the chain although a second one is needed.
        pages.0.get_mut(&100).unwrap()[0..4].fill(0);
        let short = read_directory(100, 1030, &mut pages).unwrap_err();
        assert_eq!(short.status, EINVAL);
        assert_eq!(
            short.reason,
            "the page directory lists 1023 of 1030 pages (1 directory pages)"
        );
        let unreadable = read_directory(7, 1, &mut pages).unwrap_err();
        assert_eq!(
            unreadable.to_string(),
            "directory page grant 7 cannot be mapped (status -22)"
        );
    }

    fn create(cookie: u64, buffer_sz: u32) -> Request {
        Request::DbufCreate(DbufCreate {
            dbuf_cookie: cookie,
            width: 64,
            height: 2,
            bpp: 32,
            buffer_sz,
            flags: 0,
            gref_directory: 100,
            data_ofs: 0,
        })
    }

    #[test]
    fn rejections_carry_the_status_and_the_reason() {
        let refs: Vec<GrantRef> = (1000..1001).collect();
        let mut pages = Pages::directory(&refs);
        let mut model = BackendModel::default();
        let mut send = |model: &mut BackendModel, request: Request| {
            let (response, outcome) = model.handle_explained(&request.encode(9), &mut pages);
            assert_eq!(response.id, 9);
            assert_eq!(response.operation, request.operation() as u8);
            let status = response.status;
            match outcome {
                Ok(effect) => {
                    assert_eq!(status, 0);
                    Ok(effect)
                }
                Err(rejection) => {
                    assert_eq!(status, rejection.status);
                    Err(rejection.to_string())
                }
            }
        };
        assert_eq!(
            send(&mut model, create(5, 100)),
            Err(String::from(
                "buffer_sz 100 does not match 64x2 at 32 bpp (512 bytes) (status -22)"
            ))
        );
        assert_eq!(send(&mut model, create(5, 512)), Ok(Effect::Created(5)));
        assert_eq!(
            send(&mut model, create(5, 512)),
            Err(String::from(
                "display buffer cookie 0x5 is already in use (status -22)"
            ))
        );
        let attach = Request::FbAttach {
            dbuf_cookie: 5,
            fb_cookie: 6,
            width: 64,
            height: 2,
            pixel_format: FOURCC_XRGB8888,
        };
        assert_eq!(send(&mut model, attach), Ok(Effect::None));
        assert_eq!(
            send(&mut model, Request::DbufDestroy { dbuf_cookie: 5 }),
            Err(String::from(
                "display buffer 0x5 still has framebuffer 0x6 attached (status -22)"
            ))
        );
        assert_eq!(
            send(&mut model, Request::PageFlip { fb_cookie: 7 }),
            Err(String::from("no framebuffer with cookie 0x7 (status -2)"))
        );
        assert_eq!(
            send(
                &mut model,
                Request::GetEdid {
                    buffer_sz: 32768,
                    gref_directory: 100
                }
            ),
            Err(String::from(
                "GET_EDID is not supported (protocol version 1) (status -95)"
            ))
        );
        let mut unknown_operation = Request::PageFlip { fb_cookie: 6 }.encode(9);
        unknown_operation[2] = 0x42;
        let (response, outcome) = model.handle_explained(&unknown_operation, &mut pages);
        assert_eq!((response.operation, response.status), (0x42, EINVAL));
        assert_eq!(outcome.unwrap_err().reason, "unknown operation 0x42");
        // `handle` gives the same answers without the reasons.
        let (response, effect) =
            model.handle(&Request::PageFlip { fb_cookie: 6 }.encode(3), &mut pages);
        assert_eq!(
            (response.id, response.status, effect),
            (3, 0, Effect::Flipped(6))
        );
    }

    #[test]
    fn display_buffers_past_the_limit_are_refused_and_change_nothing() {
        // Each buffer is 64x2 at 32 bpp: 512 bytes in one page.
        let mut pages = Pages::directory(&[1000]);
        let mut model = BackendModel::with_buffer_limit(1024);
        for cookie in [1, 2] {
            let (response, outcome) =
                model.handle_explained(&create(cookie, 512).encode(1), &mut pages);
            assert_eq!((response.status, outcome), (0, Ok(Effect::Created(cookie))));
        }
        let (response, outcome) = model.handle_explained(&create(3, 512).encode(2), &mut pages);
        assert_eq!(response.status, ENOMEM);
        assert_eq!(
            outcome.unwrap_err().reason,
            "a 64x2 buffer of 512 bytes would bring the display buffers to 1536 bytes, over \
             the limit of 1024"
        );
        assert_eq!(model.buffer_bytes(), 1024);
        assert!(!model.buffers.contains_key(&3));
        // Destroying one makes room again.
        let destroy = Request::DbufDestroy { dbuf_cookie: 1 };
        assert_eq!(model.handle(&destroy.encode(3), &mut pages).0.status, 0);
        let (response, _) = model.handle_explained(&create(3, 512).encode(4), &mut pages);
        assert_eq!(response.status, 0);
        assert_eq!(BackendModel::default().buffer_limit, 256 << 20);
    }

    #[test]
    fn a_row_too_wide_for_32_bits_is_rejected_not_wrapped() {
        // width * bpp = 2^32 + 32 wraps to 32: a 4-byte stride would make this 4-byte buffer
        // look right for a width of 134 million pixels.
        let request = Request::DbufCreate(DbufCreate {
            dbuf_cookie: 1,
            width: (1 << 27) + 1,
            height: 1,
            bpp: 32,
            buffer_sz: 4,
            flags: 0,
            gref_directory: 100,
            data_ofs: 0,
        });
        let mut pages = Pages::directory(&[1000]);
        let mut model = BackendModel::default();
        let (response, outcome) = model.handle_explained(&request.encode(3), &mut pages);
        assert_eq!(response.status, EINVAL);
        assert_eq!(
            outcome.unwrap_err().reason,
            "a row of 134217729 pixels at 32 bpp"
        );
        assert!(model.buffers.is_empty());
    }
}
