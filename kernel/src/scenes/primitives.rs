//! Shapes, lines and text: one of each embedded-graphics primitive in a
//! grid of captioned cells, and sample lines in several mono fonts.

use super::draw::{draw_text, draw_text_centered, draw_text_on, hue, text_height, Canvas, Fonts};
use super::scene::Frame;
use super::text::TextBuf;
use core::fmt::Write;
use embedded_graphics::mono_font::{ascii, MonoFont, MonoTextStyleBuilder};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{
    Arc, Circle, Ellipse, Line, Polyline, PrimitiveStyle, PrimitiveStyleBuilder, Rectangle,
    RoundedRectangle, Sector, Triangle,
};
use embedded_graphics::text::{Baseline, Text};

const BACKGROUND: Rgb888 = Rgb888::new(16, 20, 32);
const PANEL: Rgb888 = Rgb888::new(28, 34, 52);
const CAPTION: Rgb888 = Rgb888::new(150, 160, 185);

const CAPTIONS: [&str; 8] = [
    "circle",
    "rectangle",
    "rounded rectangle",
    "triangle",
    "ellipse",
    "arc and sector",
    "lines",
    "polyline",
];

/// The triangle's size limit.
const MAX_TRIANGLE_SIDE: i32 = 170;
/// The ellipse's width limit: embedded-graphics works with the product of the
/// squares of an ellipse's width and height (stroke included) in u32, which
/// overflows beyond about this (a 4K canvas would make a 560-pixel ellipse).
const MAX_ELLIPSE_WIDTH: i32 = 240;

const PANGRAM: &str = "The quick brown fox jumps over the lazy dog 0123456789";

