//! Golden frames: the host redraws a frame the guest flipped, from the flip
//! line it printed, with the very scene code the guest runs but through an
//! independent target that stores one pixel at a time ([`PixelBuffer`], none
//! of the framebuffer's fast paths), and compares it pixel for pixel with the
//! PNG the Dom0 backend captured. On a mismatch it writes a diff image next to
//! the capture. A paint frame is drawn from the input events its connector
//! had taken ([`FlipLine::inputs`] of them), which the caller takes from the
//! input event script the rig played (`display.rs`).
//!
//! Why not embedded-graphics-simulator: it pulls in the `image` crate, which
//! turns on num-traits' `std` feature for the whole build, and with it
//! embedded-graphics draws some shapes differently from the guest's `no_std`
//! build (a `Sector` of the primitives scene gains or loses edge pixels). The
//! goldens must come from the guest's arithmetic, so xtask stays free of it.

use embedded_graphics::draw_target::DrawTarget;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888, RgbColor};
use embedded_graphics::prelude::{OriginDimensions, Pixel, Size};
use kernel::app::InputEvent;
use kernel::scenes::{draw, FlipLine, Frame};
use std::convert::Infallible;
use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// An 8-bit RGB image, rows top to bottom, pixels packed R, G, B.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// The pixel at (`x`, `y`), if inside.
    #[cfg(test)]
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let offset = (y as usize * self.width as usize + x as usize) * 3;
        let bytes = self.pixels.get(offset..offset + 3)?;
        Some([bytes[0], bytes[1], bytes[2]])
    }
}

/// Why a frame could not be checked (as opposed to not matching).
#[derive(Debug)]
pub enum GoldenError {
    /// Reading or writing a file failed.
    Io(PathBuf, std::io::Error),
    /// The captured file is not a PNG that decodes.
    Decode(png::DecodingError),
    /// The PNG is not 8-bit RGB or RGBA.
    UnsupportedPng {
        /// Its color type.
        color_type: png::ColorType,
        /// Its bit depth.
        bit_depth: png::BitDepth,
    },
    /// Encoding the diff image failed.
    Encode(png::EncodingError),
    /// The flip line's size is empty or too large to draw.
    BadSize {
        /// Width from the flip line.
        width: u32,
        /// Height from the flip line.
        height: u32,
    },
    /// The flip line's bits per pixel is neither 32 nor 16.
    UnsupportedBpp(u32),
}

impl fmt::Display for GoldenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoldenError::Io(path, error) => write!(f, "{}: {error}", path.display()),
            GoldenError::Decode(error) => write!(f, "captured PNG does not decode: {error}"),
            GoldenError::UnsupportedPng {
                color_type,
                bit_depth,
            } => write!(
                f,
                "captured PNG is {color_type:?} at {bit_depth:?} bits, not 8-bit RGB or RGBA"
            ),
            GoldenError::Encode(error) => write!(f, "diff PNG does not encode: {error}"),
            GoldenError::BadSize { width, height } => {
                write!(f, "flip line size {width}x{height} cannot be drawn")
            }
            GoldenError::UnsupportedBpp(bpp) => {
                write!(f, "flip line bpp={bpp} is neither 32 nor 16")
            }
        }
    }
}

impl std::error::Error for GoldenError {}

/// The largest frame drawn (displif's 8K maximum and then some).
const MAX_SIDE: u32 = 16384;

/// A plain RGB8 image as a draw target: every pixel drawn is stored on its
/// own (only `draw_iter`; the fills fall back to it), clipped to the image.
pub struct PixelBuffer {
    image: RgbImage,
}

impl PixelBuffer {
    /// A black image of `width` x `height`.
    pub fn new(width: u32, height: u32) -> Self {
        PixelBuffer {
            image: RgbImage {
                width,
                height,
                pixels: vec![0; width as usize * height as usize * 3],
            },
        }
    }

    /// The image drawn.
    pub fn into_image(self) -> RgbImage {
        self.image
    }
}

impl OriginDimensions for PixelBuffer {
    fn size(&self) -> Size {
        Size::new(self.image.width, self.image.height)
    }
}

impl DrawTarget for PixelBuffer {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        let (width, height) = (self.image.width, self.image.height);
        for Pixel(point, color) in pixels {
            let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y)) else {
                continue;
            };
            if x < width && y < height {
                let offset = (y as usize * width as usize + x as usize) * 3;
                self.image.pixels[offset..offset + 3].copy_from_slice(&[
                    color.r(),
                    color.g(),
                    color.b(),
                ]);
            }
        }
        Ok(())
    }
}

