//! A framebuffer over a byte buffer as an embedded-graphics [`DrawTarget`]:
//! the memory a display buffer is granted to the backend from (Xen's
//! `io/displif.h`, `XENDISPL_OP_DBUF_CREATE`), in the two pixel formats a
//! connector is driven with.
//!
//! displif has no stride field: the reference backend assumes
//! `4 * ceil(width * bpp / 32)` bytes per row, Linux `ceil(width * bpp / 8)`.
//! [`stride_for`] gives the former, which equals the latter whenever a row is a
//! whole number of 32-bit words, so both ends agree.
//!
//! Rectangle fills (`fill_solid`, `clear`) write each row span with the
//! stores the target's `memset` uses ([`fill`]), and whole unpadded rows as
//! one run; `fill_contiguous` walks each visible row span once; `draw_iter`
//! clips and writes one pixel at a time.

mod fill;

use core::convert::Infallible;
use core::fmt;
use core::marker::PhantomData;

use embedded_graphics::geometry::Dimensions;
use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::{IntoStorage, PixelColor, Rgb565, Rgb888, RgbColor};
use embedded_graphics::prelude::{DrawTarget, OriginDimensions, Pixel, Point, Size};
use embedded_graphics::primitives::Rectangle;

/// DRM fourcc `XR24` (`DRM_FORMAT_XRGB8888`), the `pixel_format` of
/// `XENDISPL_OP_FB_ATTACH` for 32 bpp.
pub const FOURCC_XRGB8888: u32 = u32::from_le_bytes(*b"XR24");
/// DRM fourcc `RG16` (`DRM_FORMAT_RGB565`), the `pixel_format` for 16 bpp.
pub const FOURCC_RGB565: u32 = u32::from_le_bytes(*b"RG16");

/// How the pixels of a display buffer are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `DRM_FORMAT_XRGB8888`: a little-endian `u32` `0x00RRGGBB` per pixel,
    /// so bytes B, G, R, X in memory. 32 bpp.
    Xrgb8888,
    /// `DRM_FORMAT_RGB565`: a little-endian `u16` `RRRRRGGG GGGBBBBB` per
    /// pixel. 16 bpp.
    Rgb565,
}

impl PixelFormat {
    /// The format for a connector's bits per pixel (32 or 16).
    pub fn from_bpp(bpp: u32) -> Result<Self, FramebufferError> {
        match bpp {
            32 => Ok(PixelFormat::Xrgb8888),
            16 => Ok(PixelFormat::Rgb565),
            _ => Err(FramebufferError::UnsupportedBpp(bpp)),
        }
    }

    /// Bits per pixel, as `XENDISPL_OP_DBUF_CREATE` and `SET_CONFIG` give it.
    pub fn bpp(self) -> u32 {
        match self {
            PixelFormat::Xrgb8888 => 32,
            PixelFormat::Rgb565 => 16,
        }
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Xrgb8888 => 4,
            PixelFormat::Rgb565 => 2,
        }
    }

    /// The DRM fourcc `XENDISPL_OP_FB_ATTACH` carries.
    pub fn fourcc(self) -> u32 {
        match self {
            PixelFormat::Xrgb8888 => FOURCC_XRGB8888,
            PixelFormat::Rgb565 => FOURCC_RGB565,
        }
    }

    /// The color of one pixel's bytes (at least [`Self::bytes_per_pixel`]
    /// of them), widened to 8 bits per channel the way embedded-graphics
    /// converts `Rgb565` to `Rgb888`. `None` if `bytes` is too short.
    pub fn decode_rgb888(self, bytes: &[u8]) -> Option<Rgb888> {
        Some(match self {
            PixelFormat::Xrgb8888 => FormatXrgb8888::decode(bytes.get(..4)?),
            PixelFormat::Rgb565 => Rgb888::from(FormatRgb565::decode(bytes.get(..2)?)),
        })
    }
}

/// Bytes per row for `width` pixels of `bpp` bits: `4 * ceil(width * bpp /
/// 32)`, the stride the displif backends assume. `None` on overflow.
pub fn stride_for(width: u32, bpp: u32) -> Option<u32> {
    let bits = width.checked_mul(bpp)?;
    bits.div_ceil(32).checked_mul(4)
}

