//! Applications: what the guest shows. An [`App`] draws each frame of each
//! display connector into a `DrawTarget`, knowing the connector's size and
//! depth; it receives input events already mapped to their connector, and
//! flip completions, and it can ask to stop. [`Runner`] drives one through
//! the display frontend (`drivers::xen::vdispl::frontend::run`).
//!
//! Two come with the guest, chosen with the `app=` bootarg: [`Demo`] (the
//! demo scenes, the default) and [`Paint`] (finger paint: touches and the
//! pointer leave dots, `C` clears, Escape stops). Both say how the host can
//! redraw each frame ([`Redraw`]), which the guest prints as a flip line;
//! an app of your own may return `None` there.
//!
//! A complete app, a square that follows the pointer:
//!
//! ```
//! use embedded_graphics::{pixelcolor::Rgb888, prelude::*, primitives::*};
//! use kernel::app::{App, InputEvent, Redraw, Screen, Tick};
//!
//! #[derive(Default)]
//! struct Follow {
//!     at: Point,
//!     done: bool,
//! }
//!
//! impl App for Follow {
//!     fn draw<D: DrawTarget<Color = Rgb888>>(
//!         &mut self,
//!         screen: &Screen<'_>,
//!         _tick: &Tick,
//!         target: &mut D,
//!     ) -> Option<Redraw> {
//!         let _ = target.clear(Rgb888::BLACK);
//!         let square = Rectangle::with_center(self.at, Size::new(40, 40));
//!         let _ = square.into_styled(PrimitiveStyle::with_fill(Rgb888::GREEN)).draw(target);
//!         let _ = screen;
//!         None
//!     }
//!
//!     fn input(&mut self, _connector: Option<u32>, event: InputEvent) {
//!         match event {
//!             InputEvent::Position { x, y, .. } => self.at = Point::new(x, y),
//!             InputEvent::Key { keycode: 1, pressed: true } => self.done = true,
//!             _ => {}
//!         }
//!     }
//!
//!     fn finished(&self) -> bool {
//!         self.done
//!     }
//! }
//! ```

use crate::scenes::{self, FlipLine, Frame, Label, Scene, SceneSpec, Status, MAX_PAINT_EVENTS};
use drivers::xen::vdispl::env::{self, Figures};
use drivers::xen::vdispl::MAX_CONNECTORS;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::DrawTarget;

extern crate alloc;
use alloc::collections::VecDeque;

pub use drivers::xen::kbdif::{InputEvent, Touch};
pub use drivers::xen::vdispl::env::Screen;

/// `KEY_ESC` of linux/input.h: the built-in apps stop on it.
pub const KEY_ESC: u32 = 1;

/// What a frame is drawn with besides its connector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// The frame's number on its connector, from 0.
    pub number: u64,
    /// Live figures of the connector and the guest.
    pub status: Status,
}

/// How the host redraws a frame: what the guest prints in its flip line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redraw {
    /// The scene drawn.
    pub scene: Scene,
    /// Frame number within the scene.
    pub frame: u32,
    /// Input events of the connector taken before the frame was drawn.
    pub inputs: u32,
}

/// An application (see the module documentation).
pub trait App {
    /// Frames each connector shows at most (as many as it takes until
    /// [`App::finished`] by default).
    fn frames(&self) -> u64 {
        u64::MAX
    }

    /// Draws frame `tick.number` of `screen` into `target`, which covers
    /// the connector; says how the host can redraw it, if it can.
    fn draw<D: DrawTarget<Color = Rgb888>>(
        &mut self,
        screen: &Screen<'_>,
        tick: &Tick,
        target: &mut D,
    ) -> Option<Redraw>;

    /// An input event, for the connector its input device belongs to
    /// (`None`: a device that names no connector).
    fn input(&mut self, connector: Option<u32>, event: InputEvent) {
        let _ = (connector, event);
    }