/// Draws the frame `line` describes into a fresh [`PixelBuffer`] and
/// returns it as RGB8. A 16 bpp frame goes through RGB565 and back the way
/// the guest's color conversion and [`drivers::framebuffer::FrameView`] do,
/// so it compares exactly with what the backend read from the buffer.
///
/// `input` is the connector's input events as the frame's scene gets them
/// (for the paint scene, the window `kernel::app::paint_window` cuts from the
/// first [`FlipLine::inputs`]; empty for the other scenes).
pub fn render_golden(line: &FlipLine, input: &[InputEvent]) -> Result<RgbImage, GoldenError> {
    let (width, height) = (line.width, line.height);
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(GoldenError::BadSize { width, height });
    }
    let quantize: fn(Rgb888) -> Rgb888 = match line.bpp {
        32 => |color| color,
        16 => |color| Rgb888::from(Rgb565::from(color)),
        bpp => return Err(GoldenError::UnsupportedBpp(bpp)),
    };
    let mut buffer = PixelBuffer::new(width, height);
    // Storing pixels in memory never fails.
    let frame = Frame {
        input,
        ..line.frame()
    };
    let Ok(()) = draw(&frame, &mut buffer);
    let mut image = buffer.into_image();
    if line.bpp != 32 {
        for pixel in image.pixels.chunks_exact_mut(3) {
            let color = quantize(Rgb888::new(pixel[0], pixel[1], pixel[2]));
            pixel.copy_from_slice(&[color.r(), color.g(), color.b()]);
        }
    }
    Ok(image)
}

/// Decodes an 8-bit RGB or RGBA PNG (alpha is dropped).
pub fn decode_png(bytes: &[u8]) -> Result<RgbImage, GoldenError> {
    let decoder = png::Decoder::new(Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(GoldenError::Decode)?;
    let (color_type, bit_depth) = reader.output_color_type();
    let channels = match (color_type, bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        _ => {
            return Err(GoldenError::UnsupportedPng {
                color_type,
                bit_depth,
            })
        }
    };
    let size = reader
        .output_buffer_size()
        .ok_or(GoldenError::UnsupportedPng {
            color_type,
            bit_depth,
        })?;
    let mut buffer = vec![0u8; size];
    let info = reader
        .next_frame(&mut buffer)
        .map_err(GoldenError::Decode)?;
    let mut pixels = Vec::with_capacity(info.width as usize * info.height as usize * 3);
    for row in buffer.chunks(info.line_size).take(info.height as usize) {
        for pixel in row.chunks_exact(channels).take(info.width as usize) {
            pixels.extend_from_slice(&pixel[..3]);
        }
    }
    Ok(RgbImage {
        width: info.width,
        height: info.height,
        pixels,
    })
}

/// Reads and decodes a PNG file.
pub fn read_png(path: &Path) -> Result<RgbImage, GoldenError> {
    let bytes = std::fs::read(path).map_err(|error| GoldenError::Io(path.to_path_buf(), error))?;
    decode_png(&bytes)
}

/// Encodes `image` as an 8-bit RGB PNG.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, GoldenError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(GoldenError::Encode)?;
    writer
        .write_image_data(&image.pixels)
        .map_err(GoldenError::Encode)?;
    writer.finish().map_err(GoldenError::Encode)?;
    Ok(bytes)
}

/// How a captured frame compares with its golden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Every pixel is the same.
    Match,
    /// The images differ in size.
    SizeDiffers {
        /// Captured width and height.
        captured: (u32, u32),
        /// Golden width and height.
        golden: (u32, u32),
    },
    /// Same size, different pixels.
    Mismatch(Mismatch),
}

/// Where a captured frame differs from its golden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Pixels that differ.
    pub differing: u64,
    /// Pixels in the frame.
    pub total: u64,
    /// The first differing pixel, in reading order.
    pub first: (u32, u32),
    /// Its captured color.
    pub captured: [u8; 3],
    /// Its golden color.
    pub golden: [u8; 3],
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Comparison::Match => write!(f, "matches its golden"),
            Comparison::SizeDiffers { captured, golden } => write!(
                f,
                "is {}x{} but its golden is {}x{}",
                captured.0, captured.1, golden.0, golden.1
            ),
            Comparison::Mismatch(mismatch) => {
                let [cr, cg, cb] = mismatch.captured;
                let [gr, gg, gb] = mismatch.golden;
                write!(
                    f,
                    "differs from its golden in {} of {} pixels, first at ({}, {}): \
                     captured #{cr:02x}{cg:02x}{cb:02x}, golden #{gr:02x}{gg:02x}{gb:02x}",
                    mismatch.differing, mismatch.total, mismatch.first.0, mismatch.first.1
                )
            }
        }
    }
}

