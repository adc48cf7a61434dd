//! What a frame shows: the scene, its inputs, and the one entry point that
//! draws it.

use super::text::{truncate, Label};
use super::{animation, bars, paint, primitives, status};
use core::fmt;
use core::str::FromStr;
use drivers::xen::kbdif::InputEvent;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::DrawTarget;

/// The demo scenes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scene {
    /// SMPTE-like color bars with the connector's name and resolution.
    Bars,
    /// Shapes, lines and text in the built-in mono fonts.
    Primitives,
    /// Moving shapes, a clock hand and scrolling text, a function of the
    /// frame number.
    Animation,
    /// Uptime, frames flipped, flip round trip, heap and grants in use.
    Status,
    /// Finger paint: what the connector's input drew (the paint app's
    /// scene; not one of the demo's).
    Paint,
}

impl Scene {
    /// Every scene, in the order they run by default.
    pub const ALL: [Scene; 4] = [
        Scene::Bars,
        Scene::Primitives,
        Scene::Animation,
        Scene::Status,
    ];

    /// The scene's name in bootargs and flip lines.
    pub fn name(self) -> &'static str {
        match self {
            Scene::Bars => "bars",
            Scene::Primitives => "primitives",
            Scene::Animation => "animation",
            Scene::Status => "status",
            Scene::Paint => "paint",
        }
    }
}

impl fmt::Display for Scene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scene name that is not one of [`Scene::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownScene(pub Label);

impl fmt::Display for UnknownScene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scene {:?} (known: ", self.0.as_str())?;
        for (index, scene) in Scene::ALL.iter().chain(&[Scene::Paint]).enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{scene}")?;
        }
        f.write_str(")")
    }
}

impl FromStr for Scene {
    type Err = UnknownScene;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Scene::ALL
            .into_iter()
            .chain([Scene::Paint])
            .find(|scene| scene.name() == name)
            .ok_or(UnknownScene(Label::from_str_truncated(name)))
    }
}

/// The live figures the status scene shows, as the guest measured them when
/// it drew the frame (and printed them in the frame's [`FlipLine`]).
///
/// [`FlipLine`]: super::FlipLine
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Frames flipped on this connector so far.
    pub flips: u64,
    /// Round trip of the last page flip (request to `EVT_PG_FLIP`), in
    /// microseconds.
    pub flip_rtt_us: u64,
    /// Heap bytes in use.
    pub heap_bytes: u64,
    /// Grant references in use.
    pub grants: u64,
}

/// Bytes of a connector's name a scene shows (and a [`FlipLine`] carries).
///
/// [`FlipLine`]: super::FlipLine
pub const MAX_CONNECTOR_NAME: usize = 48;

/// The part of a connector's name scenes show: its first
/// [`MAX_CONNECTOR_NAME`] bytes, cut on a character boundary.
pub fn connector_name(name: &str) -> &str {
    truncate(name, MAX_CONNECTOR_NAME)
}

/// Everything a frame depends on besides the target's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The scene.
    pub scene: Scene,
    /// Frame number within the scene, from 0.
    pub number: u32,
    /// The connector's name (its `unique-id`); only the first
    /// [`MAX_CONNECTOR_NAME`] bytes are shown.
    pub connector: &'a str,
    /// Live figures (shown by [`Scene::Status`]).
    pub status: Status,
    /// The input events this connector received before the frame, oldest
    /// first (drawn by [`Scene::Paint`]; at most [`MAX_PAINT_EVENTS`] of
    /// the newest are kept).
    pub input: &'a [InputEvent],
}

/// Input events a [`Frame`] carries at most.
pub const MAX_PAINT_EVENTS: usize = super::paint::MAX_EVENTS;

/// Draws `frame` over the whole of `target`'s bounding box.
///
/// The pixels depend only on `frame` and the bounding box, and every pixel
/// of the box is written. Any size works, down to a single pixel; layouts
/// are made for 800x600 and up.
pub fn draw<D>(frame: &Frame<'_>, target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    match frame.scene {
        Scene::Bars => bars::draw(frame, target),
        Scene::Primitives => primitives::draw(frame, target),
        Scene::Animation => animation::draw(frame, target),
        Scene::Status => status::draw(frame, target),
        Scene::Paint => paint::draw(frame, target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn names_parse_back() {
        for scene in Scene::ALL {
            assert_eq!(scene.name().parse::<Scene>(), Ok(scene));
            assert_eq!(scene.to_string(), scene.name());
        }
        let error = "bar".parse::<Scene>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown scene \"bar\" (known: bars, primitives, animation, status, paint)"
        );
    }

    #[test]
    fn connector_names_are_cut_to_what_scenes_show() {
        assert_eq!(connector_name("0"), "0");
        let long = "é".repeat(40);
        assert_eq!(connector_name(&long).len(), MAX_CONNECTOR_NAME);
    }
}
