//! The main job: every vdispl device's connectors driven by the frontend in
//! drivers ([`drivers::xen::vdispl::frontend`]), with this guest's
//! environment below it (hypercalls, the heap, the virtual timer, the
//! xenstore connection) and the demo scenes above it (each frame drawn by
//! [`kernel::scenes`], each shown flip printed as a [`FlipLine`]).

use super::pages::{ForeignPages, PageBuffer};
use super::xen::Xen;
use super::{control, heap, services, store, time};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use drivers::xen::error::XenError;
use drivers::xen::evtchn;
use drivers::xen::gnttab::{GrantError, GrantRef};
use drivers::xen::hypercall::ShutdownReason;
use drivers::xen::kbdif::{KbdFrame, KbdPage};
use drivers::xen::ring::{EventFrame, PageBox, RingPage};
use drivers::xen::vdispl::env::{Env, ForeignError, PageMemory};
use drivers::xen::vdispl::frontend;
use drivers::xen::xenstore::client::Client;
use kernel::app::{App, Demo, Paint, Runner};
use kernel::scenes::{FlipLine, SceneSpec};

extern crate alloc;

pub use frontend::Outcome;

impl PageMemory for ForeignPages {
    fn pages(&self) -> usize {
        ForeignPages::pages(self)
    }

    fn frame(&self, index: usize) -> u64 {
        ForeignPages::frame(self, index)
    }

    fn with_pages<R>(&mut self, f: impl FnOnce(&mut [[u8; 4096]]) -> R) -> R {
        f(self.pages_mut())
    }
}

impl PageMemory for PageBuffer {
    fn pages(&self) -> usize {
        PageBuffer::pages(self)
    }

    fn frame(&self, index: usize) -> u64 {
        PageBuffer::frame(self, index)
    }

    fn with_pages<R>(&mut self, f: impl FnOnce(&mut [[u8; 4096]]) -> R) -> R {
        f(self.pages_mut())
    }
}

/// This guest as the frontend's environment.
struct Guest;

impl Env for Guest {
    type Transport = store::StoreTransport;
    type Ring = PageBox<RingPage>;
    type Events = PageBox<EventFrame>;
    type Pages = PageBuffer;
    type Input = PageBox<KbdFrame>;
    type Foreign = ForeignPages;

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn wait(&mut self, ports: &[u32], deadline_ns: u64) {
        let Some(events) = services::events() else {
            time::sleep_ns(deadline_ns.saturating_sub(time::now_ns()));
            return;
        };
        let store_port = store::port();
        let mut all = ports.iter().copied().chain(store_port);
        time::wait_until(deadline_ns, || {
            all.clone().any(|port| events.is_fired(port))
        });
        for port in all.by_ref() {
            events.take(port);
        }
    }

    fn with_store<R>(&mut self, f: impl FnOnce(&mut Client<Self::Transport>) -> R) -> Option<R> {
        store::with(f)
    }

