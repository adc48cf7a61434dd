//! The framebuffer DrawTarget as the kernel uses it: pixel-identical to an
//! independent per-pixel target (embedded-graphics-simulator) at full
//! screen sizes in both pixel formats, and timed against memset and a naive
//! per-pixel target (`cargo test --release -p kernel --test framebuffer --
//! --ignored --nocapture`).

use drivers::framebuffer::{
    stride_for, FrameView, Layout, PixelFormat, Rgb565Framebuffer, Xrgb8888Framebuffer,
};
use embedded_graphics::draw_target::DrawTargetExt;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics_simulator::SimulatorDisplay;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A DrawTarget the way a user would write one first: every drawing call
/// ends in `draw_iter`, one bounds-checked pixel at a time (what
/// embedded-graphics-framebuf does).
struct NaiveTarget {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
}

impl OriginDimensions for NaiveTarget {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for NaiveTarget {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        for Pixel(point, color) in pixels {
            if point.x >= 0
                && point.y >= 0
                && (point.x as u32) < self.width
                && (point.y as u32) < self.height
            {
                let index = point.y as usize * self.width as usize + point.x as usize;
                self.pixels[index] =
                    u32::from(color.r()) << 16 | u32::from(color.g()) << 8 | u32::from(color.b());
            }
        }
        Ok(())
    }
}

/// Shapes, lines and text, partly off every edge, with fills through the
/// fast paths and pixels through `draw_iter`.
fn draw_shapes<D: DrawTarget<Color = Rgb888>>(target: &mut D) -> Result<(), D::Error> {
    use embedded_graphics::mono_font::{ascii::FONT_10X20, MonoTextStyle};
    use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle, RoundedRectangle, Triangle};
    use embedded_graphics::text::Text;
    let size = target.bounding_box().size;
    let (w, h) = (size.width as i32, size.height as i32);
    target.clear(Rgb888::new(10, 20, 30))?;
    target.fill_solid(
        &Rectangle::new(Point::new(-40, -30), Size::new(300, 200)),
        Rgb888::new(200, 40, 40),
    )?;
    target.fill_solid(
        &Rectangle::new(Point::new(w - 100, h - 50), Size::new(400, 400)),
        Rgb888::new(40, 200, 40),
    )?;
    let area = Rectangle::new(Point::new(w / 2, -17), Size::new(123, 77));
    let colors = (0..area.size.width * area.size.height)
        .map(|i| Rgb888::new(i as u8, (i >> 3) as u8, (i >> 6) as u8));
    target.fill_contiguous(&area, colors)?;
    Circle::new(Point::new(-50, h / 3), 260)
        .into_styled(PrimitiveStyle::with_fill(Rgb888::new(250, 200, 0)))
        .draw(target)?;
    RoundedRectangle::with_equal_corners(
        Rectangle::new(Point::new(w / 3, h / 3), Size::new(300, 180)),
        Size::new(30, 30),
    )
    .into_styled(PrimitiveStyle::with_stroke(Rgb888::WHITE, 5))
    .draw(target)?;
    Triangle::new(
        Point::new(w - 60, 10),
        Point::new(w + 60, 120),
        Point::new(w - 150, 90),
    )
    .into_styled(PrimitiveStyle::with_fill(Rgb888::new(90, 90, 250)))
    .draw(target)?;
    for index in 0..10 {
        Line::new(
            Point::new(-20, index * h / 10),
            Point::new(w + 20, h - index * h / 10),
        )
        .into_styled(PrimitiveStyle::with_stroke(
            Rgb888::new(0, 255, 255),
            index as u32 % 4 + 1,
        ))
        .draw(target)?;
    }
    Text::new(
        "vdispl-os framebuffer: clipped text runs off the edge",
        Point::new(w - 300, h - 4),
        MonoTextStyle::new(&FONT_10X20, Rgb888::WHITE),
    )
    .draw(target)?;
    Ok(())
}

fn assert_matches_simulator(
    view: FrameView<'_>,
    golden: &SimulatorDisplay<Rgb888>,
    to_format: fn(Rgb888) -> Rgb888,
) {
    let layout = view.layout();
    for y in 0..layout.height() {
        for x in 0..layout.width() {
            let expected = to_format(golden.get_pixel(Point::new(x as i32, y as i32)));
            assert_eq!(view.pixel_rgb888(x, y), Some(expected), "pixel ({x}, {y})");
        }
    }
}

#[test]
fn shapes_and_text_match_the_simulator_in_both_formats() {
    for (width, height) in [(1920, 1080), (801, 601)] {
        let mut golden =
            SimulatorDisplay::with_default_color(Size::new(width, height), Rgb888::BLACK);
        draw_shapes(&mut golden).unwrap();

        let layout = Layout::packed(width, height, PixelFormat::Xrgb8888).unwrap();
        let mut buffer = vec![0u8; layout.size_bytes()];
        let mut framebuffer = Xrgb8888Framebuffer::with_layout(&mut buffer, layout).unwrap();
        draw_shapes(&mut framebuffer).unwrap();
        assert_matches_simulator(FrameView::new(&buffer, layout).unwrap(), &golden, |c| c);

        let layout = Layout::packed(width, height, PixelFormat::Rgb565).unwrap();
        let mut buffer = vec![0u8; layout.size_bytes()];
        let mut framebuffer = Rgb565Framebuffer::with_layout(&mut buffer, layout).unwrap();
        draw_shapes(&mut framebuffer.color_converted::<Rgb888>()).unwrap();
        assert_matches_simulator(FrameView::new(&buffer, layout).unwrap(), &golden, |c| {
            Rgb888::from(Rgb565::from(c))
        });
    }
}

