//! Drawing helpers the scenes share: the canvas in relative coordinates,
//! fonts by screen size, text scaled up by whole pixels, integer
//! trigonometry and color blends (no floating point, so the guest and the
//! host compute the same pixels).

use embedded_graphics::mono_font::{ascii, MonoFont, MonoTextStyle, MonoTextStyleBuilder};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::text::{Baseline, Text};

/// The target's bounding box, addressed from its top left corner.
#[derive(Clone, Copy)]
pub(super) struct Canvas {
    origin: Point,
    /// Width in pixels.
    pub w: i32,
    /// Height in pixels.
    pub h: i32,
}

impl Canvas {
    pub fn of<D: Dimensions>(target: &D) -> Self {
        let bounds = target.bounding_box();
        Canvas {
            origin: bounds.top_left,
            w: i32::try_from(bounds.size.width).unwrap_or(i32::MAX),
            h: i32::try_from(bounds.size.height).unwrap_or(i32::MAX),
        }
    }

    /// A point `x`, `y` from the top left corner.
    pub fn at(&self, x: i32, y: i32) -> Point {
        self.origin + Point::new(x, y)
    }

    /// The rectangle from (`x`, `y`) of `w` x `h`; negative sizes are empty.
    pub fn rect(&self, x: i32, y: i32, w: i32, h: i32) -> Rectangle {
        Rectangle::new(self.at(x, y), Size::new(w.max(0) as u32, h.max(0) as u32))
    }

    /// The shorter side.
    pub fn min_side(&self) -> i32 {
        self.w.min(self.h)
    }

    /// Fills a rectangle (relative coordinates).
    pub fn fill<D>(
        &self,
        target: &mut D,
        x: i32,
        y: i32,
        w: i32,
        h: i32,
        color: Rgb888,
    ) -> Result<(), D::Error>
    where
        D: DrawTarget<Color = Rgb888>,
    {
        target.fill_solid(&self.rect(x, y, w, h), color)
    }
}

/// The fonts a scene uses, picked by screen size.
#[derive(Clone, Copy)]
pub(super) struct Fonts {
    /// Captions and fine print.
    pub small: &'static MonoFont<'static>,
    /// Ordinary text.
    pub body: &'static MonoFont<'static>,
    /// Headings.
    pub title: &'static MonoFont<'static>,
    /// Whole-pixel scale for headline text drawn with `title`.
    pub scale: u32,
}

impl Fonts {
    pub fn for_canvas(canvas: &Canvas) -> Self {
        if canvas.w >= 1600 && canvas.h >= 900 {
            Fonts {
                small: &ascii::FONT_9X15,
                body: &ascii::FONT_10X20,
                title: &ascii::FONT_10X20,
                scale: 3,
            }
        } else if canvas.w >= 1000 && canvas.h >= 560 {
            Fonts {
                small: &ascii::FONT_7X13,
                body: &ascii::FONT_9X15,
                title: &ascii::FONT_10X20,
                scale: 2,
            }
        } else if canvas.w >= 480 && canvas.h >= 320 {
            Fonts {
                small: &ascii::FONT_6X10,
                body: &ascii::FONT_7X13,
                title: &ascii::FONT_9X18_BOLD,
                scale: 2,
            }
        } else {
            Fonts {
                small: &ascii::FONT_4X6,
                body: &ascii::FONT_5X8,
                title: &ascii::FONT_6X10,
                scale: 1,
            }
        }
    }
}

/// Width of `text` in `font` at `scale`, in pixels.
pub(super) fn text_width(text: &str, font: &MonoFont<'_>, scale: u32) -> i32 {
    let count = text.chars().count() as u32;
    let advance = font.character_size.width + font.character_spacing;
    let width = (count * advance).saturating_sub(font.character_spacing);
    (width * scale).min(i32::MAX as u32) as i32
}

/// Height of a line of `font` at `scale`, in pixels.
pub(super) fn text_height(font: &MonoFont<'_>, scale: u32) -> i32 {
    (font.character_size.height * scale) as i32
}

/// Draws `text` with its top left corner at `top_left`, each font pixel a
/// `scale` x `scale` square; returns where the text ends on the right.
pub(super) fn draw_text<D>(
    target: &mut D,
    text: &str,
    top_left: Point,
    font: &MonoFont<'_>,
    scale: u32,
    color: Rgb888,
) -> Result<i32, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let style = MonoTextStyle::new(font, color);
    if scale <= 1 {
        let end = Text::with_baseline(text, top_left, style, Baseline::Top).draw(target)?;
        return Ok(end.x);
    }
    let mut scaled = Scaled {
        parent: target,
        scale,
        offset: top_left,
    };
    let end = Text::with_baseline(text, Point::zero(), style, Baseline::Top).draw(&mut scaled)?;
    Ok(top_left.x + end.x * scale as i32)
}

