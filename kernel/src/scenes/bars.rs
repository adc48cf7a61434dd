//! Color bars after SMPTE EG 1-1990: seven 75 % bars, the reverse blue
//! strip, the -I / white / +Q / PLUGE row, and a box with the connector's
//! name and resolution.

use super::draw::{draw_text_centered, text_height, text_width, Canvas, Fonts};
use super::scene::{connector_name, Frame};
use super::text::TextBuf;
use core::fmt::Write;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyleBuilder, RoundedRectangle};

/// The seven 75 % bars, left to right.
const TOP: [Rgb888; 7] = [
    Rgb888::new(191, 191, 191),
    Rgb888::new(191, 191, 0),
    Rgb888::new(0, 191, 191),
    Rgb888::new(0, 191, 0),
    Rgb888::new(191, 0, 191),
    Rgb888::new(191, 0, 0),
    Rgb888::new(0, 0, 191),
];

/// 7.5 % black.
const BLACK: Rgb888 = Rgb888::new(19, 19, 19);

/// The reverse blue strip under the bars.
const MIDDLE: [Rgb888; 7] = [
    Rgb888::new(0, 0, 191),
    BLACK,
    Rgb888::new(191, 0, 191),
    BLACK,
    Rgb888::new(0, 191, 191),
    BLACK,
    Rgb888::new(191, 191, 191),
];

/// The bottom row as (start, end, color) in 84ths of the width (a bar is
/// 12): -I, white, +Q, black, then PLUGE at -4 %, 0 and +4 % under the
/// sixth bar.
const BOTTOM: [(i32, i32, Rgb888); 8] = [
    (0, 15, Rgb888::new(0, 33, 76)),
    (15, 30, Rgb888::new(255, 255, 255)),
    (30, 45, Rgb888::new(50, 0, 106)),
    (45, 60, BLACK),
    (60, 64, Rgb888::new(9, 9, 9)),
    (64, 68, BLACK),
    (68, 72, Rgb888::new(29, 29, 29)),
    (72, 84, BLACK),
];

pub(super) fn draw<D>(frame: &Frame<'_>, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let canvas = Canvas::of(target);
    let (w, h) = (canvas.w, canvas.h);
    let top_height = h * 2 / 3;
    let middle_height = h / 12;
    let bottom_top = top_height + middle_height;
    let edge = |index: i32, parts: i32| (i64::from(w) * i64::from(index) / i64::from(parts)) as i32;

    for index in 0..7 {
        let (left, right) = (edge(index, 7), edge(index + 1, 7));
        canvas.fill(
            target,
            left,
            0,
            right - left,
            top_height,
            TOP[index as usize],
        )?;
        canvas.fill(
            target,
            left,
            top_height,
            right - left,
            middle_height,
            MIDDLE[index as usize],
        )?;
    }
    for (start, end, color) in BOTTOM {
        let (left, right) = (edge(start, 84), edge(end, 84));
        canvas.fill(
            target,
            left,
            bottom_top,
            right - left,
            h - bottom_top,
            color,
        )?;
    }

    label(frame, &canvas, top_height, target)
}

/// The box in the middle of the bars: name, resolution, frame number.
fn label<D>(
    frame: &Frame<'_>,
    canvas: &Canvas,
    area_height: i32,
    target: &mut D,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let fonts = Fonts::for_canvas(canvas);
    let name = connector_name(frame.connector);
    let mut title = TextBuf::<64>::new();
    if name.is_empty() {
        title.push_str("connector");
    } else {
        let _ = write!(title, "connector {name}");
    }
    let mut resolution = TextBuf::<32>::new();
    let _ = write!(resolution, "{} x {}", canvas.w, canvas.h);
    let mut footer = TextBuf::<48>::new();
    let _ = write!(footer, "vdispl-os  bars  frame {}", frame.number);

    let title_scale = fonts.scale.min(2);
    let lines = [
        (title.as_str(), fonts.title, title_scale, Rgb888::WHITE),
        (
            resolution.as_str(),
            fonts.title,
            fonts.scale,
            Rgb888::new(255, 220, 90),
        ),
        (footer.as_str(), fonts.small, 1, Rgb888::new(170, 170, 170)),
    ];
    let gap = text_height(fonts.small, 1) / 2;
    let content_width = lines
        .iter()
        .map(|&(text, font, scale, _)| text_width(text, font, scale))
        .max()
        .unwrap_or(0);
    let content_height: i32 = lines
        .iter()
        .map(|&(_, font, scale, _)| text_height(font, scale) + gap)
        .sum::<i32>()
        - gap;
    let padding = (canvas.min_side() / 30).max(2);
    let box_width = (content_width + 2 * padding).min(canvas.w);
    let box_height = (content_height + 2 * padding).min(area_height);
    let left = (canvas.w - box_width) / 2;
    let top = (area_height - box_height) / 2;
    let border = (canvas.min_side() / 200).max(1) as u32;
    RoundedRectangle::with_equal_corners(
        canvas.rect(left, top, box_width, box_height),
        Size::new(padding as u32, padding as u32),
    )
    .into_styled(
        PrimitiveStyleBuilder::new()
            .fill_color(Rgb888::new(12, 12, 12))
            .stroke_color(Rgb888::WHITE)
            .stroke_width(border)
            .build(),
    )
    .draw(target)?;

    let center = canvas.at(canvas.w / 2, 0).x;
    let mut y = canvas.at(0, top + padding).y;
    for (text, font, scale, color) in lines {
        draw_text_centered(target, text, center, y, font, scale, color)?;
        y += text_height(font, scale) + gap;
    }
    Ok(())
}
