//! `cargo bench`: full-screen rendering speed of the framebuffer DrawTarget
//! (`drivers::framebuffer`) and of each demo scene (`kernel::scenes::draw`)
//! at 1920x1080, as ratios against two peers measured in the same run:
//! `memset` of the same number of bytes (the limit for a fill) and
//! embedded-graphics-framebuf's `FrameBuf`, a per-pixel DrawTarget (what a
//! user would otherwise draw with).
//!
//! Prints a table and whether each target is met (fills at least 0.8x
//! memset speed, scenes at least 10x faster than the per-pixel target); it
//! never fails on timing. For each scene it also times the drawing calls
//! alone, into a target that discards every pixel: embedded-graphics'
//! geometry (which pixels a shape or glyph covers), the same for every
//! target, which bounds how much faster than the per-pixel peer any
//! DrawTarget can draw the scene. Options after `--`: `--quick` (fewer
//! runs).

use drivers::framebuffer::{stride_for, Rgb565Framebuffer, Xrgb8888Framebuffer};
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics_framebuf::FrameBuf;
use kernel::scenes::{draw, Frame, Scene, Status};
use std::hint::black_box;
use std::time::{Duration, Instant};

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
const PIXELS: usize = (WIDTH * HEIGHT) as usize;

/// Target: a fill at least this fraction of memset's speed.
const FILL_TARGET: f64 = 0.8;
/// Target: a scene at least this many times faster than the per-pixel peer.
const SCENE_TARGET: f64 = 10.0;

/// The fastest of `runs` timings of `job` (after one warm-up run).
fn fastest(runs: u32, mut job: impl FnMut()) -> Duration {
    job();
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            job();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// `a / b` in seconds.
fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The per-pixel peer: embedded-graphics-framebuf over a heap array of
/// 1920x1080 `Rgb888` (every drawing call ends in its `draw_iter`).
type PeerTarget = FrameBuf<Rgb888, &'static mut [Rgb888; PIXELS]>;

fn peer_target() -> PeerTarget {
    let pixels: Box<[Rgb888; PIXELS]> = vec![Rgb888::BLACK; PIXELS]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("the vector has PIXELS elements"));
    FrameBuf::new(Box::leak(pixels), WIDTH as usize, HEIGHT as usize)
}

/// A target that discards what is drawn but still walks every pixel
/// iterator it is given: the cost of a scene's geometry alone.
struct Discard;

impl OriginDimensions for Discard {
    fn size(&self) -> Size {
        Size::new(WIDTH, HEIGHT)
    }
}

impl DrawTarget for Discard {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for pixel in pixels {
            black_box(pixel);
        }
        Ok(())
    }

    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        black_box(area);
        for color in colors {
            black_box(color);
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        black_box((area, color));
        Ok(())
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (runs, peer_runs) = if quick { (10, 2) } else { (50, 8) };
    let mut all_met = true;

    println!("vdispl-os host rendering, {WIDTH}x{HEIGHT} (fastest of {runs} runs; the per-pixel peer of {peer_runs})");
    println!(
        "peers: memset of the same bytes, embedded-graphics-framebuf FrameBuf<Rgb888> (per pixel)"
    );
    println!();

    // Fills.
    let stride = stride_for(WIDTH, 32).expect("stride") as usize;
    let bytes = stride * HEIGHT as usize;
    let mut buffer = vec![0u8; bytes];
    let memset = fastest(runs, || {
        black_box(&mut buffer[..]).fill(black_box(0x5a));
        black_box(&buffer);
    });
    let mut buffer565 =
        vec![0u8; stride_for(WIDTH, 16).expect("stride") as usize * HEIGHT as usize];
    let memset565 = fastest(runs, || {
        black_box(&mut buffer565[..]).fill(black_box(0x5a));
        black_box(&buffer565);
    });
    let inset = Rectangle::new(Point::new(1, 1), Size::new(WIDTH - 2, HEIGHT - 2));
    let (clear, fill) = {
        let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, WIDTH, HEIGHT).expect("fb");
        let clear = fastest(runs, || {
            black_box(&mut framebuffer)
                .clear(black_box(Rgb888::new(1, 2, 3)))
                .unwrap();
        });
        let fill = fastest(runs, || {
            black_box(&mut framebuffer)
                .fill_solid(&inset, black_box(Rgb888::new(4, 5, 6)))
                .unwrap();
        });
        (clear, fill)
    };
    let clear565 = {
        let mut framebuffer = Rgb565Framebuffer::packed(&mut buffer565, WIDTH, HEIGHT).expect("fb");
        fastest(runs, || {
            black_box(&mut framebuffer)
                .clear(black_box(Rgb565::new(1, 2, 3)))
                .unwrap();
        })
    };
    let mut peer = peer_target();
    let peer_fill = fastest(peer_runs, || {
        black_box(&mut peer)
            .fill_solid(&inset, black_box(Rgb888::new(4, 5, 6)))
            .unwrap();
    });

    println!("fills ({bytes} bytes XRGB8888)   time        vs memset    vs per-pixel   target >= {FILL_TARGET}x memset");
    println!("  memset                    {memset:>10.2?}");
    for (name, time, limit) in [
        ("clear XRGB8888", clear, memset),
        ("fill_solid inset", fill, memset),
        ("clear RGB565 (half)", clear565, memset565),
    ] {
        let speed = ratio(limit, time);
        let ok = speed >= FILL_TARGET;
        all_met &= ok;
        let versus_peer = if name.starts_with("fill_solid") {
            format!("{:>8.1}x", ratio(peer_fill, time))
        } else {
            format!("{:>9}", "")
        };
        println!(
            "  {name:<24}  {time:>10.2?}  {speed:>6.2}x       {versus_peer}      {}",
            met(ok)
        );
    }
    println!("  per-pixel fill_solid      {peer_fill:>10.2?}");
    println!();

    // Scenes.
    println!("scenes                      time        per-pixel    faster    memsets   target >= {SCENE_TARGET}x faster   geometry alone (bound)");
    for scene in Scene::ALL {
        let frame = Frame {
            scene,
            number: 17,
            connector: "DP-1",
            status: Status::default(),
            input: &[],
        };
        let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, WIDTH, HEIGHT).expect("fb");
        let fast = fastest(runs, || draw(black_box(&frame), &mut framebuffer).unwrap());
        let slow = fastest(peer_runs, || draw(black_box(&frame), &mut peer).unwrap());
        let geometry = fastest(runs, || draw(black_box(&frame), &mut Discard).unwrap());
        let faster = ratio(slow, fast);
        let ok = faster >= SCENE_TARGET;
        all_met &= ok;
        println!(
            "  {:<24}  {fast:>10.2?}  {slow:>10.2?}  {faster:>6.1}x   {:>6.2}     {:<17}  {geometry:>10.2?} ({:.1}x)",
            scene.name(),
            ratio(fast, memset),
            met(ok),
            ratio(slow, geometry),
        );
    }
    println!();
    println!(
        "targets: {} (figures are ratios within this run; timing never fails the bench)",
        if all_met { "all met" } else { "some NOT met" }
    );
}