/// Compares `captured` with `golden`, pixel by pixel.
pub fn compare(captured: &RgbImage, golden: &RgbImage) -> Comparison {
    if (captured.width, captured.height) != (golden.width, golden.height) {
        return Comparison::SizeDiffers {
            captured: (captured.width, captured.height),
            golden: (golden.width, golden.height),
        };
    }
    let mut differing = 0u64;
    let mut first = None;
    let pairs = captured
        .pixels
        .chunks_exact(3)
        .zip(golden.pixels.chunks_exact(3));
    for (index, (got, want)) in pairs.enumerate() {
        if got != want {
            differing += 1;
            first.get_or_insert((index, [got[0], got[1], got[2]], [want[0], want[1], want[2]]));
        }
    }
    match first {
        None => Comparison::Match,
        Some((index, captured_color, golden_color)) => {
            let width = captured.width.max(1) as usize;
            Comparison::Mismatch(Mismatch {
                differing,
                total: u64::from(captured.width) * u64::from(captured.height),
                first: ((index % width) as u32, (index / width) as u32),
                captured: captured_color,
                golden: golden_color,
            })
        }
    }
}

/// An image showing where two same-sized images differ: differing pixels in
/// magenta, the others as a dimmed grey of the golden, so the scene stays
/// recognisable around the differences.
pub fn diff_image(captured: &RgbImage, golden: &RgbImage) -> RgbImage {
    let mut pixels = Vec::with_capacity(golden.pixels.len());
    let pairs = captured
        .pixels
        .chunks_exact(3)
        .zip(golden.pixels.chunks_exact(3));
    for (got, want) in pairs {
        if got == want {
            let grey =
                ((u16::from(want[0]) + u16::from(want[1]) + u16::from(want[2])) / 3 / 3) as u8;
            pixels.extend_from_slice(&[grey, grey, grey]);
        } else {
            pixels.extend_from_slice(&[255, 0, 255]);
        }
    }
    RgbImage {
        width: golden.width,
        height: golden.height,
        pixels,
    }
}

