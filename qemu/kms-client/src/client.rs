//! The KMS sequence, on every connected connector at once: two dumb buffers each (created,
//! mapped, added as framebuffers of the asked format), frame 0 shown with SETCRTC, then frames
//! 1..=N page-flipped into the buffer not shown, each flip's completion event read before the
//! next flip; then the CRTCs turned off, the framebuffers removed and the buffers destroyed.

use crate::sys::{self, CallError, Card, Dumb, Mapping, ModeInfo};
use kms_client::cmdline::Options;
use kms_client::format::Format;
use kms_client::pattern::Frame;
use std::io;
use std::time::{Duration, Instant};

/// How long a page flip's completion event may take: Linux's frontend itself releases a flip
/// the backend never completes after 3.1 s (with an `*ERROR*` line), so this only catches a
/// hang.
const FLIP_EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong, for the failure line.
#[derive(Debug)]
pub struct Failure {
    /// The ioctl or call that failed.
    pub call: &'static str,
    /// On what (connector, size, format).
    pub context: String,
    /// The errno.
    pub error: io::Error,
}

impl Failure {
    fn new(context: &str, error: CallError) -> Failure {
        Failure {
            call: error.call,
            context: context.to_string(),
            error: error.error,
        }
    }
}

/// One connector done: the success line's figures.
#[derive(Debug)]
pub struct Shown {
    /// Its index in the card's connector list.
    pub index: u32,
    /// Mode width.
    pub width: u32,
    /// Mode height.
    pub height: u32,
    /// Page flips completed.
    pub flips: u32,
}

/// A buffer and its framebuffer.
struct Buffer {
    dumb: Dumb,
    mapping: Option<Mapping>,
    fb_id: Option<u32>,
}

/// One connector being driven.
struct Pipe {
    index: u32,
    connector: u32,
    crtc: u32,
    mode: ModeInfo,
    buffers: Vec<Buffer>,
    enabled: bool,
    flips: u32,
}

impl Pipe {
    fn width(&self) -> u32 {
        u32::from(self.mode.hdisplay)
    }

    fn height(&self) -> u32 {
        u32::from(self.mode.vdisplay)
    }

    fn context(&self, format: Format) -> String {
        format!(
            "conn {} {}x{} {format}",
            self.index,
            self.width(),
            self.height()
        )
    }

    /// Draws frame `number` into buffer `slot`.
    fn draw(&mut self, format: Format, number: u32, slot: usize) -> Result<(), Failure> {
        let frame = Frame {
            connector: self.index,
            number,
            width: self.width(),
            height: self.height(),
            format,
        };
        let context = self.context(format);
        let buffer = &mut self.buffers[slot];
        let pitch = buffer.dumb.pitch as usize;
        let Some(mapping) = buffer.mapping.as_mut() else {
            return Ok(());
        };
        frame.fill(pitch, mapping.bytes()).map_err(|error| Failure {
            call: "drawing the pattern",
            context,
            error: io::Error::other(error.to_string()),
        })
    }
}

/// Runs the sequence on `card`; `say` prints a progress line. Whatever happens, everything
/// created is released before it returns (the first failure is what it returns).
pub fn run(
    card: &Card,
    options: &Options,
    say: &mut dyn FnMut(String),
) -> Result<Vec<Shown>, Failure> {
    let mut pipes = Vec::new();
    let result = drive(card, options, &mut pipes, say);
    let released = release(card, options.format, &mut pipes);
    let shown = result?;
    released?;
    Ok(shown)
}