/// Why a framebuffer could not be made over a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramebufferError {
    /// Width or height is zero.
    Empty,
    /// Width or height does not fit embedded-graphics' `i32` coordinates, or
    /// the frame's byte size does not fit `usize`.
    TooLarge,
    /// Only 32 (XRGB8888) and 16 (RGB565) bits per pixel are supported.
    UnsupportedBpp(u32),
    /// The stride is shorter than a row of pixels.
    StrideTooSmall {
        /// The stride given.
        stride: usize,
        /// Bytes in a row of pixels.
        row_bytes: usize,
    },
    /// The stride is not a whole number of 32-bit words.
    StrideMisaligned {
        /// The stride given.
        stride: usize,
    },
    /// The buffer is shorter than `stride * height`.
    BufferTooSmall {
        /// The buffer's length.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
}

impl fmt::Display for FramebufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FramebufferError::Empty => write!(f, "framebuffer width or height is zero"),
            FramebufferError::TooLarge => write!(f, "framebuffer dimensions are too large"),
            FramebufferError::UnsupportedBpp(bpp) => {
                write!(f, "{bpp} bits per pixel is not supported (32 or 16)")
            }
            FramebufferError::StrideTooSmall { stride, row_bytes } => write!(
                f,
                "stride of {stride} bytes is shorter than a row of {row_bytes} bytes"
            ),
            FramebufferError::StrideMisaligned { stride } => {
                write!(f, "stride of {stride} bytes is not a multiple of 4")
            }
            FramebufferError::BufferTooSmall { len, needed } => write!(
                f,
                "buffer of {len} bytes is shorter than the {needed} bytes of the frame"
            ),
        }
    }
}

/// The geometry of a frame in memory: size, stride and pixel format,
/// validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
}

