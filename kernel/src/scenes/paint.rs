//! Finger paint, the interactive scene: every touch (down and motion, per
//! contact) and every absolute pointer position leaves a dot on the canvas;
//! `C` (`KEY_C`) clears it. A frame is a function of the input events its
//! connector received before it was drawn ([`Frame::input`]) and the
//! target's size, so the host redraws it from the same event script.

use super::draw::{draw_text, text_height, Canvas, Fonts};
use super::scene::Frame;
use super::text::TextBuf;
use core::fmt::Write;
use drivers::xen::kbdif::{InputEvent, Touch};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle};

/// `KEY_C` of linux/input.h: clears the canvas.
pub const KEY_CLEAR: u32 = 46;
/// Input events a connector's canvas keeps (the newest), which bounds the
/// work per frame.
pub const MAX_EVENTS: usize = 512;

const BACKGROUND: Rgb888 = Rgb888::new(16, 20, 32);
/// Dot colors by contact id (the pointer uses the last).
const INKS: [Rgb888; 5] = [
    Rgb888::new(250, 200, 60),
    Rgb888::new(80, 200, 250),
    Rgb888::new(240, 90, 160),
    Rgb888::new(120, 230, 120),
    Rgb888::new(230, 230, 230),
];

pub(super) fn draw<D>(frame: &Frame<'_>, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let canvas = Canvas::of(target);
    canvas.fill(target, 0, 0, canvas.w, canvas.h, BACKGROUND)?;
    // What came after the last clear.
    let start = frame
        .input
        .iter()
        .rposition(|event| {
            matches!(
                event,
                InputEvent::Key {
                    pressed: true,
                    keycode: KEY_CLEAR
                }
            )
        })
        .map_or(0, |clear| clear + 1);
    let radius = (canvas.min_side() / 60).clamp(2, 24);
    let mut dots = 0u32;
    let mut pointer = None;
    for event in &frame.input[start..] {
        let (x, y, ink) = match *event {
            InputEvent::Touch {
                contact,
                touch: Touch::Down { x, y } | Touch::Motion { x, y },
            } => (x, y, INKS[usize::from(contact) % (INKS.len() - 1)]),
            InputEvent::Position { x, y, .. } => {
                pointer = Some(canvas.at(
                    x.clamp(-radius, canvas.w + radius),
                    y.clamp(-radius, canvas.h + radius),
                ));
                (x, y, INKS[INKS.len() - 1])
            }
            _ => continue,
        };
        // Off the canvas is fine, as long as the arithmetic stays small.
        let (x, y) = (
            x.clamp(-radius, canvas.w + radius),
            y.clamp(-radius, canvas.h + radius),
        );
        Circle::with_center(canvas.at(x, y), (2 * radius) as u32)
            .into_styled(PrimitiveStyle::with_fill(ink))
            .draw(target)?;
        dots += 1;
    }
    if let Some(at) = pointer {
        let arm = Point::new(radius * 2, 0);
        let style = PrimitiveStyle::with_stroke(Rgb888::WHITE, 1);
        Line::new(at - arm, at + arm)
            .into_styled(style)
            .draw(target)?;
        let arm = Point::new(0, radius * 2);
        Line::new(at - arm, at + arm)
            .into_styled(style)
            .draw(target)?;
    }
    let fonts = Fonts::for_canvas(&canvas);
    let mut caption = TextBuf::<96>::new();
    let _ = write!(
        caption,
        "paint {}  frame {}  {} dots  (touch to draw, C clears)",
        frame.connector, frame.number, dots
    );
    let margin = text_height(fonts.small, 1) / 2;
    draw_text(
        target,
        caption.as_str(),
        canvas.at(margin, margin),
        fonts.small,
        1,
        Rgb888::new(200, 200, 210),
    )?;
    Ok(())
}
