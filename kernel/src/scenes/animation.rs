//! Motion, as a function of the frame number alone: a bouncing ball with a
//! trail, a spinning triangle, a clock whose hand moves a tick per frame, a
//! chaser of lights, and a scrolling ticker.

use super::draw::{
    blend, bounce, clock_point, draw_text, draw_text_on, hue, text_height, text_width, Canvas,
    Fonts,
};
use super::scene::Frame;
use super::text::TextBuf;
use core::fmt::Write;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{
    Circle, Line, PrimitiveStyle, PrimitiveStyleBuilder, Triangle,
};

/// The spinner's size limit (its edges stay under 200 pixels).
const MAX_TRIANGLE_RADIUS: i32 = 110;
const SKY_TOP: Rgb888 = Rgb888::new(8, 12, 40);
const SKY_BOTTOM: Rgb888 = Rgb888::new(70, 24, 90);
const TICKER: &str = "vdispl-os  *  a Rust guest on Xen drawing to a para-virtual display  *  \
                      embedded-graphics scenes, flipped by the frontend, captured by Dom0  *  ";

pub(super) fn draw<D>(frame: &Frame<'_>, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let canvas = Canvas::of(target);
    let fonts = Fonts::for_canvas(&canvas);
    let (w, h) = (canvas.w, canvas.h);
    let f = frame.number;
    let margin = (canvas.min_side() / 40).max(1);

    // Background: a vertical gradient, as bands of rows of one color.
    let mut gradient_row = 0;
    while gradient_row < h {
        let color = blend(SKY_TOP, SKY_BOTTOM, gradient_row, h);
        let mut band_end = gradient_row + 1;
        while band_end < h && blend(SKY_TOP, SKY_BOTTOM, band_end, h) == color {
            band_end += 1;
        }
        canvas.fill(target, 0, gradient_row, w, band_end - gradient_row, color)?;
        gradient_row = band_end;
    }

    // Frame counter.
    let mut counter = TextBuf::<32>::new();
    let _ = write!(counter, "frame {f:04}");
    draw_text(
        target,
        counter.as_str(),
        canvas.at(margin, margin),
        fonts.title,
        fonts.scale,
        Rgb888::WHITE,
    )?;
    let header = margin * 2 + text_height(fonts.title, fonts.scale);

    // The ticker band at the bottom.
    let band = text_height(fonts.body, 1) + 2 * margin;
    let band_top = h - band;
    let field_bottom = band_top - margin;

    // Chaser: twelve lights, one lit per frame.
    let light = (w / 40).max(2);
    let chaser_top = field_bottom - light;
    for index in 0..12 {
        let lit = f % 12 == index as u32;
        let color = if lit {
            hue(index as u32 * 30)
        } else {
            blend(hue(index as u32 * 30), Rgb888::BLACK, 3, 4)
        };
        canvas.fill(
            target,
            margin + index * light * 3 / 2,
            chaser_top,
            light,
            light,
            color,
        )?;
    }

    // Playfield on the left: the ball and the spinner.
    let field_top = header;
    let field_width = w * 3 / 5;
    let field_height = chaser_top - margin - field_top;
    let diameter = (canvas.min_side() / 6).max(2);
    let speed_x = (w / 97).max(1) as u64;
    let speed_y = (h / 71).max(1) as u64;
    let ball_at = |time: u32| {
        canvas.at(
            margin + bounce(u64::from(time) * speed_x, field_width - margin - diameter),
            field_top + bounce(u64::from(time) * speed_y, field_height - diameter),
        )
    };
    let spinner_center = canvas.at(field_width / 2, field_top + field_height / 2);
    // Triangles stay small: embedded-graphics squares products of their
    // edge lengths in i32.
    let spinner_radius = (diameter * 3 / 4).min(MAX_TRIANGLE_RADIUS);
    let turn = f % 30 * 2;
    Triangle::new(
        clock_point(spinner_center, spinner_radius, turn),
        clock_point(spinner_center, spinner_radius, turn + 20),
        clock_point(spinner_center, spinner_radius, turn + 40),
    )
    .into_styled(PrimitiveStyle::with_fill(Rgb888::new(250, 200, 40)))
    .draw(target)?;

    for age in (1..=3u32).rev() {
        let Some(time) = f.checked_sub(age) else {
            continue;
        };
        let color = blend(hue(time % 360 * 7), SKY_BOTTOM, age as i32, 4);
        Circle::new(ball_at(time), diameter as u32)
            .into_styled(PrimitiveStyle::with_fill(color))
            .draw(target)?;
    }
    Circle::new(ball_at(f), diameter as u32)
        .into_styled(
            PrimitiveStyleBuilder::new()
                .fill_color(hue(f % 360 * 7))
                .stroke_color(Rgb888::WHITE)
                .stroke_width((diameter / 20).max(1) as u32)
                .build(),
        )
        .draw(target)?;

    // Clock on the right: the second hand moves a tick per frame.
    let clock_width = w - field_width;
    let radius = (clock_width.min(field_height) / 2 - margin).max(1);
    let center = canvas.at(field_width + clock_width / 2, field_top + field_height / 2);
    let thin = (radius / 60).max(1) as u32;
    Circle::with_center(center, (2 * radius) as u32)
        .into_styled(
            PrimitiveStyleBuilder::new()
                .fill_color(Rgb888::new(14, 18, 34))
                .stroke_color(Rgb888::new(220, 220, 230))
                .stroke_width(thin * 2)
                .build(),
        )
        .draw(target)?;
    for tick in 0..12 {
        let inner = if tick % 3 == 0 {
            radius * 3 / 4
        } else {
            radius * 17 / 20
        };
        Line::new(
            clock_point(center, inner, tick * 5),
            clock_point(center, radius * 19 / 20, tick * 5),
        )
        .into_styled(PrimitiveStyle::with_stroke(Rgb888::WHITE, thin * 2))
        .draw(target)?;
    }
    Line::new(center, clock_point(center, radius * 11 / 20, (f / 60) % 60))
        .into_styled(PrimitiveStyle::with_stroke(
            Rgb888::new(200, 200, 210),
            thin * 4,
        ))
        .draw(target)?;
    Line::new(center, clock_point(center, radius * 17 / 20, f % 60))
        .into_styled(PrimitiveStyle::with_stroke(
            Rgb888::new(255, 70, 60),
            thin * 2,
        ))
        .draw(target)?;
    Circle::with_center(center, (radius / 8).max(1) as u32)
        .into_styled(PrimitiveStyle::with_fill(Rgb888::new(255, 70, 60)))
        .draw(target)?;

    // Ticker: scrolls right to left, a few pixels per frame.
    canvas.fill(target, 0, band_top, w, band, Rgb888::new(10, 10, 14))?;
    let ticker_width = text_width(TICKER, fonts.body, 1);
    let speed = (w / 160).max(2) as u64;
    let travel = (w + ticker_width).max(1) as u64;
    // Frame 0 starts with the text half way in.
    let offset = ((u64::from(f) * speed + (w / 2) as u64) % travel) as i32;
    draw_text_on(
        target,
        TICKER,
        canvas.at(w - offset, band_top + margin),
        fonts.body,
        Rgb888::new(120, 255, 160),
        Rgb888::new(10, 10, 14),
    )?;
    Ok(())
}