impl Layout {
    /// A layout with an explicit stride in bytes.
    pub fn new(
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self, FramebufferError> {
        if width == 0 || height == 0 {
            return Err(FramebufferError::Empty);
        }
        if i32::try_from(width).is_err() || i32::try_from(height).is_err() {
            return Err(FramebufferError::TooLarge);
        }
        let row_bytes = usize::try_from(width)
            .ok()
            .and_then(|width| width.checked_mul(format.bytes_per_pixel()))
            .ok_or(FramebufferError::TooLarge)?;
        if stride < row_bytes {
            return Err(FramebufferError::StrideTooSmall { stride, row_bytes });
        }
        if !stride.is_multiple_of(4) {
            return Err(FramebufferError::StrideMisaligned { stride });
        }
        let layout = Layout {
            width,
            height,
            stride,
            format,
        };
        layout.byte_len().ok_or(FramebufferError::TooLarge)?;
        Ok(layout)
    }

    /// A layout with the displif stride, [`stride_for`].
    pub fn packed(width: u32, height: u32, format: PixelFormat) -> Result<Self, FramebufferError> {
        let stride = stride_for(width, format.bpp())
            .and_then(|stride| usize::try_from(stride).ok())
            .ok_or(FramebufferError::TooLarge)?;
        Layout::new(width, height, stride, format)
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from the start of one row to the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Bytes of pixels in a row (the stride may add padding).
    pub fn row_bytes(&self) -> usize {
        self.width as usize * self.format.bytes_per_pixel()
    }

    /// Bytes the frame occupies: `stride * height`.
    pub fn size_bytes(&self) -> usize {
        self.stride * self.height as usize
    }

    fn byte_len(&self) -> Option<usize> {
        self.stride.checked_mul(usize::try_from(self.height).ok()?)
    }

    fn check_buffer(&self, len: usize) -> Result<(), FramebufferError> {
        let needed = self.size_bytes();
        if len < needed {
            return Err(FramebufferError::BufferTooSmall { len, needed });
        }
        Ok(())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A pixel format as a type, so that a [`Framebuffer`] draws in the
/// embedded-graphics color type of its memory layout.
pub trait Format: sealed::Sealed {
    /// The embedded-graphics color a pixel stores.
    type Color: PixelColor;
    /// One pixel's bytes, as stored in memory.
    type Bytes: AsRef<[u8]> + Copy;
    /// The run-time description of the format.
    const PIXEL_FORMAT: PixelFormat;
    /// Bytes per pixel (the length of [`Self::Bytes`]).
    const BYTES_PER_PIXEL: usize;
    /// The bytes that store `color`.
    fn encode(color: Self::Color) -> Self::Bytes;
    /// The color stored in `bytes` (exactly [`Self::BYTES_PER_PIXEL`] of them).
    fn decode(bytes: &[u8]) -> Self::Color;
}

/// [`PixelFormat::Xrgb8888`] as a type: draws [`Rgb888`].
#[derive(Clone, Copy, Debug)]
pub struct FormatXrgb8888;

/// [`PixelFormat::Rgb565`] as a type: draws [`Rgb565`].
#[derive(Clone, Copy, Debug)]
pub struct FormatRgb565;

impl sealed::Sealed for FormatXrgb8888 {}
impl sealed::Sealed for FormatRgb565 {}

impl Format for FormatXrgb8888 {
    type Color = Rgb888;
    type Bytes = [u8; 4];
    const PIXEL_FORMAT: PixelFormat = PixelFormat::Xrgb8888;
    const BYTES_PER_PIXEL: usize = 4;

    fn encode(color: Rgb888) -> [u8; 4] {
        [color.b(), color.g(), color.r(), 0]
    }

    fn decode(bytes: &[u8]) -> Rgb888 {
        match *bytes {
            [b, g, r, _] => Rgb888::new(r, g, b),
            _ => Rgb888::BLACK,
        }
    }
}

impl Format for FormatRgb565 {
    type Color = Rgb565;
    type Bytes = [u8; 2];
    const PIXEL_FORMAT: PixelFormat = PixelFormat::Rgb565;
    const BYTES_PER_PIXEL: usize = 2;

    fn encode(color: Rgb565) -> [u8; 2] {
        color.into_storage().to_le_bytes()
    }

    fn decode(bytes: &[u8]) -> Rgb565 {
        match *bytes {
            [low, high] => RawU16::new(u16::from_le_bytes([low, high])).into(),
            _ => Rgb565::BLACK,
        }
    }
}

/// A drawable frame over a caller's buffer, in the pixel format `F`.
///
/// In the guest the buffer is a display buffer granted to the backend:
/// ordinary cacheable memory, so unaligned and wide stores are fine.
pub struct Framebuffer<'a, F: Format> {
    buffer: &'a mut [u8],
    layout: Layout,
    format: PhantomData<F>,
}

/// A 32 bpp framebuffer, drawing [`Rgb888`].
pub type Xrgb8888Framebuffer<'a> = Framebuffer<'a, FormatXrgb8888>;
/// A 16 bpp framebuffer, drawing [`Rgb565`]. Scenes drawn in [`Rgb888`]
/// reach it through
/// [`color_converted`](embedded_graphics::draw_target::DrawTargetExt::color_converted).
pub type Rgb565Framebuffer<'a> = Framebuffer<'a, FormatRgb565>;

impl<'a, F: Format> Framebuffer<'a, F> {
    /// A framebuffer of `width` x `height` pixels, rows `stride` bytes apart,
    /// over `buffer`, which must hold `stride * height` bytes.
    pub fn new(
        buffer: &'a mut [u8],
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<Self, FramebufferError> {
        Self::with_layout(buffer, Layout::new(width, height, stride, F::PIXEL_FORMAT)?)
    }

    /// A framebuffer with the displif stride ([`stride_for`]).
    pub fn packed(buffer: &'a mut [u8], width: u32, height: u32) -> Result<Self, FramebufferError> {
        Self::with_layout(buffer, Layout::packed(width, height, F::PIXEL_FORMAT)?)
    }

    /// A framebuffer with a layout made earlier, which must be in this
    /// framebuffer's pixel format.
    pub fn with_layout(buffer: &'a mut [u8], layout: Layout) -> Result<Self, FramebufferError> {
        if layout.format != F::PIXEL_FORMAT {
            return Err(FramebufferError::UnsupportedBpp(layout.format.bpp()));
        }
        layout.check_buffer(buffer.len())?;
        Ok(Framebuffer {
            buffer,
            layout,
            format: PhantomData,
        })
    }

    /// The frame's geometry.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The frame's bytes, `stride * height` of them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer[..self.layout.size_bytes()]
    }

    /// The color at `point`, or `None` outside the frame.
    pub fn pixel(&self, point: Point) -> Option<F::Color> {
        let offset = self.offset(point)?;
        self.buffer
            .get(offset..offset + F::BYTES_PER_PIXEL)
            .map(F::decode)
    }

    /// Byte offset of the pixel at `point`, if it is inside the frame.
    fn offset(&self, point: Point) -> Option<usize> {
        let x = u32::try_from(point.x).ok()?;
        let y = u32::try_from(point.y).ok()?;
        if x >= self.layout.width || y >= self.layout.height {
            return None;
        }
        Some(y as usize * self.layout.stride + x as usize * F::BYTES_PER_PIXEL)
    }

    /// The part of `area` inside the frame as (left, top, width, height), or
    /// `None` when nothing is.
    fn visible(&self, area: &Rectangle) -> Option<Span> {
        let clipped = area.intersection(&self.bounding_box());
        if clipped.size.width == 0 || clipped.size.height == 0 {
            return None;
        }
        // Inside the frame, so the coordinates are in 0..width and 0..height.
        Some(Span {
            left: clipped.top_left.x as usize,
            top: clipped.top_left.y as usize,
            width: clipped.size.width as usize,
            height: clipped.size.height as usize,
        })
    }

    /// The byte span of each row of `span`, top to bottom.
    fn rows(&mut self, span: Span) -> impl Iterator<Item = &mut [u8]> {
        let stride = self.layout.stride;
        let start = span.left * F::BYTES_PER_PIXEL;
        let end = start + span.width * F::BYTES_PER_PIXEL;
        self.buffer[span.top * stride..]
            .chunks_mut(stride)
            .take(span.height)
            .filter_map(move |row| row.get_mut(start..end))
    }

    /// Fills `span` with `color`: whole unpadded rows as one run, other
    /// spans row by row, each row written by [`fill`] or, where memcpy is
    /// the faster writer, copied from the first.
    fn fill_span(&mut self, span: Span, color: F::Color) {
        let pixel = F::encode(color);
        let stride = self.layout.stride;
        let span_bytes = span.width * F::BYTES_PER_PIXEL;
        let start = span.top * stride + span.left * F::BYTES_PER_PIXEL;
        if span_bytes == stride {
            if let Some(run) = self.buffer.get_mut(start..start + span.height * stride) {
                fill::fill(run, pixel.as_ref());
            }
            return;
        }
        if !REPLICATED_ROWS.contains(&span_bytes) || span.height < 2 {
            for row in self.rows(span) {
                fill::fill(row, pixel.as_ref());
            }
            return;
        }
        let Some(first) = self.buffer.get_mut(start..start + span_bytes) else {
            return;
        };
        fill::fill(first, pixel.as_ref());
        for row in 1..span.height {
            let destination = start + row * stride;
            if destination + span_bytes <= self.buffer.len() {
                self.buffer
                    .copy_within(start..start + span_bytes, destination);
            }
        }
    }
}

/// Row spans (in bytes) that rectangle fills write once and copy to the
/// rows below. On hosted targets memcpy is the C library's, which picks the
/// widest stores the CPU has at run time, so copying a row that is still in
/// the L1 cache beats [`fill`]'s stores for mid-sized rows; short rows are
/// not worth a call each and long rows are written faster by [`fill`]'s
/// string store. The guest's memcpy (compiler-builtins) copies a word at a
/// time, slower than [`fill`]'s 16-byte stores, so the guest never copies.
const REPLICATED_ROWS: core::ops::Range<usize> = if cfg!(target_os = "none") {
    0..0
} else {
    256..4096
};

/// A rectangle inside the frame, in pixels.
#[derive(Clone, Copy)]
struct Span {
    left: usize,
    top: usize,
    width: usize,
    height: usize,
}

/// Drops the next `count` items of `iter`.
fn skip<I: Iterator>(iter: &mut I, count: usize) {
    if count > 0 {
        iter.nth(count - 1);
    }
}

impl<F: Format> OriginDimensions for Framebuffer<'_, F> {
    fn size(&self) -> Size {
        Size::new(self.layout.width, self.layout.height)
    }
}

impl<F: Format> DrawTarget for Framebuffer<'_, F> {
    type Color = F::Color;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, color) in pixels {
            if let Some(offset) = self.offset(point) {
                if let Some(bytes) = self.buffer.get_mut(offset..offset + F::BYTES_PER_PIXEL) {
                    bytes.copy_from_slice(F::encode(color).as_ref());
                }
            }
        }
        Ok(())
    }

    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        let Some(span) = self.visible(area) else {
            return Ok(());
        };
        // Colors run over the whole of `area`, row by row: skip those of the
        // rows above the frame and of the columns left and right of it.
        let area_width = area.size.width as usize;
        let rows_above = (span.top as i64 - i64::from(area.top_left.y)) as usize;
        let columns_left = (span.left as i64 - i64::from(area.top_left.x)) as usize;
        let columns_right = area_width - columns_left - span.width;
        let mut colors = colors.into_iter();
        skip(&mut colors, rows_above.saturating_mul(area_width));
        let last_row = span.height - 1;
        for (index, row) in self.rows(span).enumerate() {
            skip(&mut colors, columns_left);
            let mut written = 0;
            for (bytes, color) in row
                .chunks_exact_mut(F::BYTES_PER_PIXEL)
                .zip(colors.by_ref())
            {
                bytes.copy_from_slice(F::encode(color).as_ref());
                written += 1;
            }
            if written < span.width {
                break;
            }
            if index < last_row {
                skip(&mut colors, columns_right);
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        if let Some(span) = self.visible(area) {
            self.fill_span(span, color);
        }
        Ok(())
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        let span = Span {
            left: 0,
            top: 0,
            width: self.layout.width as usize,
            height: self.layout.height as usize,
        };
        self.fill_span(span, color);
        Ok(())
    }
}