/// Draws `text` on a `background` box exactly its size (each glyph cell
/// filled through `fill_contiguous`).
pub(super) fn draw_text_on<D>(
    target: &mut D,
    text: &str,
    top_left: Point,
    font: &MonoFont<'_>,
    color: Rgb888,
    background: Rgb888,
) -> Result<i32, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let style = MonoTextStyleBuilder::new()
        .font(font)
        .text_color(color)
        .background_color(background)
        .build();
    Ok(Text::with_baseline(text, top_left, style, Baseline::Top)
        .draw(target)?
        .x)
}

/// Draws `text` centred on `center_x`, top at `top`.
pub(super) fn draw_text_centered<D>(
    target: &mut D,
    text: &str,
    center_x: i32,
    top: i32,
    font: &MonoFont<'_>,
    scale: u32,
    color: Rgb888,
) -> Result<i32, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let left = center_x - text_width(text, font, scale) / 2;
    draw_text(target, text, Point::new(left, top), font, scale, color)
}

/// A target that draws every pixel as a `scale` x `scale` square, from
/// `offset`: large text out of the small built-in fonts.
struct Scaled<'a, D> {
    parent: &'a mut D,
    scale: u32,
    offset: Point,
}

impl<D: DrawTarget> Scaled<'_, D> {
    fn square(&self, point: Point, size: Size) -> Rectangle {
        Rectangle::new(self.offset + point * self.scale as i32, size * self.scale)
    }
}

impl<D: DrawTarget> Dimensions for Scaled<'_, D> {
    fn bounding_box(&self) -> Rectangle {
        let parent = self.parent.bounding_box();
        let scale = self.scale as i32;
        let top_left = (parent.top_left - self.offset).component_div(Point::new(scale, scale));
        Rectangle::new(
            top_left - Point::new(1, 1),
            Size::new(
                parent.size.width / self.scale + 2,
                parent.size.height / self.scale + 2,
            ),
        )
    }
}

impl<D: DrawTarget> DrawTarget for Scaled<'_, D> {
    type Color = D::Color;
    type Error = D::Error;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        // Glyphs arrive row by row: runs of neighbours in one color become
        // one rectangle, so the parent fills a few wide rectangles rather
        // than a square per pixel.
        let mut run: Option<(Point, u32, Self::Color)> = None;
        for Pixel(point, color) in pixels {
            match &mut run {
                Some((start, length, run_color))
                    if *run_color == color
                        && point.y == start.y
                        && i64::from(point.x) == i64::from(start.x) + i64::from(*length) =>
                {
                    *length += 1;
                }
                _ => {
                    if let Some((start, length, run_color)) = run.replace((point, 1, color)) {
                        let area = self.square(start, Size::new(length, 1));
                        self.parent.fill_solid(&area, run_color)?;
                    }
                }
            }
        }
        if let Some((start, length, run_color)) = run {
            let area = self.square(start, Size::new(length, 1));
            self.parent.fill_solid(&area, run_color)?;
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = self.square(area.top_left, area.size);
        self.parent.fill_solid(&area, color)
    }
}

/// `sin(step * 6°)` times 1024 for steps 0 to 15 (a quarter turn).
const QUARTER_SINE: [i32; 16] = [
    0, 107, 213, 316, 416, 512, 602, 685, 761, 828, 887, 935, 974, 1002, 1018, 1024,
];

/// `sin(step * 6°) * 1024`: 60 steps to the turn, like a clock's seconds.
pub(super) fn sine_60(step: u32) -> i32 {
    let step = (step % 60) as usize;
    match step {
        0..=15 => QUARTER_SINE[step],
        16..=30 => QUARTER_SINE[30 - step],
        31..=45 => -QUARTER_SINE[step - 30],
        _ => -QUARTER_SINE[60 - step],
    }
}

/// `cos(step * 6°) * 1024`.
pub(super) fn cosine_60(step: u32) -> i32 {
    sine_60(step % 60 + 15)
}

/// The point `length` pixels from `center` in the clock direction `step`
/// (0 = up, 15 = right, 60 to the turn).
pub(super) fn clock_point(center: Point, length: i32, step: u32) -> Point {
    center
        + Point::new(
            length * sine_60(step) / 1024,
            -length * cosine_60(step) / 1024,
        )
}

