//! The demo scenes drawn through the framebuffer DrawTarget (the guest's
//! path: XRGB8888, or RGB565 through a color conversion, over a byte buffer)
//! are pixel-identical to the same scenes drawn into an independent
//! per-pixel target, embedded-graphics-simulator's `SimulatorDisplay`: the
//! host half of the check the rig makes on the frames the Dom0 backend
//! captures. Also: scenes are deterministic, animation moves, and tiny or
//! odd sizes draw without panicking.

use drivers::framebuffer::{
    stride_for, FrameView, Layout, PixelFormat, Rgb565Framebuffer, Xrgb8888Framebuffer,
};
use embedded_graphics::draw_target::DrawTargetExt;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics_simulator::{OutputSettingsBuilder, SimulatorDisplay};
use kernel::scenes::{draw, FlipLine, Frame, Scene, SceneSpec, Status};

const STATUS: Status = Status {
    uptime_ms: 3_723_456,
    flips: 1234,
    flip_rtt_us: 9_876,
    heap_bytes: 2_345_678,
    grants: 4_102,
};

fn frame(scene: Scene, number: u32) -> Frame<'static> {
    Frame {
        scene,
        number,
        connector: "HDMI-A-1",
        status: STATUS,
        input: &[],
    }
}

/// The frame as the independent target draws it, one pixel at a time.
fn golden(frame: &Frame<'_>, width: u32, height: u32) -> SimulatorDisplay<Rgb888> {
    let mut display = SimulatorDisplay::with_default_color(Size::new(width, height), Rgb888::BLACK);
    draw(frame, &mut display).unwrap();
    display
}

/// The frame as the guest draws it: XRGB8888 over a byte buffer.
fn through_framebuffer(frame: &Frame<'_>, width: u32, height: u32) -> Vec<u8> {
    let mut buffer = vec![0u8; stride_for(width, 32).unwrap() as usize * height as usize];
    let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, width, height).unwrap();
    draw(frame, &mut framebuffer).unwrap();
    buffer
}

/// The first pixel where the framebuffer's bytes differ from `expected`, as
/// (x, y, got, expected), and how many differ.
fn compare(
    view: FrameView<'_>,
    expected: impl Fn(Point) -> Rgb888,
) -> Option<((u32, u32, Rgb888, Rgb888), usize)> {
    let layout = view.layout();
    let mut first = None;
    let mut count = 0;
    for y in 0..layout.height() {
        for x in 0..layout.width() {
            let got = view.pixel_rgb888(x, y).unwrap();
            let want = expected(Point::new(x as i32, y as i32));
            if got != want {
                count += 1;
                first.get_or_insert((x, y, got, want));
            }
        }
    }
    first.map(|first| (first, count))
}

#[test]
fn every_scene_through_the_framebuffer_matches_the_independent_target() {
    let sizes = [
        (800, 600),
        (1280, 720),
        (1920, 1080),
        (3840, 2160),
        (640, 480),
        (64, 48),
        (333, 77),
    ];
    for (width, height) in sizes {
        for scene in Scene::ALL {
            for number in [0, 7] {
                let frame = frame(scene, number);
                let buffer = through_framebuffer(&frame, width, height);
                let golden = golden(&frame, width, height);
                let layout = Layout::packed(width, height, PixelFormat::Xrgb8888).unwrap();
                let view = FrameView::new(&buffer, layout).unwrap();
                let mismatch = compare(view, |point| golden.get_pixel(point));
                assert_eq!(mismatch, None, "{scene} frame {number} at {width}x{height}");
            }
        }
    }
}

#[test]
fn rgb565_connectors_get_the_golden_converted_pixel_by_pixel() {
    let (width, height) = (800, 600);
    for scene in Scene::ALL {
        let frame = frame(scene, 3);
        let mut buffer = vec![0u8; stride_for(width, 16).unwrap() as usize * height as usize];
        let mut framebuffer = Rgb565Framebuffer::packed(&mut buffer, width, height).unwrap();
        draw(&frame, &mut framebuffer.color_converted::<Rgb888>()).unwrap();
        let golden = golden(&frame, width, height);
        let layout = Layout::packed(width, height, PixelFormat::Rgb565).unwrap();
        let view = FrameView::new(&buffer, layout).unwrap();
        let mismatch = compare(view, |point| {
            Rgb888::from(Rgb565::from(golden.get_pixel(point)))
        });
        assert_eq!(mismatch, None, "{scene}");
    }
}