/// A read-only view of a frame in memory, for code that reads frames back
/// (the Dom0 backend turning a flipped buffer into an image, tests).
#[derive(Clone, Copy)]
pub struct FrameView<'a> {
    buffer: &'a [u8],
    layout: Layout,
}

impl<'a> FrameView<'a> {
    /// A view of the frame `layout` describes at the start of `buffer`.
    pub fn new(buffer: &'a [u8], layout: Layout) -> Result<Self, FramebufferError> {
        layout.check_buffer(buffer.len())?;
        Ok(FrameView { buffer, layout })
    }

    /// The frame's geometry.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The color at (`x`, `y`) widened to [`Rgb888`], or `None` outside the
    /// frame.
    pub fn pixel_rgb888(&self, x: u32, y: u32) -> Option<Rgb888> {
        if x >= self.layout.width || y >= self.layout.height {
            return None;
        }
        let bytes_per_pixel = self.layout.format.bytes_per_pixel();
        let offset = y as usize * self.layout.stride + x as usize * bytes_per_pixel;
        self.layout
            .format
            .decode_rgb888(self.buffer.get(offset..offset + bytes_per_pixel)?)
    }

    /// Appends the frame as packed 8-bit R, G, B triples, row by row (what a
    /// PNG encoder takes for an RGB8 image).
    pub fn write_rgb8(&self, out: &mut alloc::vec::Vec<u8>) {
        let layout = self.layout;
        let bytes_per_pixel = layout.format.bytes_per_pixel();
        out.reserve(layout.width as usize * layout.height as usize * 3);
        for row in self
            .buffer
            .chunks(layout.stride)
            .take(layout.height as usize)
        {
            let pixels = row.get(..layout.row_bytes()).unwrap_or_default();
            for pixel in pixels.chunks_exact(bytes_per_pixel) {
                let color = layout.format.decode_rgb888(pixel).unwrap_or(Rgb888::BLACK);
                out.extend_from_slice(&[color.r(), color.g(), color.b()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;
    use embedded_graphics::mono_font::{ascii::FONT_6X10, MonoTextStyle};
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle};
    use embedded_graphics::text::Text;
    use std::vec;
    use std::vec::Vec;

    /// A target that stores every pixel drawn, one at a time, and nothing
    /// else: what the framebuffer must match.
    struct Reference<C> {
        width: u32,
        height: u32,
        pixels: Vec<C>,
    }

    impl<C: PixelColor> Reference<C> {
        fn new(width: u32, height: u32, background: C) -> Self {
            Reference {
                width,
                height,
                pixels: vec![background; (width * height) as usize],
            }
        }
    }

    impl<C: PixelColor> OriginDimensions for Reference<C> {
        fn size(&self) -> Size {
            Size::new(self.width, self.height)
        }
    }

    impl<C: PixelColor> DrawTarget for Reference<C> {
        type Color = C;
        type Error = Infallible;

        fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
        where
            I: IntoIterator<Item = Pixel<C>>,
        {
            for Pixel(point, color) in pixels {
                if point.x >= 0
                    && point.y >= 0
                    && (point.x as u32) < self.width
                    && (point.y as u32) < self.height
                {
                    self.pixels[(point.y as u32 * self.width + point.x as u32) as usize] = color;
                }
            }
            Ok(())
        }
    }

    fn assert_same<F: Format>(framebuffer: &Framebuffer<'_, F>, reference: &Reference<F::Color>)
    where
        F::Color: fmt::Debug,
    {
        for y in 0..reference.height {
            for x in 0..reference.width {
                let point = Point::new(x as i32, y as i32);
                assert_eq!(
                    framebuffer.pixel(point),
                    Some(reference.pixels[(y * reference.width + x) as usize]),
                    "pixel ({x}, {y})"
                );
            }
        }
    }

    /// Deterministic pseudo-random numbers for shapes.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u32
        }

        fn range(&mut self, low: i32, high: i32) -> i32 {
            low + (self.next() % (high - low) as u32) as i32
        }
    }

    fn random_color(rng: &mut Lcg) -> Rgb888 {
        let bits = rng.next();
        Rgb888::new(bits as u8, (bits >> 8) as u8, (bits >> 16) as u8)
    }

    /// Draws the same mix of clipped and unclipped drawing operations on both
    /// targets.
    fn draw_mix<D: DrawTarget<Color = C>, C: PixelColor + From<Rgb888>>(target: &mut D, seed: u64)
    where
        D::Error: fmt::Debug,
    {
        let mut rng = Lcg(seed);
        let size = target.bounding_box().size;
        let (w, h) = (size.width as i32, size.height as i32);
        target.clear(C::from(Rgb888::new(1, 2, 3))).unwrap();
        for _ in 0..40 {
            let color = C::from(random_color(&mut rng));
            let top_left = Point::new(rng.range(-w / 2, w + 2), rng.range(-h / 2, h + 2));
            let rect_size = Size::new(rng.range(0, w) as u32, rng.range(0, h) as u32);
            let area = Rectangle::new(top_left, rect_size);
            match rng.next() % 6 {
                0 => target.fill_solid(&area, color).unwrap(),
                1 => {
                    let base = rng.next();
                    let colors = (0u32..).map(move |i| {
                        let v = base.wrapping_add(i.wrapping_mul(2_654_435_761));
                        C::from(Rgb888::new(v as u8, (v >> 8) as u8, (v >> 16) as u8))
                    });
                    target.fill_contiguous(&area, colors).unwrap()
                }
                2 => Line::new(
                    top_left,
                    top_left + Point::new(rng.range(-w, w), rng.range(-h, h)),
                )
                .into_styled(PrimitiveStyle::with_stroke(color, rng.range(1, 6) as u32))
                .draw(target)
                .unwrap(),
                3 => Circle::new(top_left, rng.range(0, w) as u32)
                    .into_styled(PrimitiveStyle::with_fill(color))
                    .draw(target)
                    .unwrap(),
                4 => Circle::new(top_left, rng.range(0, w) as u32)
                    .into_styled(PrimitiveStyle::with_stroke(color, 3))
                    .draw(target)
                    .unwrap(),
                _ => {
                    Text::new(
                        "Xen vdispl 0123",
                        top_left,
                        MonoTextStyle::new(&FONT_6X10, color),
                    )
                    .draw(target)
                    .unwrap();
                }
            }
        }
    }

    #[test]
    fn stride_is_whole_words_of_the_row() {
        assert_eq!(stride_for(1920, 32), Some(7680));
        assert_eq!(stride_for(800, 16), Some(1600));
        assert_eq!(stride_for(801, 16), Some(1604));
        assert_eq!(stride_for(1, 16), Some(4));
        assert_eq!(stride_for(0, 32), Some(0));
        assert_eq!(stride_for(u32::MAX, 32), None);
    }

    #[test]
    fn formats_follow_the_connector_bpp() {
        assert_eq!(PixelFormat::from_bpp(32), Ok(PixelFormat::Xrgb8888));
        assert_eq!(PixelFormat::from_bpp(16), Ok(PixelFormat::Rgb565));
        assert_eq!(
            PixelFormat::from_bpp(24),
            Err(FramebufferError::UnsupportedBpp(24))
        );
        assert_eq!(PixelFormat::Xrgb8888.fourcc(), 0x3432_5258);
        assert_eq!(PixelFormat::Rgb565.fourcc(), 0x3631_4752);
    }

    #[test]
    fn construction_rejects_bad_geometry() {
        let mut buffer = vec![0u8; 64 * 4 * 10];
        assert_eq!(
            Xrgb8888Framebuffer::new(&mut buffer, 0, 10, 256).err(),
            Some(FramebufferError::Empty)
        );
        assert_eq!(
            Xrgb8888Framebuffer::new(&mut buffer, 64, 10, 252).err(),
            Some(FramebufferError::StrideTooSmall {
                stride: 252,
                row_bytes: 256
            })
        );
        assert_eq!(
            Rgb565Framebuffer::new(&mut buffer, 63, 10, 126).err(),
            Some(FramebufferError::StrideMisaligned { stride: 126 })
        );
        assert_eq!(
            Xrgb8888Framebuffer::new(&mut buffer, 64, 11, 256).err(),
            Some(FramebufferError::BufferTooSmall {
                len: 2560,
                needed: 2816
            })
        );
        assert_eq!(
            Xrgb8888Framebuffer::new(&mut buffer, 1 << 31, 1, 1 << 33).err(),
            Some(FramebufferError::TooLarge)
        );
        assert_eq!(
            Layout::new(usize::MAX as u32, 3, usize::MAX - 3, PixelFormat::Rgb565).err(),
            Some(FramebufferError::TooLarge)
        );
        let layout = Layout::packed(63, 10, PixelFormat::Rgb565).unwrap();
        assert_eq!(layout.stride(), 128);
        assert_eq!(
            Xrgb8888Framebuffer::with_layout(&mut buffer, layout).err(),
            Some(FramebufferError::UnsupportedBpp(16))
        );
        assert!(Rgb565Framebuffer::with_layout(&mut buffer, layout).is_ok());
        assert!(Xrgb8888Framebuffer::new(&mut buffer, 64, 10, 256).is_ok());
    }

    #[test]
    fn xrgb8888_pixel_is_b_g_r_x_in_memory() {
        let mut buffer = vec![0xeeu8; 4 * 4 * 2];
        let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, 4, 2).unwrap();
        Pixel(Point::new(1, 1), Rgb888::new(0x12, 0x34, 0x56))
            .draw(&mut framebuffer)
            .unwrap();
        let offset = 4 * 4 + 4;
        assert_eq!(
            &framebuffer.as_bytes()[offset..offset + 4],
            &[0x56, 0x34, 0x12, 0x00]
        );
        assert_eq!(
            u32::from_le_bytes(buffer[offset..offset + 4].try_into().unwrap()),
            0x0012_3456
        );
        assert_eq!(buffer[offset - 1], 0xee, "neighbours untouched");
        assert_eq!(buffer[offset + 4], 0xee, "neighbours untouched");
    }

    #[test]
    fn rgb565_pixel_is_a_little_endian_u16() {
        let mut buffer = vec![0u8; 8 * 2];
        let mut framebuffer = Rgb565Framebuffer::packed(&mut buffer, 3, 2).unwrap();
        assert_eq!(framebuffer.layout().stride(), 8);
        framebuffer
            .fill_solid(
                &Rectangle::new(Point::new(2, 1), Size::new(5, 5)),
                Rgb565::new(0b10101, 0b110011, 0b01110),
            )
            .unwrap();
        let value: u16 = (0b10101 << 11) | (0b110011 << 5) | 0b01110;
        assert_eq!(&buffer[8 + 4..8 + 6], &value.to_le_bytes());
        assert_eq!(&buffer[8 + 6..], &[0, 0], "padding untouched");
        assert!(buffer[..12].iter().all(|&b| b == 0));
    }

    #[test]
    fn padding_past_the_row_is_never_written() {
        let mut buffer = vec![0xa5u8; 48 * 20];
        let mut framebuffer = Xrgb8888Framebuffer::new(&mut buffer, 10, 20, 48).unwrap();
        framebuffer.clear(Rgb888::WHITE).unwrap();
        draw_mix(&mut framebuffer, 3);
        for row in buffer.chunks(48) {
            assert_eq!(&row[40..], &[0xa5; 8]);
        }
    }

    #[test]
    fn drawing_matches_a_per_pixel_reference_in_both_formats() {
        for (width, height, seed) in [(64, 48, 1), (33, 17, 2), (1, 1, 3), (97, 5, 4), (7, 70, 5)] {
            let mut reference = Reference::new(width, height, Rgb888::BLACK);
            draw_mix(&mut reference, seed);
            let mut buffer = vec![0u8; stride_for(width, 32).unwrap() as usize * height as usize];
            let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, width, height).unwrap();
            draw_mix(&mut framebuffer, seed);
            assert_same(&framebuffer, &reference);

            let mut reference = Reference::new(width, height, Rgb565::BLACK);
            draw_mix(&mut reference, seed);
            // A padded stride too.
            let stride = stride_for(width, 16).unwrap() as usize + 8;
            let mut buffer = vec![0u8; stride * height as usize];
            let mut framebuffer =
                Rgb565Framebuffer::new(&mut buffer, width, height, stride).unwrap();
            draw_mix(&mut framebuffer, seed);
            assert_same(&framebuffer, &reference);
        }
    }

    #[test]
    fn fill_contiguous_clipped_on_every_side_matches_mock_display() {
        let colors = |area: Rectangle| {
            (0..area.size.width * area.size.height)
                .map(|i| Rgb888::new(i as u8, (i >> 8) as u8, 0x40))
                .collect::<Vec<_>>()
        };
        for area in [
            Rectangle::new(Point::new(-5, -7), Size::new(20, 20)),
            Rectangle::new(Point::new(50, 50), Size::new(30, 30)),
            Rectangle::new(Point::new(-10, 20), Size::new(90, 3)),
            Rectangle::new(Point::new(10, -100), Size::new(4, 300)),
            Rectangle::new(Point::new(3, 4), Size::new(5, 6)),
            Rectangle::new(Point::new(70, 4), Size::new(5, 6)),
        ] {
            let mut mock = MockDisplay::<Rgb888>::new();
            mock.set_allow_out_of_bounds_drawing(true);
            mock.set_allow_overdraw(true);
            mock.fill_contiguous(&area, colors(area)).unwrap();

            let mut buffer = vec![0u8; 64 * 64 * 4];
            let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, 64, 64).unwrap();
            framebuffer.fill_contiguous(&area, colors(area)).unwrap();
            for point in Rectangle::new(Point::zero(), Size::new(64, 64)).points() {
                let expected = mock.get_pixel(point).unwrap_or(Rgb888::BLACK);
                assert_eq!(framebuffer.pixel(point), Some(expected), "{area:?} {point}");
            }
        }
    }