    /// Flip `seq` of `connector` is on the screen.
    fn shown(&mut self, connector: u32, seq: u64) {
        let _ = (connector, seq);
    }

    /// Whether it is done: no connector draws another frame.
    fn finished(&self) -> bool {
        false
    }
}

/// The demo scenes, as the bootargs choose them (`scene=`, `frames=`).
pub struct Demo<'s> {
    spec: &'s SceneSpec,
}

impl<'s> Demo<'s> {
    /// The demo of `spec`.
    pub fn new(spec: &'s SceneSpec) -> Self {
        Demo { spec }
    }
}

impl App for Demo<'_> {
    fn frames(&self) -> u64 {
        self.spec.total_frames()
    }

    fn draw<D: DrawTarget<Color = Rgb888>>(
        &mut self,
        screen: &Screen<'_>,
        tick: &Tick,
        target: &mut D,
    ) -> Option<Redraw> {
        let (scene, frame) = self.spec.frame_at(tick.number).unwrap_or((Scene::Bars, 0));
        // Drawing into memory cannot fail (its error type is `Infallible`).
        let _ = scenes::draw(
            &Frame {
                scene,
                number: frame,
                connector: screen.name,
                status: tick.status,
                input: &[],
            },
            target,
        );
        Some(Redraw {
            scene,
            frame,
            inputs: 0,
        })
    }
}

/// Finger paint (the paint scene) on every connector: each connector's
/// canvas shows what its input drew; Escape stops it.
pub struct Paint {
    frames: u64,
    /// Per connector: its newest [`MAX_PAINT_EVENTS`] events and how many
    /// it took in all.
    input: [(VecDeque<InputEvent>, u32); MAX_CONNECTORS],
    stopped: bool,
    /// The window handed to the scene (kept to spare an allocation per
    /// frame).
    window: alloc::vec::Vec<InputEvent>,
}

impl Paint {
    /// Paint for at most `frames` frames per connector.
    pub fn new(frames: u64) -> Self {
        Paint {
            frames,
            input: Default::default(),
            stopped: false,
            window: alloc::vec::Vec::new(),
        }
    }
}

/// The events the paint scene draws after a connector took `events` in
/// all: the newest [`MAX_PAINT_EVENTS`] of them, oldest first. The guest
/// and the host's golden frames both cut the input this way.
pub fn paint_window(events: &[InputEvent]) -> &[InputEvent] {
    &events[events.len().saturating_sub(MAX_PAINT_EVENTS)..]
}

impl App for Paint {
    fn frames(&self) -> u64 {
        self.frames
    }

    fn draw<D: DrawTarget<Color = Rgb888>>(
        &mut self,
        screen: &Screen<'_>,
        tick: &Tick,
        target: &mut D,
    ) -> Option<Redraw> {
        let (events, taken) = self.input.get(screen.index as usize)?;
        self.window.clear();
        self.window.extend(events.iter().copied());
        let frame = u32::try_from(tick.number).unwrap_or(u32::MAX);
        let _ = scenes::draw(
            &Frame {
                scene: Scene::Paint,
                number: frame,
                connector: screen.name,
                status: tick.status,
                input: paint_window(&self.window),
            },
            target,
        );
        Some(Redraw {
            scene: Scene::Paint,
            frame,
            inputs: *taken,
        })
    }