#[test]
fn scenes_fill_every_pixel() {
    // Drawn over two different backgrounds, a frame comes out the same:
    // nothing of the previous frame shows through.
    for scene in Scene::ALL {
        let frame = frame(scene, 5);
        let mut first =
            SimulatorDisplay::with_default_color(Size::new(320, 200), Rgb888::new(1, 2, 3));
        let mut second =
            SimulatorDisplay::with_default_color(Size::new(320, 200), Rgb888::new(250, 0, 250));
        draw(&frame, &mut first).unwrap();
        draw(&frame, &mut second).unwrap();
        assert!(first == second, "{scene} leaves pixels undrawn");
    }
}

#[test]
fn same_inputs_give_the_same_pixels() {
    for scene in Scene::ALL {
        let frame = frame(scene, 11);
        assert_eq!(
            through_framebuffer(&frame, 800, 600),
            through_framebuffer(&frame, 800, 600),
            "{scene}"
        );
    }
}

#[test]
fn animation_moves_every_frame_and_others_follow_their_inputs() {
    for size in [(800, 600), (64, 48)] {
        let mut previous = through_framebuffer(&frame(Scene::Animation, 0), size.0, size.1);
        for number in 1..70 {
            let next = through_framebuffer(&frame(Scene::Animation, number), size.0, size.1);
            assert_ne!(previous, next, "animation frame {number} at {size:?}");
            previous = next;
        }
    }
    let mut other = frame(Scene::Status, 1);
    other.status.flips += 1;
    assert_ne!(
        through_framebuffer(&frame(Scene::Status, 1), 800, 600),
        through_framebuffer(&other, 800, 600),
        "status shows its figures"
    );
    let mut renamed = frame(Scene::Bars, 1);
    renamed.connector = "DP-2";
    assert_ne!(
        through_framebuffer(&frame(Scene::Bars, 1), 800, 600),
        through_framebuffer(&renamed, 800, 600),
        "bars shows the connector's name"
    );
}

#[test]
fn tiny_and_odd_sizes_draw_without_panicking() {
    let long_name = "a connector with a very long name that goes on and on, éèê";
    for (width, height) in [
        (1, 1),
        (2, 3),
        (17, 5),
        (5, 17),
        (64, 48),
        (16384, 3),
        (3, 16384),
    ] {
        for scene in Scene::ALL {
            for number in [0, 1, 59, 60, u32::MAX] {
                let mut frame = frame(scene, number);
                frame.connector = long_name;
                frame.status = Status {
                    uptime_ms: u64::MAX,
                    flips: u64::MAX,
                    flip_rtt_us: u64::MAX,
                    heap_bytes: u64::MAX,
                    grants: u64::MAX,
                };
                through_framebuffer(&frame, width, height);
            }
        }
    }
}

#[test]
fn a_flip_line_reproduces_its_frame() {
    let line: FlipLine =
        "flip conn=1 seq=9 scene=status frame=1 size=320x240 bpp=32 name=HDMI-A-1 \
                          uptime_ms=3723456 flips=1234 rtt_us=9876 heap=2345678 grants=4102"
            .parse()
            .unwrap();
    assert_eq!(line.frame(), frame(Scene::Status, 1));
    assert_eq!(
        through_framebuffer(&line.frame(), line.width, line.height),
        through_framebuffer(&frame(Scene::Status, 1), 320, 240)
    );
    // The default run reaches every scene.
    let spec = SceneSpec::default();
    let scenes: Vec<Scene> = (0..spec.total_frames())
        .filter_map(|index| spec.frame_at(index))
        .map(|(scene, _)| scene)
        .collect();
    for scene in Scene::ALL {
        assert!(scenes.contains(&scene));
    }
}

/// Writes every scene at the three target sizes as PNGs under
/// `target/scene-previews/`, to look at.
#[test]
#[ignore = "writes preview images; run with --ignored"]
fn write_previews() {
    let directory =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scene-previews");
    std::fs::create_dir_all(&directory).unwrap();
    for (width, height) in [
        (800, 600),
        (1280, 720),
        (1920, 1080),
        (3840, 2160),
        (64, 48),
    ] {
        for scene in Scene::ALL {
            for number in [0, 20] {
                let display = golden(&frame(scene, number), width, height);
                let path = directory.join(format!("{scene}-{number}-{width}x{height}.png"));
                display
                    .to_rgb_output_image(&OutputSettingsBuilder::new().build())
                    .save_png(&path)
                    .unwrap();
            }
        }
    }
}