    #[test]
    fn fill_contiguous_with_too_few_colors_stops_where_they_end() {
        let mut buffer = vec![0u8; 4 * 4 * 4];
        let mut framebuffer = Xrgb8888Framebuffer::packed(&mut buffer, 4, 4).unwrap();
        let area = Rectangle::new(Point::new(-1, 1), Size::new(4, 2));
        framebuffer
            .fill_contiguous(&area, [Rgb888::RED; 6])
            .unwrap();
        let red = |x, y| framebuffer.pixel(Point::new(x, y)) == Some(Rgb888::RED);
        assert!(red(0, 1) && red(1, 1) && red(2, 1));
        assert!(red(0, 2) && !red(1, 2) && !red(3, 1));
    }

    #[test]
    fn frame_view_reads_back_rgb8() {
        let mut buffer = vec![0u8; 8 * 2];
        let mut framebuffer = Rgb565Framebuffer::packed(&mut buffer, 3, 2).unwrap();
        framebuffer.clear(Rgb565::CSS_ORANGE).unwrap();
        Pixel(Point::new(0, 1), Rgb565::BLUE)
            .draw(&mut framebuffer)
            .unwrap();
        let layout = framebuffer.layout();
        let view = FrameView::new(&buffer, layout).unwrap();
        let orange = Rgb888::from(Rgb565::CSS_ORANGE);
        assert_eq!(view.pixel_rgb888(2, 0), Some(orange));
        assert_eq!(view.pixel_rgb888(0, 1), Some(Rgb888::BLUE));
        assert_eq!(view.pixel_rgb888(3, 0), None);
        let mut rgb = Vec::new();
        view.write_rgb8(&mut rgb);
        assert_eq!(rgb.len(), 3 * 2 * 3);
        assert_eq!(&rgb[9..12], &[0, 0, 255]);
        assert_eq!(&rgb[..3], &[orange.r(), orange.g(), orange.b()]);
        assert_eq!(
            FrameView::new(&buffer[..15], layout).err(),
            Some(FramebufferError::BufferTooSmall {
                len: 15,
                needed: 16
            })
        );
    }
}