    fn grant(&mut self, domid: u16, frame: u64) -> Result<GrantRef, GrantError> {
        services::with_grants(|grants| grants.grant_access(domid, frame, false))
            .unwrap_or(Err(GrantError::NoFramesAllowed))
    }

    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        services::with_grants(|grants| grants.end_access(gref))
            .unwrap_or(Err(GrantError::NotGranted(gref)))
    }

    fn grants_in_use(&mut self) -> u32 {
        services::with_grants(|grants| grants.in_use()).unwrap_or(0)
    }

    fn open_channel(&mut self, remote: u16) -> Result<u32, XenError> {
        let port = evtchn::alloc_unbound(&Xen, remote)?;
        if let Err(error) = evtchn::unmask(&Xen, port) {
            self.close_channel(port);
            return Err(error);
        }
        Ok(port)
    }

    fn notify(&mut self, port: u32) {
        services::notify(port);
    }

    fn close_channel(&mut self, port: u32) {
        if let Err(error) = evtchn::close(&Xen, port) {
            log::warn!("display: EVTCHNOP_close({port}): {error}");
        }
        if let Some(events) = services::events() {
            events.forget(port);
        }
    }

    fn ring_page(&mut self) -> Option<(Self::Ring, u64)> {
        let ring = RingPage::new_boxed();
        let frame = ring.address() as u64 >> 12;
        Some((ring, frame))
    }

    fn event_page(&mut self) -> Option<(Self::Events, u64)> {
        let events = EventFrame::new_boxed();
        let frame = events.address() as u64 >> 12;
        Some((events, frame))
    }

    fn map_foreign(&mut self, domid: u16, refs: &[GrantRef]) -> Result<ForeignPages, ForeignError> {
        services::map_foreign(domid, refs)
    }

    fn unmap_foreign(&mut self, pages: ForeignPages) -> Result<(), ForeignError> {
        services::unmap_foreign(pages)
    }

    fn foreign_in_use(&mut self) -> usize {
        services::foreign_in_use()
    }

    fn input_page(&mut self) -> Option<(Self::Input, u64)> {
        let page = KbdPage::new_boxed();
        let frame = page.address() as u64 >> 12;
        Some((page, frame))
    }

    fn pages(&mut self, count: usize) -> Option<PageBuffer> {
        PageBuffer::new(count)
    }

    fn heap_in_use(&mut self) -> usize {
        heap::used()
    }

    fn heap_free(&mut self) -> usize {
        heap::free()
    }

    fn shutdown_requested(&mut self) -> Option<ShutdownReason> {
        control::take_request()
    }

    fn print(&mut self, line: fmt::Arguments<'_>) {
        crate::println!("{line}");
    }

    fn log(&mut self, level: log::Level, line: fmt::Arguments<'_>) {
        log::log!(level, "{line}");
    }
}

/// The app the bootargs choose (`app=demo`, the default, or `app=paint`)
/// drives every vdispl device until it is done, or the toolstack asks for a
/// shutdown (see [`frontend::run`]).
pub fn run(spec: &SceneSpec, bootargs: &str, depths: &[u32]) -> Outcome {
    match app_from_bootargs(bootargs) {
        "paint" => drive(Paint::new(spec.total_frames()), depths),
        // Add an app of your own here: "name" => drive(YourApp::new(), depths),
        name => {
            if name != "demo" {
                log::error!("app={name}: no such app (demo, paint); showing the demo");
            }
            drive(Demo::new(spec), depths)
        }
    }
}

/// Runs `app` on every vdispl device, its flip lines on the console, then
/// each connector's touch-to-flip line (`input: conn=N touch to flip ...`)
/// when a touch was shown on it.
fn drive<A: App>(app: A, depths: &[u32]) -> Outcome {
    let every = u64::from(FLIP_LINE_EVERY.load(Ordering::Relaxed));
    let mut runner = Runner::new(app, every, now_us, |line: &FlipLine| {
        crate::println!("{line}")
    });
    let outcome = frontend::run(&mut Guest, &mut runner, depths);
    for touches in runner.touch_to_flip() {
        crate::println!("{touches}");
    }
    outcome
}

/// The guest's monotonic clock in microseconds, which times touches.
fn now_us() -> u64 {
    time::now_ns() / 1000
}

/// `app=NAME` from the bootargs; `demo` when absent.
pub fn app_from_bootargs(bootargs: &str) -> &str {
    bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("app="))
        .unwrap_or("demo")
}

/// Print one flip line in this many (`flip-lines=N` in the bootargs; every
/// flip by default). Long runs keep the consoles quiet with it; the last
/// flip of a connector is always printed.
static FLIP_LINE_EVERY: AtomicU32 = AtomicU32::new(1);

/// Reads `flip-lines=N` from the bootargs.
pub fn flip_lines_from_bootargs(bootargs: &str) {
    let every = bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("flip-lines="))
        .and_then(|value| value.parse::<u32>().ok())
        .filter(|&every| every > 0)
        .unwrap_or(1);
    FLIP_LINE_EVERY.store(every, Ordering::Relaxed);
}

/// `bpp=<32|16>[,<32|16>...]` from the bootargs: the depth of each
/// connector's buffers in order, the last one repeating; 32 by default.
pub fn depths_from_bootargs(bootargs: &str) -> Vec<u32> {
    let Some(list) = bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("bpp="))
    else {
        return Vec::new();
    };
    list.split(',')
        .map(|value| match value.parse() {
            Ok(depth @ (16 | 32)) => depth,
            _ => {
                log::warn!("bpp={value} is not 16 or 32; using 32");
                32
            }
        })
        .collect()
}
