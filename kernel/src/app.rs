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

/// Touches per connector whose flip is still awaited, at most; when more
/// arrive before a frame shows them, the oldest go unmeasured.
pub const PENDING_TOUCHES: usize = 64;
/// Touch-to-flip latencies kept per connector for the percentiles; newer
/// ones replace the oldest.
pub const LATENCY_SAMPLES: usize = 512;

/// Whether `event` is a touch whose effect a frame shows: a multi-touch
/// contact going down or moving, or an absolute pointer position.
pub fn is_touch(event: &InputEvent) -> bool {
    matches!(
        event,
        InputEvent::Position { .. }
            | InputEvent::Touch {
                touch: Touch::Down { .. } | Touch::Motion { .. },
                ..
            }
    )
}

/// One connector's touch-to-flip figures: from a touch reaching the app to
/// the flip of the first frame drawn with it completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TouchToFlip {
    /// The connector's index.
    pub connector: u32,
    /// Median latency, microseconds.
    pub p50_us: u32,
    /// 99th percentile latency, microseconds.
    pub p99_us: u32,
    /// Touches measured in all (the percentiles cover the newest
    /// [`LATENCY_SAMPLES`] of them).
    pub touches: u64,
}

impl core::fmt::Display for TouchToFlip {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "input: conn={} touch to flip p50_us={} p99_us={} over {} touches",
            self.connector, self.p50_us, self.p99_us, self.touches
        )
    }
}

/// A connector's touches on their way to the screen. Its buffers are
/// allocated once, at their bounds; nothing grows in a long run.
struct TouchLatency {
    /// Events of the connector taken so far: the index of the next one.
    taken: u32,
    /// Touches no shown frame covers yet: (event index, arrival in
    /// microseconds), oldest first.
    pending: VecDeque<(u32, u64)>,
    /// Latencies in microseconds, a ring of [`LATENCY_SAMPLES`].
    samples: alloc::vec::Vec<u32>,
    /// Latencies measured in all.
    measured: u64,
}

impl TouchLatency {
    fn new() -> Self {
        TouchLatency {
            taken: 0,
            pending: VecDeque::with_capacity(PENDING_TOUCHES),
            samples: alloc::vec::Vec::with_capacity(LATENCY_SAMPLES),
            measured: 0,
        }
    }

    /// An event of the connector arrived at `now_us`.
    fn arrived(&mut self, event: &InputEvent, now_us: u64) {
        if is_touch(event) {
            if self.pending.len() == PENDING_TOUCHES {
                self.pending.pop_front();
            }
            self.pending.push_back((self.taken, now_us));
        }
        self.taken = self.taken.saturating_add(1);
    }

    /// A frame drawn with the connector's first `inputs` events was shown
    /// at `now_us`: the touches among them are measured.
    fn shown(&mut self, inputs: u32, now_us: u64) {
        while let Some(&(index, arrival)) = self.pending.front() {
            if index >= inputs {
                break;
            }
            self.pending.pop_front();
            let latency = u32::try_from(now_us.saturating_sub(arrival)).unwrap_or(u32::MAX);
            if self.samples.len() < LATENCY_SAMPLES {
                self.samples.push(latency);
            } else {
                self.samples[(self.measured % LATENCY_SAMPLES as u64) as usize] = latency;
            }
            self.measured += 1;
        }
    }

    /// The figures, when a touch was measured.
    fn figures(&self, connector: u32) -> Option<TouchToFlip> {
        if self.measured == 0 {
            return None;
        }
        let mut sorted = [0u32; LATENCY_SAMPLES];
        let sorted = &mut sorted[..self.samples.len()];
        sorted.copy_from_slice(&self.samples);
        sorted.sort_unstable();
        Some(TouchToFlip {
            connector,
            p50_us: percentile(sorted, 50),
            p99_us: percentile(sorted, 99),
            touches: self.measured,
        })
    }
}