/// Checks the captured PNG at `captured_png` against the golden of `line`
/// drawn with `input` (see [`render_golden`]); on a pixel mismatch writes the
/// diff image to `diff_png`.
pub fn check_frame(
    line: &FlipLine,
    input: &[InputEvent],
    captured_png: &Path,
    diff_png: &Path,
) -> Result<Comparison, GoldenError> {
    let captured = read_png(captured_png)?;
    let golden = render_golden(line, input)?;
    let comparison = compare(&captured, &golden);
    if let Comparison::Mismatch(_) = comparison {
        let bytes = encode_png(&diff_image(&captured, &golden))?;
        std::fs::write(diff_png, bytes)
            .map_err(|error| GoldenError::Io(diff_png.to_path_buf(), error))?;
    }
    Ok(comparison)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::framebuffer::{
        FrameView, Layout, PixelFormat, Rgb565Framebuffer, Xrgb8888Framebuffer,
    };
    use embedded_graphics::draw_target::DrawTargetExt;

    const LINE: &str = "flip conn=0 seq=5 scene=bars frame=5 size=320x200 bpp=32 name=HDMI-A-1 \
                        uptime_ms=1000 flips=5 rtt_us=700 heap=65536 grants=40";

    /// What the Dom0 backend writes: the guest's buffer read back as RGB8.
    fn captured_as_backend_would(line: &FlipLine) -> RgbImage {
        let format = PixelFormat::from_bpp(line.bpp).unwrap();
        let layout = Layout::packed(line.width, line.height, format).unwrap();
        let mut buffer = vec![0u8; layout.size_bytes()];
        match format {
            PixelFormat::Xrgb8888 => {
                let mut framebuffer =
                    Xrgb8888Framebuffer::with_layout(&mut buffer, layout).unwrap();
                draw(&line.frame(), &mut framebuffer).unwrap();
            }
            PixelFormat::Rgb565 => {
                let mut framebuffer = Rgb565Framebuffer::with_layout(&mut buffer, layout).unwrap();
                draw(&line.frame(), &mut framebuffer.color_converted::<Rgb888>()).unwrap();
            }
        }
        let mut pixels = Vec::new();
        FrameView::new(&buffer, layout)
            .unwrap()
            .write_rgb8(&mut pixels);
        RgbImage {
            width: line.width,
            height: line.height,
            pixels,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let directory = std::env::temp_dir().join(format!("vdispl-golden-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        directory.join(name)
    }

    #[test]
    fn a_frame_drawn_by_the_guest_code_matches_its_golden() {
        for bpp in [32, 16] {
            for scene in ["bars", "primitives", "animation", "status"] {
                let line: FlipLine = LINE
                    .replace("bpp=32", &format!("bpp={bpp}"))
                    .replace("scene=bars", &format!("scene={scene}"))
                    .parse()
                    .unwrap();
                let captured = captured_as_backend_would(&line);
                let png = scratch(&format!("{scene}-{bpp}.png"));
                std::fs::write(&png, encode_png(&captured).unwrap()).unwrap();
                let diff = scratch(&format!("{scene}-{bpp}-diff.png"));
                assert_eq!(
                    check_frame(&line, &[], &png, &diff).unwrap(),
                    Comparison::Match
                );
                assert!(!diff.exists(), "no diff image for a match");
            }
        }
    }

    #[test]
    fn a_changed_pixel_is_found_and_shown() {
        let line: FlipLine = LINE.parse().unwrap();
        let mut captured = captured_as_backend_would(&line);
        let offset = (7 * 320 + 11) * 3;
        captured.pixels[offset] ^= 0x80;
        captured.pixels[offset + 3 * 320] ^= 0x01;
        let png = scratch("changed.png");
        std::fs::write(&png, encode_png(&captured).unwrap()).unwrap();
        let diff = scratch("changed-diff.png");
        let golden = render_golden(&line, &[]).unwrap();
        let expected = Comparison::Mismatch(Mismatch {
            differing: 2,
            total: 64_000,
            first: (11, 7),
            captured: captured.pixel(11, 7).unwrap(),
            golden: golden.pixel(11, 7).unwrap(),
        });
        let comparison = check_frame(&line, &[], &png, &diff).unwrap();
        assert_eq!(comparison, expected);
        assert!(comparison
            .to_string()
            .contains("2 of 64000 pixels, first at (11, 7)"));
        let shown = read_png(&diff).unwrap();
        assert_eq!(shown.pixel(11, 7), Some([255, 0, 255]));
        assert_eq!(shown.pixel(11, 8), Some([255, 0, 255]));
        assert_ne!(shown.pixel(12, 7), Some([255, 0, 255]));
    }

    #[test]
    fn rgba_pngs_decode_and_sizes_are_compared_first() {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, 2, 1);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&[1, 2, 3, 255, 4, 5, 6, 0])
            .unwrap();
        writer.finish().unwrap();
        let image = decode_png(&bytes).unwrap();
        assert_eq!(image.pixels, [1, 2, 3, 4, 5, 6]);
        let other = RgbImage {
            width: 1,
            height: 2,
            pixels: vec![1, 2, 3, 4, 5, 6],
        };
        assert_eq!(
            compare(&image, &other),
            Comparison::SizeDiffers {
                captured: (2, 1),
                golden: (1, 2)
            }
        );
    }

    #[test]
    fn unusable_inputs_are_errors() {
        assert!(matches!(
            decode_png(b"not a png"),
            Err(GoldenError::Decode(_))
        ));
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, 1, 1);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[7]).unwrap();
        writer.finish().unwrap();
        assert!(matches!(
            decode_png(&bytes),
            Err(GoldenError::UnsupportedPng { .. })
        ));
        let mut line: FlipLine = LINE.parse().unwrap();
        line.bpp = 24;
        assert!(matches!(
            render_golden(&line, &[]),
            Err(GoldenError::UnsupportedBpp(24))
        ));
        line.bpp = 32;
        line.width = 0;
        assert!(matches!(
            render_golden(&line, &[]),
            Err(GoldenError::BadSize { .. })
        ));
        let missing = scratch("missing.png");
        let error =
            check_frame(&LINE.parse().unwrap(), &[], &missing, &scratch("x.png")).unwrap_err();
        assert!(error.to_string().contains("missing.png"), "{error}");
    }
}