pub(super) fn draw<D>(frame: &Frame<'_>, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let canvas = Canvas::of(target);
    let fonts = Fonts::for_canvas(&canvas);
    let (w, h) = (canvas.w, canvas.h);
    target.fill_solid(&canvas.rect(0, 0, w, h), BACKGROUND)?;

    // Header.
    let margin = (canvas.min_side() / 40).max(1);
    let header = text_height(fonts.title, 1) + 2 * margin;
    canvas.fill(target, 0, 0, w, header, PANEL)?;
    draw_text(
        target,
        "primitives",
        canvas.at(margin, margin),
        fonts.title,
        1,
        Rgb888::WHITE,
    )?;
    let mut info = TextBuf::<48>::new();
    let _ = write!(info, "{}x{}  frame {}", w, h, frame.number);
    let info_width = super::draw::text_width(info.as_str(), fonts.body, 1);
    draw_text(
        target,
        info.as_str(),
        canvas.at(w - margin - info_width, margin),
        fonts.body,
        1,
        CAPTION,
    )?;

    // The grid of shapes: 4 x 2 cells over the middle.
    let grid_top = header + margin;
    let grid_height = h * 64 / 100 - grid_top;
    let cell_width = w / 4;
    let cell_height = grid_height / 2;
    let caption_height = text_height(fonts.small, 1) + margin;
    let side = (cell_width.min(cell_height - caption_height) * 7 / 10).max(1);
    let stroke = (side / 40).max(1) as u32;
    for (index, caption) in CAPTIONS.iter().enumerate() {
        let column = index as i32 % 4;
        let row = index as i32 / 4;
        let cell = canvas.rect(
            column * cell_width,
            grid_top + row * cell_height,
            cell_width,
            cell_height,
        );
        let center = cell.top_left + Point::new(cell_width / 2, (cell_height - caption_height) / 2);
        let shape = Rectangle::with_center(center, Size::new(side as u32, side as u32));
        draw_shape(index, shape, stroke, target)?;
        draw_text_centered(
            target,
            caption,
            center.x,
            cell.top_left.y + cell_height - caption_height,
            fonts.small,
            1,
            CAPTION,
        )?;
    }

    // Text samples.
    let mut y = h * 66 / 100;
    let samples: [(&MonoFont<'_>, &str, Rgb888); 5] = [
        (&ascii::FONT_6X10, "FONT_6X10", Rgb888::new(230, 230, 230)),
        (
            &ascii::FONT_7X13_BOLD,
            "FONT_7X13_BOLD",
            Rgb888::new(255, 210, 90),
        ),
        (
            &ascii::FONT_8X13_ITALIC,
            "FONT_8X13_ITALIC",
            Rgb888::new(120, 220, 255),
        ),
        (&ascii::FONT_9X15, "FONT_9X15", Rgb888::new(140, 240, 140)),
        (&ascii::FONT_10X20, "FONT_10X20", Rgb888::new(255, 140, 200)),
    ];
    for (font, name, color) in samples {
        let mut line = TextBuf::<96>::new();
        let _ = write!(line, "{name:<17}{PANGRAM}");
        draw_text(target, line.as_str(), canvas.at(margin, y), font, 1, color)?;
        y += text_height(font, 1) + margin / 2;
    }
    // A line on its own background, and one underlined and struck through.
    let end = draw_text_on(
        target,
        " text on a background ",
        canvas.at(margin, y),
        fonts.body,
        Rgb888::BLACK,
        Rgb888::new(255, 200, 0),
    )?;
    let decorated = MonoTextStyleBuilder::new()
        .font(fonts.body)
        .text_color(Rgb888::WHITE)
        .underline_with_color(Rgb888::new(255, 80, 80))
        .strikethrough_with_color(Rgb888::new(80, 160, 255))
        .build();
    Text::with_baseline(
        "underlined and struck through",
        Point::new(end + margin, canvas.at(0, y).y),
        decorated,
        Baseline::Top,
    )
    .draw(target)?;
    Ok(())
}

/// Draws primitive number `index` inside `shape` (a square).
fn draw_shape<D>(
    index: usize,
    shape: Rectangle,
    stroke: u32,
    target: &mut D,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let side = shape.size.width as i32;
    let center = shape.center();
    let top_left = shape.top_left;
    let outline = |fill: Rgb888, line: Rgb888| {
        PrimitiveStyleBuilder::new()
            .fill_color(fill)
            .stroke_color(line)
            .stroke_width(stroke)
            .build()
    };
    match index {
        0 => Circle::with_center(center, side as u32)
            .into_styled(outline(Rgb888::new(224, 96, 64), Rgb888::WHITE))
            .draw(target),
        1 => Rectangle::with_center(center, Size::new(side as u32, (side * 3 / 4) as u32))
            .into_styled(outline(Rgb888::new(40, 90, 220), Rgb888::new(255, 220, 60)))
            .draw(target),
        2 => RoundedRectangle::with_equal_corners(
            shape,
            Size::new((side / 5) as u32, (side / 5) as u32),
        )
        .into_styled(outline(Rgb888::new(40, 170, 90), Rgb888::WHITE))
        .draw(target),
        3 => {
            // embedded-graphics squares products of a triangle's edge
            // lengths in i32: keep edges under 200 pixels.
            let side = side.min(MAX_TRIANGLE_SIDE);
            let top_left = center - Point::new(side / 2, side / 2);
            Triangle::new(
                Point::new(center.x, top_left.y),
                Point::new(top_left.x + side - 1, top_left.y + side - 1),
                Point::new(top_left.x, top_left.y + side * 4 / 5),
            )
            .into_styled(outline(
                Rgb888::new(200, 60, 200),
                Rgb888::new(90, 230, 230),
            ))
            .draw(target)
        }
        4 => {
            let width = side.min(MAX_ELLIPSE_WIDTH);
            Ellipse::with_center(center, Size::new(width as u32, (width * 3 / 5) as u32))
                .into_styled(outline(Rgb888::new(250, 150, 30), Rgb888::new(120, 60, 0)))
                .draw(target)
        }
        5 => {
            Sector::with_center(center, (side * 3 / 4) as u32, 30.0.deg(), 270.0.deg())
                .into_styled(PrimitiveStyle::with_fill(Rgb888::new(30, 180, 180)))
                .draw(target)?;
            Arc::with_center(center, side as u32, 300.0.deg(), 300.0.deg())
                .into_styled(PrimitiveStyle::with_stroke(Rgb888::WHITE, stroke))
                .draw(target)
        }
        6 => {
            // A fan from the bottom left corner to the top and right
            // edges, thicker further round.
            let origin = Point::new(top_left.x, top_left.y + side - 1);
            for ray in 0..8 {
                let along = 2 * (side - 1) * (ray + 1) / 8;
                let end = if along < side {
                    Point::new(top_left.x + along, top_left.y)
                } else {
                    Point::new(top_left.x + side - 1, top_left.y + along - (side - 1))
                };
                // Thick lines cost embedded-graphics far more per pixel
                // than thin ones: a few, not many.
                let width = 1 + ray as u32 / 2;
                Line::new(origin, end)
                    .into_styled(PrimitiveStyle::with_stroke(hue(ray as u32 * 40), width))
                    .draw(target)?;
            }
            Ok(())
        }
        _ => {
            let step = side / 6;
            let y_low = top_left.y + side * 3 / 4;
            let y_high = top_left.y + side / 4;
            let points = [
                Point::new(top_left.x, y_low),
                Point::new(top_left.x + step, y_high),
                Point::new(top_left.x + 2 * step, y_low),
                Point::new(top_left.x + 3 * step, y_high),
                Point::new(top_left.x + 4 * step, y_low),
                Point::new(top_left.x + 5 * step, y_high),
                Point::new(top_left.x + side - 1, y_low),
            ];
            Polyline::new(&points)
                .into_styled(PrimitiveStyle::with_stroke(
                    Rgb888::new(255, 230, 80),
                    stroke + 1,
                ))
                .draw(target)
        }
    }
}