/// The `percent`th percentile of `sorted` (nearest rank), not empty.
fn percentile(sorted: &[u32], percent: usize) -> u32 {
    let rank = (sorted.len() * percent)
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Drives an [`App`] through the display frontend: each frame's
/// [`Redraw`] becomes a [`FlipLine`], which `print` gets once the frame is
/// on the screen (one in `every`, and always a connector's last). With the
/// clock it is given it times each touch from reaching the app to the flip
/// showing it ([`Runner::touch_to_flip`]).
pub struct Runner<A, P> {
    app: A,
    print: P,
    every: u64,
    /// Monotonic microseconds.
    clock: fn() -> u64,
    touches: [TouchLatency; MAX_CONNECTORS],
}

impl<A: App, P: FnMut(&FlipLine)> Runner<A, P> {
    /// Runs `app`, printing flip lines with `print`, timing touches with
    /// `clock` (monotonic microseconds).
    pub fn new(app: A, every: u64, clock: fn() -> u64, print: P) -> Self {
        Runner {
            app,
            print,
            every: every.max(1),
            clock,
            touches: core::array::from_fn(|_| TouchLatency::new()),
        }
    }

    /// The app.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// Per connector that showed a touch: its touch-to-flip figures so far.
    pub fn touch_to_flip(&self) -> impl Iterator<Item = TouchToFlip> + '_ {
        self.touches
            .iter()
            .zip(0u32..)
            .filter_map(|(touches, connector)| touches.figures(connector))
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
        if let (Some(line), Some(touches)) = (&line, self.touches.get_mut(connector as usize)) {
            touches.shown(line.inputs, (self.clock)());
        }
        self.app.shown(connector, seq);
        if let Some(line) = line {
            if last || line.seq.is_multiple_of(self.every) {
                (self.print)(&line);
            }
        }
    }

    fn input(&mut self, connector: Option<u32>, event: InputEvent) {
        if let Some(touches) = connector.and_then(|index| self.touches.get_mut(index as usize)) {
            touches.arrived(&event, (self.clock)());
        }
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

    std::thread_local! {
        /// The fake clock of the touch tests, microseconds.
        static NOW_US: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
    }

    fn fake_clock() -> u64 {
        NOW_US.with(|now| now.get())
    }

    fn at(now_us: u64) {
        NOW_US.with(|now| now.set(now_us));
    }

    fn touch(touch: Touch) -> InputEvent {
        InputEvent::Touch { contact: 0, touch }
    }

    /// Draws the next frame of connector 0 with the runner.
    fn draw_frame<P: FnMut(&FlipLine)>(
        runner: &mut Runner<Paint, P>,
        flips: u64,
    ) -> (u32, u64, Option<FlipLine>) {
        let mut display = MockDisplay::<Rgb888>::new();
        display.set_allow_overdraw(true);
        display.set_allow_out_of_bounds_drawing(true);
        let figures = Figures {
            flips,
            ..Figures::default()
        };
        env::App::draw(runner, &screen(0), flips, figures, &mut display)
    }

    #[test]
    fn touch_to_flip_runs_from_a_touch_reaching_the_app_to_the_flip_of_the_first_frame_drawn_with_it(
    ) {
        let mut lines = 0;
        let mut runner = Runner::new(Paint::new(100), 1, fake_clock, |_: &FlipLine| lines += 1);
        use env::App as _;
        at(1_000);
        runner.input(Some(0), touch(Touch::Down { x: 1, y: 1 })); // event 0: a touch
        runner.input(Some(0), touch(Touch::Sync)); // event 1
        runner.input(Some(1), touch(Touch::Down { x: 1, y: 1 })); // connector 1: never shown
        runner.input(None, touch(Touch::Down { x: 1, y: 1 }));
        at(2_000);
        let a = draw_frame(&mut runner, 0); // drawn with events 0..2
        at(3_000);
        runner.input(Some(0), touch(Touch::Motion { x: 2, y: 2 })); // event 2
        at(3_500);
        runner.input(Some(0), touch(Touch::Up)); // event 3: not a touch that draws
        at(5_000);
        runner.shown(a, false); // event 0: 4000 us
        at(6_000);
        let b = draw_frame(&mut runner, 1); // drawn with events 0..4
        at(7_000);
        runner.input(
            Some(0),
            InputEvent::Position {
                x: 3,
                y: 3,
                rel_z: 0,
            },
        ); // event 4
        runner.input(
            Some(0),
            InputEvent::Key {
                pressed: true,
                keycode: 30,
            },
        ); // event 5
        at(9_000);
        runner.shown(b, false); // event 2: 6000 us
        let c = draw_frame(&mut runner, 2); // drawn with events 0..6
        at(12_000);
        runner.shown(c, true); // event 4: 5000 us
        let d = draw_frame(&mut runner, 3); // nothing new
        at(20_000);
        runner.shown(d, true);
        let figures: alloc::vec::Vec<TouchToFlip> = runner.touch_to_flip().collect();
        assert_eq!(
            figures,
            [TouchToFlip {
                connector: 0,
                p50_us: 5_000,
                p99_us: 6_000,
                touches: 3,
            }]
        );
        assert_eq!(
            alloc::format!("{}", figures[0]),
            "input: conn=0 touch to flip p50_us=5000 p99_us=6000 over 3 touches"
        );
        drop(runner);
        assert_eq!(lines, 4);
    }

    #[test]
    fn touch_to_flip_keeps_bounded_buffers() {
        let mut runner = Runner::new(Paint::new(u64::MAX), 1000, fake_clock, |_: &FlipLine| {});
        use env::App as _;
        // More touches than are kept pending before one frame shows them:
        // the oldest go unmeasured.
        at(0);
        for x in 0..(PENDING_TOUCHES as i32 + 10) {
            runner.input(Some(0), touch(Touch::Motion { x, y: 0 }));
        }
        let frame = draw_frame(&mut runner, 0);
        at(100);
        runner.shown(frame, false);
        assert_eq!(runner.touches[0].measured, PENDING_TOUCHES as u64);
        // A long run: one touch per frame, each 10 us older than the last.
        let frames = 3 * LATENCY_SAMPLES as u64;
        for flip in 1..=frames {
            at(flip * 1_000);
            runner.input(Some(0), touch(Touch::Motion { x: 0, y: 0 }));
            let frame = draw_frame(&mut runner, flip);
            at(flip * 1_000 + flip * 10);
            runner.shown(frame, false);
        }
        let touches = &runner.touches[0];
        assert_eq!(touches.samples.len(), LATENCY_SAMPLES);
        assert_eq!(touches.samples.capacity(), LATENCY_SAMPLES);
        assert!(touches.pending.capacity() <= PENDING_TOUCHES.next_power_of_two());
        let figures = runner.touch_to_flip().next().unwrap();
        assert_eq!(figures.touches, PENDING_TOUCHES as u64 + frames);
        // The newest LATENCY_SAMPLES latencies: frames - 511 ..= frames, times 10 us.
        let oldest = frames - LATENCY_SAMPLES as u64 + 1;
        assert_eq!(
            u64::from(figures.p50_us),
            (oldest + LATENCY_SAMPLES as u64 / 2 - 1) * 10
        );
        assert_eq!(
            u64::from(figures.p99_us),
            (oldest + (LATENCY_SAMPLES as u64 * 99).div_ceil(100) - 1) * 10
        );
    }
}