#[test]
fn a_clipped_sub_area_keeps_everything_outside_it() {
    let (width, height) = (640, 480);
    let clip = Rectangle::new(Point::new(100, 50), Size::new(333, 222));
    let mut golden = SimulatorDisplay::with_default_color(Size::new(width, height), Rgb888::BLACK);
    draw_shapes(&mut golden.clipped(&clip)).unwrap();
    let layout = Layout::new(
        width,
        height,
        4 * width as usize + 64,
        PixelFormat::Xrgb8888,
    )
    .unwrap();
    let mut buffer = vec![0u8; layout.size_bytes()];
    let mut framebuffer = Xrgb8888Framebuffer::with_layout(&mut buffer, layout).unwrap();
    draw_shapes(&mut framebuffer.clipped(&clip)).unwrap();
    assert_matches_simulator(FrameView::new(&buffer, layout).unwrap(), &golden, |c| c);
    for row in buffer.chunks(layout.stride()) {
        assert!(
            row[4 * width as usize..].iter().all(|&b| b == 0),
            "padding untouched"
        );
    }
}

/// The fastest of `runs` timings of `job`.
fn fastest(runs: u32, mut job: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            job();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
fn full_hd_fill_against_memset_and_a_naive_target() {
    let (width, height) = (1920, 1080);
    let stride = stride_for(width, 32).unwrap() as usize;
    let mut buffer = vec![0u8; stride * height as usize];
    let memset = fastest(50, || {
        black_box(&mut buffer[..]).fill(black_box(0x5a));
        black_box(&buffer);
    });
    let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, width, height).unwrap();
    let clear = fastest(50, || {
        black_box(&mut framebuffer)
            .clear(black_box(Rgb888::new(1, 2, 3)))
            .unwrap();
    });
    let inset = Rectangle::new(Point::new(1, 1), Size::new(width - 2, height - 2));
    let fill = fastest(50, || {
        black_box(&mut framebuffer)
            .fill_solid(&inset, black_box(Rgb888::new(4, 5, 6)))
            .unwrap();
    });
    let mut naive = NaiveTarget {
        width,
        height,
        pixels: vec![0; (width * height) as usize],
    };
    let naive_fill = fastest(10, || {
        black_box(&mut naive)
            .fill_solid(&inset, black_box(Rgb888::new(4, 5, 6)))
            .unwrap();
    });
    let mut buffer565 = vec![0u8; stride_for(width, 16).unwrap() as usize * height as usize];
    let mut framebuffer565 = Rgb565Framebuffer::packed(&mut buffer565, width, height).unwrap();
    let clear565 = fastest(50, || {
        black_box(&mut framebuffer565)
            .clear(black_box(Rgb565::new(1, 2, 3)))
            .unwrap();
    });
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("1920x1080 XRGB8888 ({} bytes):", stride * height as usize);
    println!("  memset                {memset:>10.2?}");
    println!(
        "  clear                 {clear:>10.2?}  {:.2}x memset speed",
        ratio(memset, clear)
    );
    println!(
        "  fill_solid (inset)    {fill:>10.2?}  {:.2}x memset speed",
        ratio(memset, fill)
    );
    println!(
        "  naive fill_solid      {naive_fill:>10.2?}  framebuffer {:.1}x faster",
        ratio(naive_fill, fill)
    );
    println!("  RGB565 clear          {clear565:>10.2?}  (half the bytes)");
}

#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
fn full_hd_scenes_against_a_naive_target() {
    use kernel::scenes::{draw, Frame, Scene, Status};
    let (width, height) = (1920, 1080);
    let stride = stride_for(width, 32).unwrap() as usize;
    let mut buffer = vec![0u8; stride * height as usize];
    let mut naive = NaiveTarget {
        width,
        height,
        pixels: vec![0; (width * height) as usize],
    };
    println!("1920x1080 scenes, framebuffer vs naive per-pixel target:");
    for scene in Scene::ALL {
        let frame = Frame {
            scene,
            number: 17,
            connector: "0",
            status: Status::default(),
            input: &[],
        };
        let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, width, height).unwrap();
        let fast = fastest(20, || draw(black_box(&frame), &mut framebuffer).unwrap());
        let slow = fastest(5, || draw(black_box(&frame), &mut naive).unwrap());
        println!(
            "  {:<11} {fast:>10.2?}  naive {slow:>10.2?}  {:.1}x faster",
            scene.name(),
            slow.as_secs_f64() / fast.as_secs_f64()
        );
    }
}
