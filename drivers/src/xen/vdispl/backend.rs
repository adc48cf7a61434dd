//! The backend's rules, independent of how pages are mapped: what each
//! request must satisfy and what it changes (xen/include/public/io/displif.h,
//! checked against Linux's xen-drm-front as a client and the xen-troops
//! displ_be DRM backend). The Dom0 backend and the host tests' fake backend
//! both run requests through [`BackendModel`], so the frontend is tested
//! against the same checks it meets in the rig.
//!
//! - SET_CONFIG shows a framebuffer in the connector's mode: its
//!   `resolution` node (the EDID the backend sends describes the same mode),
//!   or with [`Strictness::Strict`] any mode of the host connector's list.
//!   All zeros switches the connector off.
//! - PG_FLIP needs a connector switched on by SET_CONFIG.
//! - DBUF_CREATE takes any pitch a frontend may use (at least
//!   `ceil(width * bpp / 8)` bytes a row) as long as `buffer_sz` covers the
//!   rows; the pitch is inferred from the size.
//! - DBUF_DESTROY of a buffer with framebuffers attached detaches them.
//! - FB_ATTACH takes every format Linux's frontend offers
//!   ([`crate::xen::displif::FRONTEND_FORMATS`]).

use crate::xen::displif::{
    buffer_pages, format_bpp, fourcc_name, infer_pitch, min_pitch, read_directory_page, DbufCreate,
    Request, Response, DBUF_FLAG_REQ_ALLOC, FOURCC_YUYV, REFS_PER_DIRECTORY_PAGE,
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

/// Reads the pages of a frontend's page directory, and allocates the pages
/// of buffers the backend provides (`be-alloc`).
pub trait DirectoryReader {
    /// The page granted as `gref`, or `None` if it cannot be mapped.
    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]>;

    /// Allocates `pages` pages for a buffer the frontend asked the backend
    /// to allocate (XENDISPL_DBUF_FLG_REQ_ALLOC), grants them to the
    /// frontend and writes their grants into the frontend's directory
    /// chained from `directory`; their grants, or why not. `None`: this
    /// backend allocates no buffers.
    fn allocate(
        &mut self,
        directory: GrantRef,
        pages: usize,
    ) -> Option<Result<Vec<GrantRef>, String>> {
        let _ = (directory, pages);
        None
    }

    /// Gives back what [`DirectoryReader::allocate`] allocated (its buffer
    /// was destroyed).
    fn free(&mut self, refs: &[GrantRef]) {
        let _ = refs;
    }
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
    /// Bytes from one row to the next, inferred from the size
    /// ([`crate::xen::displif::infer_pitch`]): what a capture must step by.
    pub pitch: u32,
    /// Grants of its pages, in order.
    pub refs: Vec<GrantRef>,
    /// Whether the backend allocated its pages (`be-alloc`).
    pub backend_allocated: bool,
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

/// The display sizes a host DRM connector offers when it has no EDID, as
/// Linux's `drm_add_modes_noedid` lists them for virtio-gpu: the VESA DMT
/// sizes (`drm_dmt_modes` in drivers/gpu/drm/drm_edid.c) that have a mode of
/// at most 61 Hz. A strict backend ([`Strictness::Strict`]) sets a mode only
/// from such a list, as displ_be does (`findMode`: exact width and height).
pub const HOST_MODES: [(u32, u32); 24] = [
    (640, 480),
    (800, 600),
    (848, 480),
    (1024, 768),
    (1280, 720),
    (1280, 768),
    (1280, 800),
    (1280, 960),
    (1280, 1024),
    (1360, 768),
    (1366, 768),
    (1400, 1050),
    (1440, 900),
    (1600, 900),
    (1600, 1200),
    (1680, 1050),
    (1792, 1344),
    (1856, 1392),
    (1920, 1080),
    (1920, 1200),
    (1920, 1440),
    (2048, 1152),
    (2560, 1600),
    (4096, 2160),
];

/// How closely the backend copies a deployed DRM backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Strictness {
    /// This project's backend: any connector resolution is a mode, every
    /// depth Linux's frontend offers is taken.
    #[default]
    Lenient,
    /// As the xen-troops DRM backend on a virtio-gpu host: SET_CONFIG only
    /// for a size in `host_modes` (else `-XEN_EINVAL`), and display buffers
    /// of 32 bpp only (a DRM dumb buffer on virtio-gpu is 32 bpp; others get
    /// `-XEN_EINVAL`).
    Strict {
        /// The host connector's modes (width, height).
        host_modes: Vec<(u32, u32)>,
    },
}