fn drive(
    card: &Card,
    options: &Options,
    pipes: &mut Vec<Pipe>,
    say: &mut dyn FnMut(String),
) -> Result<Vec<Shown>, Failure> {
    let format = options.format;
    let resources = card.resources().map_err(|e| Failure::new("card0", e))?;
    let mut used_crtcs = 0u32;
    for (index, &connector_id) in (0..).zip(&resources.connectors) {
        let what = format!("conn {index}");
        let connector = card
            .connector(connector_id)
            .map_err(|e| Failure::new(&what, e))?;
        if connector.connection != sys::CONNECTED {
            say(format!(
                "{what} (id {connector_id}) is not connected (state {}), skipped",
                connector.connection
            ));
            continue;
        }
        let Some(&mode) = connector.modes.first() else {
            return Err(Failure {
                call: sys::GETCONNECTOR.name,
                context: what,
                error: io::Error::other("a connected connector without a mode"),
            });
        };
        let mut possible = 0;
        for &encoder in &connector.encoders {
            possible |= card
                .possible_crtcs(encoder)
                .map_err(|e| Failure::new(&what, e))?;
        }
        let Some(crtc_index) = (0..resources.crtcs.len())
            .find(|&i| i < 32 && possible & (1 << i) != 0 && used_crtcs & (1 << i) == 0)
        else {
            return Err(Failure {
                call: sys::GETENCODER.name,
                context: what,
                error: io::Error::other(format!("no free CRTC (possible mask {possible:#x})")),
            });
        };
        used_crtcs |= 1 << crtc_index;
        pipes.push(Pipe {
            index,
            connector: connector_id,
            crtc: resources.crtcs[crtc_index],
            mode,
            buffers: Vec::new(),
            enabled: false,
            flips: 0,
        });
    }
    if pipes.is_empty() {
        return Err(Failure {
            call: sys::GETRESOURCES.name,
            context: format!("{} connectors", resources.connectors.len()),
            error: io::Error::other("no connected connector"),
        });
    }

    for pipe in pipes.iter_mut() {
        let context = pipe.context(format);
        let (width, height) = (pipe.width(), pipe.height());
        for _ in 0..2 {
            let dumb = card
                .create_dumb(width, height, format.bpp())
                .map_err(|e| Failure::new(&context, e))?;
            pipe.buffers.push(Buffer {
                dumb,
                mapping: None,
                fb_id: None,
            });
            let buffer = pipe.buffers.last_mut().expect("just pushed");
            buffer.mapping = Some(
                card.map_dumb(&dumb)
                    .map_err(|e| Failure::new(&context, e))?,
            );
            buffer.fb_id = Some(
                card.add_framebuffer(width, height, format.fourcc(), &dumb)
                    .map_err(|e| Failure::new(&context, e))?,
            );
        }
        say(format!(
            "{context}: connector {} on CRTC {}, 2 buffers of pitch {} ({} bytes)",
            pipe.connector, pipe.crtc, pipe.buffers[0].dumb.pitch, pipe.buffers[0].dumb.size
        ));
        pipe.draw(format, 0, 0)?;
        let fb_id = pipe.buffers[0].fb_id.unwrap_or(0);
        card.set_crtc(pipe.crtc, Some((fb_id, pipe.connector, &pipe.mode)))
            .map_err(|e| Failure::new(&context, e))?;
        pipe.enabled = true;
    }

    for number in 1..=options.frames {
        let slot = number as usize % 2;
        for pipe in pipes.iter_mut() {
            pipe.draw(format, number, slot)?;
            let fb_id = pipe.buffers[slot].fb_id.unwrap_or(0);
            card.page_flip(pipe.crtc, fb_id, u64::from(pipe.index))
                .map_err(|e| {
                    Failure::new(&format!("{} frame {number}", pipe.context(format)), e)
                })?;
        }
        let mut waiting: Vec<u32> = pipes.iter().map(|pipe| pipe.index).collect();
        let deadline = Instant::now() + FLIP_EVENT_TIMEOUT;
        while !waiting.is_empty() {
            let events = card
                .flip_events()
                .map_err(|e| Failure::new(&format!("frame {number}"), e))?;
            for index in events {
                waiting.retain(|&waited| u64::from(waited) != index);
                if let Some(pipe) = pipes.iter_mut().find(|pipe| u64::from(pipe.index) == index) {
                    pipe.flips += 1;
                }
            }
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Failure {
                    call: "read (DRM events)",
                    context: format!("frame {number}, conn {waiting:?}"),
                    error: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    Ok(pipes
        .iter()
        .map(|pipe| Shown {
            index: pipe.index,
            width: pipe.width(),
            height: pipe.height(),
            flips: pipe.flips,
        })
        .collect())
}

/// Turns the CRTCs off, removes the framebuffers, unmaps and destroys the buffers: each step
/// for everything, even after a step failed; the first failure is returned.
fn release(card: &Card, format: Format, pipes: &mut [Pipe]) -> Result<(), Failure> {
    let mut first = None;
    let mut note = |result: Result<(), CallError>, context: &str| {
        if let Err(error) = result {
            first.get_or_insert(Failure::new(context, error));
        }
    };
    for pipe in pipes.iter_mut() {
        let context = pipe.context(format);
        if pipe.enabled {
            note(card.set_crtc(pipe.crtc, None), &context);
            pipe.enabled = false;
        }
        for buffer in &mut pipe.buffers {
            if let Some(fb_id) = buffer.fb_id.take() {
                note(card.remove_framebuffer(fb_id), &context);
            }
            buffer.mapping = None;
            note(card.destroy_dumb(buffer.dumb.handle), &context);
        }
        pipe.buffers.clear();
    }
    first.map_or(Ok(()), Err)
}
