//! The demo scenes the display app flips on every connector, drawn with
//! embedded-graphics into any `DrawTarget<Color = Rgb888>`.
//!
//! A frame is a function of its [`Frame`] alone (scene, frame number,
//! connector name, [`Status`] values) and the target's size, so the host
//! redraws any frame the guest flipped from the [`FlipLine`] it printed and
//! compares it, pixel for pixel, with what the backend captured. Which
//! scenes run, and for how many frames, comes from the bootargs
//! ([`SceneSpec`]).

mod animation;
mod bars;
mod draw;
mod flip;
mod paint;
mod primitives;
mod scene;
mod spec;
mod status;
mod text;

pub use flip::{FlipLine, FlipLineError};
pub use paint::KEY_CLEAR;
pub use scene::{
    connector_name, draw, Frame, Scene, Status, UnknownScene, MAX_CONNECTOR_NAME, MAX_PAINT_EVENTS,
};
pub use spec::{SceneSpec, SpecError, DEFAULT_FRAMES, MAX_SCENES};
pub use text::{Label, TextBuf};