impl Strictness {
    /// [`Strictness::Strict`] with [`HOST_MODES`].
    pub fn strict() -> Self {
        Strictness::Strict {
            host_modes: HOST_MODES.to_vec(),
        }
    }
}

/// What SET_CONFIG set on a connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    /// The framebuffer it showed first.
    pub fb_cookie: u64,
    /// The mode's width.
    pub width: u32,
    /// The mode's height.
    pub height: u32,
}

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
    /// Each connector's `resolution` (by index), when the backend told the
    /// model ([`BackendModel::set_connector_mode`]); SET_CONFIG on a
    /// connector without one is checked against the framebuffer only.
    pub modes: BTreeMap<usize, (u32, u32)>,
    /// Connectors switched on by SET_CONFIG, by index.
    pub shown: BTreeMap<usize, Shown>,
    /// Which rules apply.
    pub strictness: Strictness,
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
            modes: BTreeMap::new(),
            shown: BTreeMap::new(),
            strictness: Strictness::Lenient,
        }
    }

    /// A model with the default buffer limit, `strictness` and the
    /// connectors' resolutions (index, width, height).
    pub fn for_connectors(
        strictness: Strictness,
        resolutions: impl IntoIterator<Item = (usize, u32, u32)>,
    ) -> Self {
        let mut model = BackendModel {
            strictness,
            ..BackendModel::default()
        };
        for (index, width, height) in resolutions {
            model.set_connector_mode(index, width, height);
        }
        model
    }

    /// Connector `index`'s mode is `width` x `height` (its `resolution`
    /// node, which the EDID the backend sends for it repeats).
    pub fn set_connector_mode(&mut self, index: usize, width: u32, height: u32) {
        self.modes.insert(index, (width, height));
    }

    /// Bytes of the display buffers that exist now.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffers
            .values()
            .map(|buffer| u64::from(buffer.buffer_sz))
            .sum()
    }

    /// Applies one request packet taken from connector 0's ring; see
    /// [`BackendModel::handle_on`].
    pub fn handle(&mut self, slot: &Slot, reader: &mut impl DirectoryReader) -> (Response, Effect) {
        self.handle_on(0, slot, reader)
    }

    /// Applies one request packet taken from connector `connector`'s ring;
    /// returns the response to send and what changed. Bad requests get an
    /// error status and change nothing.
    pub fn handle_on(
        &mut self,
        connector: usize,
        slot: &Slot,
        reader: &mut impl DirectoryReader,
    ) -> (Response, Effect) {
        let (response, outcome) = self.handle_explained_on(connector, slot, reader);
        (response, outcome.unwrap_or(Effect::None))
    }

    /// [`BackendModel::handle`], with the reason when the request is
    /// rejected.
    pub fn handle_explained(
        &mut self,
        slot: &Slot,
        reader: &mut impl DirectoryReader,
    ) -> (Response, Result<Effect, Rejection>) {
        self.handle_explained_on(0, slot, reader)
    }

    /// [`BackendModel::handle_on`], with the reason when the request is
    /// rejected.
    pub fn handle_explained_on(
        &mut self,
        connector: usize,
        slot: &Slot,
        reader: &mut impl DirectoryReader,
    ) -> (Response, Result<Effect, Rejection>) {
        let outcome = match Request::decode(slot) {
            Ok((_, request)) => self.apply(connector, request, reader),
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
        connector: usize,
        request: Request,
        reader: &mut impl DirectoryReader,
    ) -> Result<Effect, Rejection> {
        match request {
            Request::DbufCreate(create) => self.create(create, reader),
            Request::DbufDestroy { dbuf_cookie } => {
                if !self.buffers.contains_key(&dbuf_cookie) {
                    return Err(unknown("display buffer", dbuf_cookie));
                }
                // displ_be allows it, and Linux may destroy a dumb buffer whose
                // framebuffer it has not removed yet: the framebuffers go with it.
                self.framebuffers
                    .retain(|_, framebuffer| framebuffer.dbuf_cookie != dbuf_cookie);
                if let Some(buffer) = self.buffers.remove(&dbuf_cookie) {
                    if buffer.backend_allocated {
                        reader.free(&buffer.refs);
                    }
                }
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
                let name: String = fourcc_name(pixel_format).iter().collect();
                let bpp = format_bpp(pixel_format).ok_or_else(|| {
                    Rejection::new(
                        EINVAL,
                        format!(
                            "pixel format {pixel_format:#010x} ({name}) is not one Linux's \
                             frontend offers"
                        ),
                    )
                })?;
                if width == 0
                    || height == 0
                    || width > buffer.width
                    || height > buffer.height
                    || bpp != buffer.bpp
                {
                    return Err(Rejection::new(
                        EINVAL,
                        format!(
                            "framebuffer {width}x{height} {name} at {bpp} bpp does not fit \
                             display buffer {dbuf_cookie:#x} ({}x{} at {} bpp)",
                            buffer.width, buffer.height, buffer.bpp
                        ),
                    ));
                }
                if pixel_format == FOURCC_YUYV && !width.is_multiple_of(2) {
                    return Err(Rejection::new(
                        EINVAL,
                        format!("YUYV framebuffer of odd width {width}"),
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
            } => self.set_config(connector, fb_cookie, (x, y, width, height), bpp),
            Request::PageFlip { fb_cookie } => {
                let framebuffer = self
                    .framebuffers
                    .get(&fb_cookie)
                    .ok_or_else(|| unknown("framebuffer", fb_cookie))?;
                let shown = self.shown.get(&connector).ok_or_else(|| {
                    Rejection::new(
                        EINVAL,
                        format!(
                            "connector {connector} is off: no SET_CONFIG switched it on before \
                             this flip"
                        ),
                    )
                })?;
                if framebuffer.width < shown.width || framebuffer.height < shown.height {
                    return Err(Rejection::new(
                        EINVAL,
                        format!(
                            "framebuffer {fb_cookie:#x} ({}x{}) is smaller than the mode {}x{}",
                            framebuffer.width, framebuffer.height, shown.width, shown.height
                        ),
                    ));
                }
                Ok(Effect::Flipped(fb_cookie))
            }
            Request::GetEdid { .. } => Err(Rejection::new(
                EOPNOTSUPP,
                "GET_EDID is not supported (protocol version 1)",
            )),
        }
    }

    /// SET_CONFIG on `connector`: all zeros switches it off; otherwise the
    /// framebuffer must exist, hold the rectangle at (x, y) and have the
    /// request's depth, and the size must be the connector's mode.
    fn set_config(
        &mut self,
        connector: usize,
        fb_cookie: u64,
        (x, y, width, height): (u32, u32, u32, u32),
        bpp: u32,
    ) -> Result<Effect, Rejection> {
        if fb_cookie == 0 && (x, y, width, height, bpp) == (0, 0, 0, 0, 0) {
            self.shown.remove(&connector);
            return Ok(Effect::Configured(None));
        }
        let framebuffer = self
            .framebuffers
            .get(&fb_cookie)
            .ok_or_else(|| unknown("framebuffer", fb_cookie))?;
        let fits = |offset: u32, size: u32, limit: u32| {
            u64::from(offset) + u64::from(size) <= u64::from(limit)
        };
        if !fits(x, width, framebuffer.width) || !fits(y, height, framebuffer.height) {
            return Err(Rejection::new(
                EINVAL,
                format!(
                    "mode {width}x{height} at ({x}, {y}) is outside framebuffer {fb_cookie:#x} \
                     ({}x{})",
                    framebuffer.width, framebuffer.height
                ),
            ));
        }
        let format_bits = format_bpp(framebuffer.pixel_format).unwrap_or(0);
        if bpp != format_bits {
            return Err(Rejection::new(
                EINVAL,
                format!(
                    "{bpp} bpp, but framebuffer {fb_cookie:#x} has {format_bits} bits per pixel"
                ),
            ));
        }
        match &self.strictness {
            Strictness::Strict { host_modes } => {
                if !host_modes.contains(&(width, height)) {
                    return Err(Rejection::new(
                        EINVAL,
                        format!("no host mode is {width}x{height}"),
                    ));
                }
            }
            Strictness::Lenient => {
                if let Some(&(mode_width, mode_height)) = self.modes.get(&connector) {
                    if (width, height) != (mode_width, mode_height) {
                        return Err(Rejection::new(
                            EINVAL,
                            format!(
                                "mode {width}x{height} is not connector {connector}'s \
                                 {mode_width}x{mode_height}"
                            ),
                        ));
                    }
                }
            }
        }
        self.shown.insert(
            connector,
            Shown {
                fb_cookie,
                width,
                height,
            },
        );
        Ok(Effect::Configured(Some(fb_cookie)))
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
        let backend_allocated = create.flags & DBUF_FLAG_REQ_ALLOC != 0;
        match self.strictness {
            Strictness::Strict { .. } if create.bpp != 32 => {
                return Err(Rejection::new(
                    EINVAL,
                    format!(
                        "{} bits per pixel: the host's dumb buffers are 32 bpp only",
                        create.bpp
                    ),
                ))
            }
            _ if !matches!(create.bpp, 16 | 24 | 32) => {
                return Err(Rejection::new(
                    EINVAL,
                    format!("{} bits per pixel (16, 24 or 32 expected)", create.bpp),
                ))
            }
            _ => {}
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
        let shortest = min_pitch(create.width, create.bpp).ok_or_else(|| {
            Rejection::new(
                EINVAL,
                format!("a row of {} pixels at {} bpp", create.width, create.bpp),
            )
        })?;
        let pitch = infer_pitch(create.width, create.height, create.bpp, create.buffer_sz)
            .ok_or_else(|| {
                Rejection::new(
                    EINVAL,
                    format!(
                        "buffer_sz {} is less than {}x{} at {} bpp ({} bytes, rows of {shortest})",
                        create.buffer_sz,
                        create.width,
                        create.height,
                        create.bpp,
                        u64::from(shortest) * u64::from(create.height)
                    ),
                )
            })?;
        let needed = u64::from(create.buffer_sz);
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
        let pages = buffer_pages(create.buffer_sz);
        let refs =
            if backend_allocated {
                match reader.allocate(create.gref_directory, pages) {
                    None => return Err(Rejection::new(
                        EOPNOTSUPP,
                        "backend-allocated buffers (XENDISPL_DBUF_FLG_REQ_ALLOC) are not offered",
                    )),
                    Some(Err(why)) => {
                        return Err(Rejection::new(
                            ENOMEM,
                            format!("cannot allocate {pages} pages: {why}"),
                        ))
                    }
                    Some(Ok(refs)) => refs,
                }
            } else {
                read_directory(create.gref_directory, pages, reader)?
            };
        self.buffers.insert(
            cookie,
            DisplayBuffer {
                width: create.width,
                height: create.height,
                bpp: create.bpp,
                buffer_sz: create.buffer_sz,
                pitch,
                refs,
                backend_allocated,
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
                "buffer_sz 100 is less than 64x2 at 32 bpp (512 bytes, rows of 256) (status -22)"
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
            send(&mut model, Request::PageFlip { fb_cookie: 6 }),
            Err(String::from(
                "connector 0 is off: no SET_CONFIG switched it on before this flip (status -22)"
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
        let config = Request::SetConfig {
            fb_cookie: 6,
            x: 0,
            y: 0,
            width: 64,
            height: 2,
            bpp: 32,
        };
        assert_eq!(send(&mut model, config), Ok(Effect::Configured(Some(6))));
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

    /// A request packet built from displif.h's struct offsets (`struct
    /// xendispl_req`: id u16 @0, operation u8 @2, the operation's struct
    /// from @8), independently of `Request::encode`.
    fn raw(id: u16, operation: u8, fields: &[(usize, u64, usize)]) -> Slot {
        let mut slot = [0u8; 64];
        slot[0..2].copy_from_slice(&id.to_le_bytes());
        slot[2] = operation;
        for &(offset, value, width) in fields {
            slot[offset..offset + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        slot
    }

    /// `struct xendispl_resp` of an answer: (id @0, operation @2, status @4).
    fn status_of(response: &Response) -> (u16, u8, i32) {
        let bytes = response.encode();
        (
            u16::from_le_bytes([bytes[0], bytes[1]]),
            bytes[2],
            i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        )
    }

    const OP_DBUF_CREATE: u8 = 0x10;
    const OP_DBUF_DESTROY: u8 = 0x11;
    const OP_FB_ATTACH: u8 = 0x12;
    const OP_SET_CONFIG: u8 = 0x14;
    const OP_PG_FLIP: u8 = 0x15;

    /// DBUF_CREATE: dbuf_cookie @8, width @16, height @20, bpp @24,
    /// buffer_sz @28, flags @32, gref_directory @36, data_ofs @40.
    fn raw_create(cookie: u64, width: u32, height: u32, bpp: u32, buffer_sz: u32) -> Slot {
        raw(
            1,
            OP_DBUF_CREATE,
            &[
                (8, cookie, 8),
                (16, width.into(), 4),
                (20, height.into(), 4),
                (24, bpp.into(), 4),
                (28, buffer_sz.into(), 4),
                (36, 100, 4),
            ],
        )
    }

    /// FB_ATTACH: dbuf_cookie @8, fb_cookie @16, width @24, height @28,
    /// pixel_format @32.
    fn raw_attach(dbuf: u64, fb: u64, width: u32, height: u32, fourcc: &[u8; 4]) -> Slot {
        raw(
            2,
            OP_FB_ATTACH,
            &[
                (8, dbuf, 8),
                (16, fb, 8),
                (24, width.into(), 4),
                (28, height.into(), 4),
                (32, u32::from_le_bytes(*fourcc).into(), 4),
            ],
        )
    }

    /// SET_CONFIG: fb_cookie @8, x @16, y @20, width @24, height @28, bpp @32.
    fn raw_config(fb: u64, x: u32, y: u32, width: u32, height: u32, bpp: u32) -> Slot {
        raw(
            3,
            OP_SET_CONFIG,
            &[
                (8, fb, 8),
                (16, x.into(), 4),
                (20, y.into(), 4),
                (24, width.into(), 4),
                (28, height.into(), 4),
                (32, bpp.into(), 4),
            ],
        )
    }

    /// PG_FLIP: fb_cookie @8.
    fn raw_flip(fb: u64) -> Slot {
        raw(4, OP_PG_FLIP, &[(8, fb, 8)])
    }

    /// Status of one packet on connector `connector`.
    fn status(model: &mut BackendModel, connector: usize, slot: &Slot) -> i32 {
        let mut pages = Pages::directory(&(1000..1100).collect::<Vec<_>>());
        let (response, _) = model.handle_on(connector, slot, &mut pages);
        let (id, operation, status) = status_of(&response);
        assert_eq!(
            (id, operation),
            (u16::from_le_bytes([slot[0], slot[1]]), slot[2])
        );
        status
    }

    /// A model with connector 0 at 64x48 and connector 1 at 32x16, and a
    /// 64x48 XRGB8888 framebuffer 0xf0 on display buffer 0xd0.
    fn configured_model(strictness: Strictness) -> BackendModel {
        let mut model = BackendModel::for_connectors(strictness, [(0, 64, 48), (1, 32, 16)]);
        assert_eq!(
            status(&mut model, 0, &raw_create(0xd0, 64, 48, 32, 64 * 48 * 4)),
            0
        );
        assert_eq!(
            status(&mut model, 0, &raw_attach(0xd0, 0xf0, 64, 48, b"XR24")),
            0
        );
        model
    }

    #[test]
    fn set_config_must_match_the_connectors_mode() {
        let mut model = configured_model(Strictness::Lenient);
        // Connector 1 is 32x16: the framebuffer holds it, but 64x48 is not its mode.
        assert_eq!(
            status(&mut model, 1, &raw_config(0xf0, 0, 0, 64, 48, 32)),
            EINVAL
        );
        assert_eq!(
            status(&mut model, 1, &raw_config(0xf0, 0, 0, 32, 16, 32)),
            0
        );
        // Connector 0: its resolution, at the framebuffer's depth, inside it.
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf0, 0, 0, 32, 16, 32)),
            EINVAL
        );
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf0, 0, 0, 64, 48, 16)),
            EINVAL
        );
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf0, 1, 0, 64, 48, 32)),
            EINVAL
        );
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf1, 0, 0, 64, 48, 32)),
            ENOENT
        );
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf0, 0, 0, 64, 48, 32)),
            0
        );
        assert_eq!(
            model.shown.get(&0),
            Some(&Shown {
                fb_cookie: 0xf0,
                width: 64,
                height: 48
            })
        );
        // All zeros switches it off.
        assert_eq!(status(&mut model, 0, &raw_config(0, 0, 0, 0, 0, 0)), 0);
        assert!(!model.shown.contains_key(&0));
    }

    #[test]
    fn a_flip_before_set_config_switched_the_connector_on_is_refused() {
        let mut model = configured_model(Strictness::Lenient);
        assert_eq!(status(&mut model, 0, &raw_flip(0xf0)), EINVAL);
        // An unknown framebuffer is named first.
        assert_eq!(status(&mut model, 0, &raw_flip(0xf7)), ENOENT);
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf0, 0, 0, 64, 48, 32)),
            0
        );
        assert_eq!(status(&mut model, 0, &raw_flip(0xf0)), 0);
        // Connector 1 is still off.
        assert_eq!(status(&mut model, 1, &raw_flip(0xf0)), EINVAL);
        // Switched off again, flips are refused again.
        assert_eq!(status(&mut model, 0, &raw_config(0, 0, 0, 0, 0, 0)), 0);
        assert_eq!(status(&mut model, 0, &raw_flip(0xf0)), EINVAL);
    }

    #[test]
    fn any_pitch_a_frontend_may_use_is_taken_when_the_size_covers_it() {
        let mut model = BackendModel::default();
        // RGB565 at an odd width: Linux's pitch 2 * 801 = 1602, ours 1604.
        assert_eq!(
            status(&mut model, 0, &raw_create(1, 801, 3, 16, 1602 * 3)),
            0
        );
        assert_eq!(model.buffers[&1].pitch, 1602);
        assert_eq!(
            status(&mut model, 0, &raw_create(2, 801, 3, 16, 1604 * 3)),
            0
        );
        assert_eq!(model.buffers[&2].pitch, 1604);
        // RGB888 at 3 bytes a pixel.
        assert_eq!(status(&mut model, 0, &raw_create(3, 7, 2, 24, 21 * 2)), 0);
        assert_eq!(model.buffers[&3].pitch, 21);
        // A page-padded size covers the rows too.
        assert_eq!(status(&mut model, 0, &raw_create(4, 64, 2, 32, 4096)), 0);
        assert_eq!(model.buffers[&4].pitch, 2048);
        // One byte short of Linux's rows.
        assert_eq!(
            status(&mut model, 0, &raw_create(5, 801, 3, 16, 1602 * 3 - 1)),
            EINVAL
        );
        assert!(!model.buffers.contains_key(&5));
        // The buffer's pages are the size's: ceil(4806 / 4096) = 2 grants.
        assert_eq!(model.buffers[&1].refs, [1000, 1001]);
    }

    #[test]
    fn destroying_a_buffer_detaches_its_framebuffers() {
        let mut model = configured_model(Strictness::Lenient);
        assert_eq!(
            status(&mut model, 0, &raw_attach(0xd0, 0xf1, 32, 16, b"XR24")),
            0
        );
        let destroy = raw(9, OP_DBUF_DESTROY, &[(8, 0xd0, 8)]);
        let mut pages = Pages::default();
        let (response, effect) = model.handle(&destroy, &mut pages);
        assert_eq!(
            (status_of(&response).2, effect),
            (0, Effect::Destroyed(0xd0))
        );
        assert!(model.framebuffers.is_empty() && model.buffers.is_empty());
        // The cookies are free again; flipping the old framebuffer names it unknown.
        assert_eq!(status(&mut model, 0, &raw_flip(0xf0)), ENOENT);
        assert_eq!(status(&mut model, 0, &destroy), ENOENT);
    }

    #[test]
    fn every_format_linux_offers_is_attached_at_its_depth() {
        let formats: [(&[u8; 4], u32); 9] = [
            (b"RG16", 16),
            (b"RG24", 24),
            (b"XR24", 32),
            (b"AR24", 32),
            (b"XR12", 16),
            (b"AR12", 16),
            (b"XR15", 16),
            (b"AR15", 16),
            (b"YUYV", 16),
        ];
        let mut model = BackendModel::for_connectors(Strictness::Lenient, [(0, 8, 2)]);
        for (index, (fourcc, bpp)) in formats.iter().enumerate() {
            let dbuf = 0x100 + index as u64;
            let fb = 0x200 + index as u64;
            let pitch = 8 * bpp / 8;
            assert_eq!(
                status(&mut model, 0, &raw_create(dbuf, 8, 2, *bpp, pitch * 2)),
                0
            );
            // Another depth than the buffer's is refused.
            let other = if *bpp == 32 { 16 } else { 32 };
            let mismatched = 0x300 + index as u64;
            assert_eq!(
                status(
                    &mut model,
                    0,
                    &raw_create(mismatched, 8, 2, other, 8 * other / 8 * 2)
                ),
                0
            );
            assert_eq!(
                status(&mut model, 0, &raw_attach(mismatched, fb, 8, 2, fourcc)),
                EINVAL,
                "{fourcc:?} on a {other} bpp buffer"
            );
            assert_eq!(
                status(&mut model, 0, &raw_attach(dbuf, fb, 8, 2, fourcc)),
                0
            );
            // SET_CONFIG carries the format's depth, as Linux sends cpp[0] * 8.
            assert_eq!(status(&mut model, 0, &raw_config(fb, 0, 0, 8, 2, *bpp)), 0);
            assert_eq!(status(&mut model, 0, &raw_flip(fb)), 0);
        }
        assert_eq!(
            status(&mut model, 0, &raw_attach(0x100, 0x2ff, 8, 2, b"NV12")),
            EINVAL
        );
        // YUYV pairs pixels: an odd width cannot be.
        assert_eq!(status(&mut model, 0, &raw_create(0x400, 7, 2, 16, 28)), 0);
        assert_eq!(
            status(&mut model, 0, &raw_attach(0x400, 0x401, 7, 2, b"YUYV")),
            EINVAL
        );
        assert_eq!(
            status(&mut model, 0, &raw_attach(0x400, 0x402, 7, 2, b"RG16")),
            0
        );
    }

    #[test]
    fn the_strict_rules_are_the_drm_backends() {
        // Connector 0 is 64x48, which no host mode is; 1280x720 is one.
        let mut model = configured_model(Strictness::strict());
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf0, 0, 0, 64, 48, 32)),
            EINVAL
        );
        assert_eq!(status(&mut model, 0, &raw_flip(0xf0)), EINVAL);
        let size = 1280 * 720 * 4;
        let pages = (size as usize).div_ceil(4096) as u32;
        let mut directory = Pages::directory(&(2000..2000 + pages).collect::<Vec<_>>());
        let (response, _) = model.handle(&raw_create(0xd1, 1280, 720, 32, size), &mut directory);
        assert_eq!(status_of(&response).2, 0);
        assert_eq!(
            status(&mut model, 0, &raw_attach(0xd1, 0xf1, 1280, 720, b"XR24")),
            0
        );
        assert_eq!(
            status(&mut model, 0, &raw_config(0xf1, 0, 0, 1280, 720, 32)),
            0
        );
        assert_eq!(status(&mut model, 0, &raw_flip(0xf1)), 0);
        // 16 bpp buffers are refused, 32 bpp ones taken.
        assert_eq!(
            status(&mut model, 0, &raw_create(0xd2, 64, 48, 16, 64 * 48 * 2)),
            EINVAL
        );
        assert!(!model.buffers.contains_key(&0xd2));
        assert_eq!(
            HOST_MODES
                .iter()
                .filter(|mode| **mode == (800, 600))
                .count(),
            1
        );
    }
}
