//! A live status screen: the figures the guest measured when it drew the
//! frame (uptime, frames flipped, flip round trip, heap and grants in use),
//! as cards with large numbers.

use super::draw::{draw_text, hue, text_height, text_width, Canvas, Fonts};
use super::scene::{connector_name, Frame};
use super::text::TextBuf;
use core::fmt::Write;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyleBuilder, RoundedRectangle};

const BACKGROUND: Rgb888 = Rgb888::new(12, 16, 24);
const CARD: Rgb888 = Rgb888::new(26, 32, 48);
const LABEL: Rgb888 = Rgb888::new(140, 150, 175);
const ACCENT: Rgb888 = Rgb888::new(40, 120, 220);
/// One frame at 60 Hz, in microseconds: the scale of the round-trip gauge.
const FRAME_US: u64 = 16_667;

pub(super) fn draw<D>(frame: &Frame<'_>, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let canvas = Canvas::of(target);
    let fonts = Fonts::for_canvas(&canvas);
    let (w, h) = (canvas.w, canvas.h);
    let status = frame.status;
    let margin = (canvas.min_side() / 30).max(1);
    target.fill_solid(&canvas.rect(0, 0, w, h), BACKGROUND)?;

    // Title bar.
    let bar = text_height(fonts.title, 1) + 2 * margin;
    canvas.fill(target, 0, 0, w, bar, ACCENT)?;
    let mut title = TextBuf::<96>::new();
    let _ = write!(
        title,
        "vdispl-os status  connector {}  {}x{}",
        connector_name(frame.connector),
        w,
        h
    );
    draw_text(
        target,
        title.as_str(),
        canvas.at(margin, margin),
        fonts.title,
        1,
        Rgb888::WHITE,
    )?;
    // Heartbeat: alternates every frame.
    let beat = text_height(fonts.title, 1);
    let beat_color = if frame.number.is_multiple_of(2) {
        Rgb888::WHITE
    } else {
        Rgb888::new(20, 60, 120)
    };
    canvas.fill(target, w - margin - beat, margin, beat, beat, beat_color)?;

    // Cards: two columns, three rows.
    let mut uptime = TextBuf::<32>::new();
    let seconds = status.uptime_ms / 1000;
    let _ = write!(
        uptime,
        "{:02}:{:02}:{:02}.{:03}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        status.uptime_ms % 1000
    );
    let mut flips = TextBuf::<32>::new();
    let _ = write!(flips, "{}", status.flips);
    let mut rtt = TextBuf::<32>::new();
    let _ = write!(rtt, "{} us", status.flip_rtt_us);
    let mut heap = TextBuf::<32>::new();
    let _ = write!(heap, "{} KiB", status.heap_bytes.div_ceil(1024));
    let mut grants = TextBuf::<32>::new();
    let _ = write!(grants, "{}", status.grants);
    let mut frame_number = TextBuf::<32>::new();
    let _ = write!(frame_number, "{}", frame.number);
    let cards = [
        ("UPTIME", uptime.as_str(), None),
        ("FRAMES FLIPPED", flips.as_str(), None),
        (
            "FLIP ROUND TRIP",
            rtt.as_str(),
            Some((status.flip_rtt_us.min(FRAME_US), FRAME_US)),
        ),
        ("HEAP IN USE", heap.as_str(), None),
        ("GRANTS IN USE", grants.as_str(), None),
        ("STATUS FRAME", frame_number.as_str(), None),
    ];

    let top = bar + margin;
    let card_width = (w - 3 * margin) / 2;
    let card_height = (h - top - margin) / 3 - margin;
    for (index, (label, value, gauge)) in cards.into_iter().enumerate() {
        let left = margin + (index as i32 % 2) * (card_width + margin);
        let card_top = top + (index as i32 / 2) * (card_height + margin);
        let area = canvas.rect(left, card_top, card_width, card_height);
        RoundedRectangle::with_equal_corners(area, Size::new(margin as u32, margin as u32))
            .into_styled(
                PrimitiveStyleBuilder::new()
                    .fill_color(CARD)
                    .stroke_color(hue(index as u32 * 60))
                    .stroke_width((margin / 8).max(1) as u32)
                    .build(),
            )
            .draw(target)?;
        let inner = left + margin;
        draw_text(
            target,
            label,
            canvas.at(inner, card_top + margin / 2),
            fonts.body,
            1,
            LABEL,
        )?;
        let value_top = card_top + margin / 2 + text_height(fonts.body, 1) + margin / 2;
        // As large as fits the card, up to twice the headline scale.
        let room_height = card_height / 2;
        let mut scale = fonts.scale * 2;
        while scale > 1
            && (text_width(value, fonts.title, scale) > card_width - 2 * margin
                || text_height(fonts.title, scale) > room_height)
        {
            scale -= 1;
        }
        draw_text(
            target,
            value,
            canvas.at(inner, value_top),
            fonts.title,
            scale,
            Rgb888::WHITE,
        )?;
        if let Some((amount, full)) = gauge {
            let gauge_width = (card_width - 2 * margin).max(0);
            let gauge_height = (margin / 2).max(1);
            let gauge_top = card_top + card_height - margin / 2 - gauge_height;
            let filled = (gauge_width as u64 * amount / full.max(1)) as i32;
            canvas.fill(
                target,
                inner,
                gauge_top,
                gauge_width,
                gauge_height,
                Rgb888::new(50, 58, 80),
            )?;
            let color = if amount * 2 > full {
                Rgb888::new(240, 90, 60)
            } else {
                Rgb888::new(80, 220, 120)
            };
            canvas.fill(target, inner, gauge_top, filled, gauge_height, color)?;
        }
    }
    Ok(())
}