/// The blend `from` + (`to` - `from`) * `num` / `den`, per channel.
pub(super) fn blend(from: Rgb888, to: Rgb888, num: i32, den: i32) -> Rgb888 {
    let den = den.max(1);
    let num = num.clamp(0, den);
    let channel = |a: u8, b: u8| (i32::from(a) + (i32::from(b) - i32::from(a)) * num / den) as u8;
    Rgb888::new(
        channel(from.r(), to.r()),
        channel(from.g(), to.g()),
        channel(from.b(), to.b()),
    )
}

/// A color around the hue wheel: `step` of 360 steps, full saturation.
pub(super) fn hue(step: u32) -> Rgb888 {
    let step = (step % 360) as i32;
    let rise = (step % 60 * 255 / 60) as u8;
    let fall = 255 - rise;
    match step / 60 {
        0 => Rgb888::new(255, rise, 0),
        1 => Rgb888::new(fall, 255, 0),
        2 => Rgb888::new(0, 255, rise),
        3 => Rgb888::new(0, fall, 255),
        4 => Rgb888::new(rise, 0, 255),
        _ => Rgb888::new(255, 0, fall),
    }
}

/// Position `time` along a back-and-forth path of `span` steps: 0 up to
/// `span`, then back down.
pub(super) fn bounce(time: u64, span: i32) -> i32 {
    if span <= 0 {
        return 0;
    }
    let period = 2 * span as u64;
    let phase = (time % period) as i32;
    if phase <= span {
        phase
    } else {
        2 * span - phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_trigonometry_is_a_circle() {
        for step in 0..60 {
            let (s, c) = (sine_60(step), cosine_60(step));
            let radius = s * s + c * c;
            assert!(
                (1_040_000..=1_058_000).contains(&radius),
                "{step}: {radius}"
            );
        }
        assert_eq!(clock_point(Point::zero(), 100, 0), Point::new(0, -100));
        assert_eq!(clock_point(Point::zero(), 100, 15), Point::new(100, 0));
        assert_eq!(clock_point(Point::zero(), 100, 30), Point::new(0, 100));
        assert_eq!(clock_point(Point::zero(), 100, 45), Point::new(-100, 0));
    }

    #[test]
    fn scaled_text_is_each_pixel_of_the_text_as_a_square() {
        use embedded_graphics::mock_display::MockDisplay;
        for (text, color) in [("Hg", Rgb888::WHITE), ("#%", Rgb888::new(1, 2, 3))] {
            let mut small = MockDisplay::<Rgb888>::new();
            draw_text(&mut small, text, Point::zero(), &ascii::FONT_6X10, 1, color).unwrap();
            let mut large = MockDisplay::<Rgb888>::new();
            let end = draw_text(
                &mut large,
                text,
                Point::new(1, 2),
                &ascii::FONT_6X10,
                3,
                color,
            )
            .unwrap();
            assert_eq!(end, 1 + 3 * 12);
            for y in 0..64 {
                for x in 0..64 {
                    let inside = x >= 1 && y >= 2;
                    let want = inside
                        .then(|| small.get_pixel(Point::new((x - 1) / 3, (y - 2) / 3)))
                        .flatten();
                    assert_eq!(large.get_pixel(Point::new(x, y)), want, "{text} at {x},{y}");
                }
            }
        }
    }

    #[test]
    fn bounce_goes_there_and_back() {
        let path: std::vec::Vec<i32> = (0..8).map(|t| bounce(t, 3)).collect();
        assert_eq!(path, [0, 1, 2, 3, 2, 1, 0, 1]);
        assert_eq!(bounce(5, 0), 0);
        assert_eq!(bounce(5, -4), 0);
    }

    #[test]
    fn blends_and_hues_stay_in_range() {
        let (black, white) = (Rgb888::BLACK, Rgb888::WHITE);
        assert_eq!(blend(black, white, 0, 10), black);
        assert_eq!(blend(black, white, 10, 10), white);
        assert_eq!(blend(black, white, 20, 10), white);
        assert_eq!(blend(white, black, 5, 10), Rgb888::new(128, 128, 128));
        assert_eq!(blend(black, white, 1, 0), white);
        assert_eq!(hue(0), Rgb888::new(255, 0, 0));
        assert_eq!(hue(120), Rgb888::new(0, 255, 0));
        assert_eq!(hue(240), Rgb888::new(0, 0, 255));
    }
}
