//! What the display frontend ([`super::frontend`]) needs from the OS it runs
//! on, and what it asks of the application that draws the frames: the guest
//! implements [`Env`] with hypercalls, its heap and its timer; host tests
//! with fakes that play Xen's, xenstored's and the backend's side
//! ([`super::fake_env`]). The shape follows virtio-drivers' `Hal`: small,
//! no policy, everything the frontend decides stays in the frontend.

use crate::xen::error::XenError;
use crate::xen::gnttab::{ForeignMapError, GrantError, GrantRef};
use crate::xen::hypercall::ShutdownReason;
use crate::xen::kbdif::{InputEvent, KbdPage};
use crate::xen::ring::{EventPage, SharedRing};
use crate::xen::xenstore::client::{Client, Transport};
use core::fmt;
use core::ops::Deref;
use embedded_graphics::draw_target::DrawTarget;
use embedded_graphics::pixelcolor::Rgb888;

/// Zeroed, page-aligned pages shared with the backend (display buffers,
/// page directories, the EDID buffer); freed on drop.
pub trait PageMemory {
    /// Number of pages.
    fn pages(&self) -> usize;
    /// Guest frame number of page `index`.
    fn frame(&self, index: usize) -> u64;
    /// Runs `f` on the pages.
    fn with_pages<R>(&mut self, f: impl FnOnce(&mut [[u8; 4096]]) -> R) -> R;
}

/// The OS below the frontend: grants, event channels, clock and wait,
/// xenstore, page memory, the heap's figure, shutdown requests and the
/// console.
pub trait Env {
    /// The xenstore connection's transport.
    type Transport: Transport;
    /// A request ring page the frontend owns.
    type Ring: Deref<Target = SharedRing>;
    /// An event page the frontend owns.
    type Events: Deref<Target = EventPage>;
    /// Pages for buffers.
    type Pages: PageMemory;
    /// An input page the input frontend owns (io/kbdif.h).
    type Input: Deref<Target = KbdPage>;
    /// Pages another domain granted, mapped where the frontend can draw
    /// into them (a backend-allocated buffer).
    type Foreign: PageMemory;

    /// Monotonic nanoseconds.
    fn now_ns(&self) -> u64;
    /// Sleeps until one of `ports` or xenstore's event channel fires, or
    /// the clock reaches `deadline_ns`; takes the marks of those that fired.
    fn wait(&mut self, ports: &[u32], deadline_ns: u64);
    /// Runs `f` with the xenstore client; `None` when there is none.
    fn with_store<R>(&mut self, f: impl FnOnce(&mut Client<Self::Transport>) -> R) -> Option<R>;

    /// Grants domain `domid` access to guest frame `frame` (read-write).
    fn grant(&mut self, domid: u16, frame: u64) -> Result<GrantRef, GrantError>;
    /// Ends a grant; [`GrantError::InUse`] while the peer maps it.
    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantError>;
    /// Grant references in use.
    fn grants_in_use(&mut self) -> u32;

    /// An unbound event channel for domain `remote`, unmasked
    /// (EVTCHNOP_alloc_unbound, EVTCHNOP_unmask).
    fn open_channel(&mut self, remote: u16) -> Result<u32, XenError>;
    /// Notifies `port`'s peer (EVTCHNOP_send).
    fn notify(&mut self, port: u32);
    /// Closes `port` (EVTCHNOP_close) and forgets its marks.
    fn close_channel(&mut self, port: u32);