    fn input(&mut self, connector: Option<u32>, event: InputEvent) {
        if let InputEvent::Key {
            pressed: true,
            keycode: KEY_ESC,
        } = event
        {
            self.stopped = true;
        }
        let Some((events, taken)) = connector.and_then(|index| self.input.get_mut(index as usize))
        else {
            return;
        };
        if events.len() == MAX_PAINT_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
        *taken = taken.saturating_add(1);
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

/// Drives an [`App`] through the display frontend: each frame's
/// [`Redraw`] becomes a [`FlipLine`], which `print` gets once the frame is
/// on the screen (one in `every`, and always a connector's last).
pub struct Runner<A, P> {
    app: A,
    print: P,
    every: u64,
}

impl<A: App, P: FnMut(&FlipLine)> Runner<A, P> {
    /// Runs `app`, printing flip lines with `print`.
    pub fn new(app: A, every: u64, print: P) -> Self {
        Runner {
            app,
            print,
            every: every.max(1),
        }
    }

    /// The app.
    pub fn app(&self) -> &A {
        &self.app
    }
}

impl<A: App, P: FnMut(&FlipLine)> env::App for Runner<A, P> {
    type Shown = (u32, u64, Option<FlipLine>);

    fn total_frames(&self) -> u64 {
        self.app.frames()
    }

    fn draw<D: DrawTarget<Color = Rgb888>>(
        &mut self,
        screen: &Screen<'_>,
        number: u64,
        figures: Figures,
        target: &mut D,
    ) -> Self::Shown {
        let status = Status {
            uptime_ms: figures.uptime_ms,
            flips: figures.flips,
            flip_rtt_us: figures.flip_rtt_us,
            heap_bytes: figures.heap_bytes,
            grants: figures.grants,
        };
        let redraw = self.app.draw(screen, &Tick { number, status }, target);
        let line = redraw.map(|redraw| FlipLine {
            connector: screen.index,
            seq: figures.flips,
            scene: redraw.scene,
            frame: redraw.frame,
            width: screen.width,
            height: screen.height,
            bpp: screen.bpp,
            name: Label::from_str_truncated(screen.name),
            status,
            inputs: redraw.inputs,
        });
        (screen.index, figures.flips, line)
    }

    fn shown(&mut self, (connector, seq, line): Self::Shown, last: bool) {
        self.app.shown(connector, seq);
        if let Some(line) = line {
            if last || line.seq.is_multiple_of(self.every) {
                (self.print)(&line);
            }
        }
    }

    fn input(&mut self, connector: Option<u32>, event: InputEvent) {
        self.app.input(connector, event);
    }

    fn finished(&self) -> bool {
        self.app.finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;

    fn screen(index: u32) -> Screen<'static> {
        Screen {
            index,
            name: "DP-1",
            width: 64,
            height: 64,
            bpp: 32,
        }
    }

    #[test]
    fn paint_keeps_each_connectors_newest_events_and_stops_on_escape() {
        let mut paint = Paint::new(10);
        let dot = |x| InputEvent::Touch {
            contact: 0,
            touch: Touch::Down { x, y: 5 },
        };
        for x in 0..(MAX_PAINT_EVENTS as i32 + 10) {
            paint.input(Some(1), dot(x));
        }
        paint.input(None, dot(1));
        paint.input(Some(9), dot(1));
        assert_eq!(paint.input[1].0.len(), MAX_PAINT_EVENTS);
        assert_eq!(paint.input[1].1, MAX_PAINT_EVENTS as u32 + 10);
        assert_eq!(paint.input[1].0.front(), Some(&dot(10)));
        assert_eq!(paint.input[0].1, 0);
        let mut display = MockDisplay::<Rgb888>::new();
        display.set_allow_overdraw(true);
        display.set_allow_out_of_bounds_drawing(true);
        let redraw = paint.draw(&screen(1), &Tick::default(), &mut display);
        assert_eq!(
            redraw,
            Some(Redraw {
                scene: Scene::Paint,
                frame: 0,
                inputs: MAX_PAINT_EVENTS as u32 + 10
            })
        );
        assert!(!paint.finished());
        paint.input(
            Some(0),
            InputEvent::Key {
                pressed: true,
                keycode: KEY_ESC,
            },
        );
        assert!(paint.finished());
        // The window the host cuts from the whole input is the one drawn.
        let all: alloc::vec::Vec<InputEvent> =
            (0..(MAX_PAINT_EVENTS as i32 + 10)).map(dot).collect();
        assert_eq!(paint_window(&all), paint.window.as_slice());
    }
}