    /// A zeroed request ring page and its frame number.
    fn ring_page(&mut self) -> Option<(Self::Ring, u64)>;
    /// A zeroed event page and its frame number.
    fn event_page(&mut self) -> Option<(Self::Events, u64)>;
    /// A zeroed input page and its frame number.
    fn input_page(&mut self) -> Option<(Self::Input, u64)>;
    /// Maps the pages `refs` that domain `domid` granted, in order, into the
    /// guest's window for foreign pages (`GNTTABOP_map_grant_ref`).
    fn map_foreign(&mut self, domid: u16, refs: &[GrantRef])
        -> Result<Self::Foreign, ForeignError>;
    /// Unmaps pages [`Env::map_foreign`] mapped (`GNTTABOP_unmap_grant_ref`)
    /// and gives their window back.
    fn unmap_foreign(&mut self, pages: Self::Foreign) -> Result<(), ForeignError>;
    /// Pages of other domains mapped now ([`Env::map_foreign`] and not yet
    /// unmapped).
    fn foreign_in_use(&mut self) -> usize {
        0
    }
    /// Keeps an input page allocated for good: the backend still maps it.
    fn leak_input(&mut self, page: Self::Input) {
        core::mem::forget(page);
    }
    /// `count` zeroed pages in a row, or `None` when memory runs short.
    fn pages(&mut self, count: usize) -> Option<Self::Pages>;
    /// Keeps `pages` allocated for good: the backend still maps them.
    fn leak(&mut self, pages: Self::Pages) {
        core::mem::forget(pages);
    }
    /// Keeps ring pages allocated for good: the backend still maps them.
    fn leak_rings(&mut self, ring: Self::Ring, events: Self::Events) {
        core::mem::forget((ring, events));
    }
    /// Heap bytes in use.
    fn heap_in_use(&mut self) -> usize;
    /// Heap bytes free, for the line that says memory ran short.
    fn heap_free(&mut self) -> usize;

    /// The shutdown the toolstack asked for, once.
    fn shutdown_requested(&mut self) -> Option<ShutdownReason>;
    /// Prints a console line (the lines the rig reads).
    fn print(&mut self, line: fmt::Arguments<'_>);
    /// Logs a line at `level`.
    fn log(&mut self, level: log::Level, line: fmt::Arguments<'_>);
}

/// Why pages another domain granted could not be mapped or unmapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignError {
    /// Xen refused (a page, or the hypercall).
    Map(ForeignMapError),
    /// The window for foreign pages has no free run this long.
    Window {
        /// Pages asked for.
        pages: usize,
        /// The longest free run, in pages.
        free: usize,
    },
}

impl fmt::Display for ForeignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForeignError::Map(error) => write!(f, "{error}"),
            ForeignError::Window { pages, free } => write!(
                f,
                "the window for foreign pages has {free} pages free in a row, {pages} are needed"
            ),
        }
    }
}

/// A connector as the application draws it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Screen<'a> {
    /// Its index in the device.
    pub index: u32,
    /// Its `unique-id`.
    pub name: &'a str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per pixel of its buffers (32 or 16): the depth actually used.
    pub bpp: u32,
}

/// Live figures a frame may show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Milliseconds since the connection started.
    pub uptime_ms: u64,
    /// Frames flipped on this connector so far (the flip's sequence
    /// number).
    pub flips: u64,
    /// Round trip of the last flip, in microseconds.
    pub flip_rtt_us: u64,
    /// Heap bytes in use.
    pub heap_bytes: u64,
    /// Grant references in use.
    pub grants: u64,
}

/// What the frontend shows: a fixed number of frames per connector, drawn
/// on demand.
pub trait App {
    /// What is kept with a frame until it is shown (the guest's flip line).
    type Shown;
    /// Frames each connector shows.
    fn total_frames(&self) -> u64;
    /// Draws frame `number` (below [`App::total_frames`]) of `screen` with
    /// `figures` into `target`.
    fn draw<D: DrawTarget<Color = Rgb888>>(
        &mut self,
        screen: &Screen<'_>,
        number: u64,
        figures: Figures,
        target: &mut D,
    ) -> Self::Shown;
    /// A frame drawn earlier is on the screen (its flip completed or was
    /// released); `last` when it was the connector's last frame.
    fn shown(&mut self, shown: Self::Shown, last: bool);
    /// An input event, for the display connector whose `unique-id` its
    /// input device names (`None` when it names none of them). Events come
    /// between frames, in the order the backend sent them.
    fn input(&mut self, connector: Option<u32>, event: InputEvent) {
        let _ = (connector, event);
    }
    /// Whether the application is done: no connector draws another frame.
    fn finished(&self) -> bool {
        false
    }
}
