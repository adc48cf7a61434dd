//! What the frontend does when a connector fails. The connector stops; the
//! others go on untouched, on the same connection (Linux's xen-drm-front
//! marks only that connector disconnected). What comes next depends on the
//! failure:
//! - Its ring is broken ([`ConnectorError::breaks_ring`]: a producer index
//!   past the ring or the event page): only a new connection resets it, so
//!   the device is reconnected once [`RETRY_DELAY_NS`] passed.
//! - Anything else (an error status, a refused SET_CONFIG, a response with
//!   a wrong id, a request unanswered until the ring counts as stuck): the
//!   ring still works, so the connector tries again on its own ring once
//!   [`RETRY_DELAY_NS`] passed: the display buffers the backend lacks
//!   created and attached again, SET_CONFIG again, then the next frame. The
//!   device is never reconnected for it.
//! - A configuration error (its `resolution` cannot be driven): it is not
//!   driven at all, said once per connection; its rings are published all
//!   the same, as the backend reads every connector the device lists.
//! - Memory, grant references or event channels ran short: no retry cures
//!   that; it stays stopped, and the line says how much was asked for.
//! - The backend refused the depth of its buffers
//!   ([`ConnectorError::DepthRefused`]): it falls back to XRGB8888 at once,
//!   said once, and this is no retry.
//!
//! Either way at most [`MAX_CONNECTOR_RETRIES`] retries are made for a
//! connector in a row without a flip of it; then it stays stopped, which
//! its last error line says. The device itself is reconnected only when the
//! backend's state says the connection is gone, or for a broken ring; after
//! [`MAX_FRUITLESS_RECONNECTS`] reconnections in a row without a frame it is
//! given up. A slow backend is no failure: a late EVT_PG_FLIP releases its
//! flip and a late response is waited for (see [`super::flip`]). Also the
//! requests that undo a connection, which leave out rings that cannot be
//! trusted.

use super::failure::{ConnectorError, DeviceError, FailureClass};
use crate::xen::displif::Request;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const NS_PER_MS: u64 = 1_000_000;

/// How long a failed connector stays stopped before it is tried again (on
/// its own ring, or by reconnecting the device if its ring is broken).
pub const RETRY_DELAY_NS: u64 = 2_000 * NS_PER_MS;
/// Retries for one connector in a row without a flip of it in between;
/// after that it stays stopped.
pub const MAX_CONNECTOR_RETRIES: u32 = 5;
/// Reconnections of a device in a row without a single flip in between
/// before the device is given up.
pub const MAX_FRUITLESS_RECONNECTS: u32 = 10;
/// How long a device waits after a connection ended before it connects
/// again, so that a restarting backend can come back.
pub const RECONNECT_PAUSE_NS: u64 = 500 * NS_PER_MS;

/// A device's reconnections without a flip in between: after
/// [`MAX_FRUITLESS_RECONNECTS`] it is given up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconnects {
    fruitless: u32,
}

impl Reconnects {
    /// A connection ended needing a reconnection; `flipped` if it showed
    /// any frame. Returns whether to reconnect (`false`: give up), and the
    /// reconnections without a frame so far.
    pub fn after_loss(&mut self, flipped: bool) -> (bool, u32) {
        self.fruitless = if flipped { 0 } else { self.fruitless + 1 };
        (self.fruitless <= MAX_FRUITLESS_RECONNECTS, self.fruitless)
    }
}

/// A connector's name in messages: `conn=<index> (<unique-id>)`.
pub fn connector_name(index: u32, unique_id: &str) -> String {
    format!("conn={index} ({unique_id})")
}

/// Whether a connector works, why not, and its retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    name: String,
    failed: Option<ConnectorError>,
    /// The failure is the frontend's own (out of memory): no retry cures
    /// it.
    for_good: bool,
    failed_ns: u64,
    /// Retries made for it since it last flipped.
    retries: u32,
}

impl AsMut<Health> for Health {
    fn as_mut(&mut self) -> &mut Health {
        self
    }
}

impl Health {
    /// A working connector named `name` (see [`connector_name`]) that
    /// `retries` retries were made for since it last flipped.
    pub fn new(name: String, retries: u32) -> Self {
        Health {
            name,
            failed: None,
            for_good: false,
            failed_ns: 0,
            retries,
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why it stopped, if it did.
    pub fn failed(&self) -> Option<&ConnectorError> {
        self.failed.as_ref()
    }

    /// Whether it stopped for a reason no retry cures.
    pub fn failed_for_good(&self) -> bool {
        self.for_good
    }

    /// Retries made for it since it last flipped.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// A flip completed: the retries start over.
    pub fn flipped(&mut self) {
        self.retries = 0;
    }

    /// Stops the connector at `now_ns` for `reason`; returns the line to
    /// log, which names the connector, the reason and what comes next, and
    /// whether it is an error (a depth fallback is a warning).
    pub fn fail(&mut self, reason: ConnectorError, now_ns: u64) -> (String, bool) {
        self.for_good |= reason.for_good();
        let depth = matches!(reason, ConnectorError::DepthRefused { .. });
        let next = if depth {
            String::from("falling back to XRGB8888 (32 bpp)")
        } else if reason.class() == FailureClass::Configuration {
            String::from("this connector is not driven")
        } else if self.for_good {
            String::from("this connector stops")
        } else if self.retries >= MAX_CONNECTOR_RETRIES {
            format!("this connector stops ({MAX_CONNECTOR_RETRIES} retries without a flip)")
        } else {
            let how = match reason.breaks_ring() {
                true => "reconnecting the device",
                false => "again on its own ring",
            };
            format!(
                "this connector stops; retry {} of {MAX_CONNECTOR_RETRIES} in {} ms, {how}",
                self.retries + 1,
                RETRY_DELAY_NS / NS_PER_MS
            )
        };
        let line = format!("display {}: {reason}; {next}", self.name);
        self.failed = Some(reason);
        self.failed_ns = now_ns;
        (line, !depth)
    }

    /// When a retry for this connector is due, if one is: at once for a
    /// depth fallback.
    pub fn retry_at(&self) -> Option<u64> {
        match &self.failed {
            Some(ConnectorError::DepthRefused { .. }) => Some(self.failed_ns),
            Some(_) if !self.for_good && self.retries < MAX_CONNECTOR_RETRIES => {
                Some(self.failed_ns + RETRY_DELAY_NS)
            }
            _ => None,
        }
    }

    /// The connector works again (it is being set up again); returns why
    /// it had stopped.
    pub fn restart(&mut self) -> Option<ConnectorError> {
        self.failed.take()
    }
}

/// What a device's display loop does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: wait for the rings or the next deadline.
    Continue,
    /// Set connector `index` up again on its own ring.
    Retry(usize),
    /// Tear the connection down and connect again, for this reason.
    Reconnect(DeviceError),
    /// Done: every connector showed every frame or stopped.
    Finished,
}

/// Decides, at `now_ns`, after a round over a device's connectors in which
/// some still had work (`busy`): the first connector whose retry is due is
/// retried (counted, unless it is a depth fallback): on its own ring, or by
/// reconnecting the device if its ring is broken; otherwise wait while a
/// retry is pending or work remains, else finish.
pub fn decide<H: AsMut<Health>>(connectors: &mut [H], busy: bool, now_ns: u64) -> Verdict {
    for (index, health) in connectors.iter_mut().enumerate() {
        let health = health.as_mut();
        if health.retry_at().is_none_or(|at| now_ns < at) {
            continue;
        }
        match &health.failed {
            Some(ConnectorError::DepthRefused { .. }) => {}
            Some(error) if error.breaks_ring() => {
                let error = error.clone();
                health.retries += 1;
                return Verdict::Reconnect(DeviceError::BrokenRing {
                    name: health.name.clone(),
                    error,
                    retry: health.retries,
                });
            }
            _ => health.retries += 1,
        }
        return Verdict::Retry(index);
    }
    let mut healths = connectors.iter_mut().map(AsMut::as_mut);
    if busy || healths.any(|health| health.retry_at().is_some()) {
        Verdict::Continue
    } else {
        Verdict::Finished
    }
}

/// A display buffer and its framebuffer, as far as the backend has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferObjects {
    /// The display buffer's cookie.
    pub dbuf_cookie: u64,
    /// The framebuffer's cookie.
    pub fb_cookie: u64,
    /// DBUF_CREATE succeeded.
    pub created: bool,
    /// FB_ATTACH succeeded.
    pub attached: bool,
}

/// Requests to send together, as `(connector, request)` pairs.
pub type Batch = Vec<(usize, Request)>;

/// The requests that undo a connection, in two batches, the second to be
/// sent only once the backend answered the first: DISABLE on every working
/// connector (`working[i]`); then, on connector 0's ring, which carries
/// DBUF_* and FB_* (io/displif.h), and only if connector 0 works, FB_DETACH
/// of every attached framebuffer and DBUF_DESTROY of every created display
/// buffer. A failed connector's ring gets nothing: it may be broken or never
/// answer.
pub fn teardown_batches(working: &[bool], buffers: &[BufferObjects]) -> (Batch, Batch) {
    let disable = working
        .iter()
        .enumerate()
        .filter(|(_, &working)| working)
        .map(|(index, _)| (index, Request::DISABLE))
        .collect();
    let release = if working.first() == Some(&true) {
        let detach = buffers
            .iter()
            .filter(|buffer| buffer.attached)
            .map(|buffer| {
                (
                    0,
                    Request::FbDetach {
                        fb_cookie: buffer.fb_cookie,
                    },
                )
            });
        let destroy = buffers
            .iter()
            .filter(|buffer| buffer.created)
            .map(|buffer| {
                (
                    0,
                    Request::DbufDestroy {
                        dbuf_cookie: buffer.dbuf_cookie,
                    },
                )
            });
        detach.chain(destroy).collect()
    } else {
        Vec::new()
    };
    (disable, release)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::displif::Operation;
    use crate::xen::vdispl::failure::Allocation;
    use crate::xen::vdispl::VdisplError;

    const SECOND: u64 = 1_000_000_000;

    fn status() -> ConnectorError {
        ConnectorError::Request(VdisplError::Status {
            operation: Operation::PageFlip,
            status: -5,
        })
    }

    fn no_memory() -> ConnectorError {
        ConnectorError::NoMemory {
            what: Allocation::Buffer {
                width: 64,
                height: 48,
            },
            asked: 12288,
            free: 4096,
        }
    }

    fn health(index: u32) -> Health {
        Health::new(connector_name(index, "DP-1"), 0)
    }

    fn broken() -> ConnectorError {
        ConnectorError::Request(VdisplError::Ring(
            crate::xen::ring::RingError::ProducerPastRing {
                index: "rsp_prod",
                consumer: 0,
                producer: 1000,
            },
        ))
    }

    #[test]
    fn a_failure_names_the_connector_and_what_comes_next() {
        let mut curable = health(0);
        assert_eq!(
            curable.fail(status(), SECOND),
            (
                String::from(
                    "display conn=0 (DP-1): PG_FLIP failed with status -5; this connector stops; \
                     retry 1 of 5 in 2000 ms, again on its own ring"
                ),
                true
            )
        );
        assert_eq!(curable.failed(), Some(&status()));
        assert_eq!(curable.retry_at(), Some(3 * SECOND));
        let mut broken_ring = health(1);
        assert!(broken_ring
            .fail(broken(), 0)
            .0
            .ends_with("retry 1 of 5 in 2000 ms, reconnecting the device"));
        let mut exhausted = Health::new(connector_name(1, "HDMI-A-1"), MAX_CONNECTOR_RETRIES);
        assert_eq!(
            exhausted
                .fail(ConnectorError::Request(VdisplError::RingFull), 0)
                .0,
            "display conn=1 (HDMI-A-1): the request ring is full; this connector stops (5 retries \
             without a flip)"
        );
        assert_eq!(exhausted.retry_at(), None);
        let mut for_good = health(0);
        assert_eq!(
            for_good.fail(no_memory(), 0).0,
            "display conn=0 (DP-1): no memory for a 64x48 buffer: 12288 bytes asked for, 4096 \
             bytes free in the heap; this connector stops"
        );
        assert_eq!(for_good.retry_at(), None);
        // A refused depth is a warning, and its fallback is due at once.
        let mut depth = health(0);
        let refused = ConnectorError::DepthRefused {
            bpp: 16,
            status: -22,
        };
        assert_eq!(
            depth.fail(refused, SECOND),
            (
                String::from(
                    "display conn=0 (DP-1): the backend refused 16 bpp buffers (DBUF_CREATE \
                     failed with status -22); falling back to XRGB8888 (32 bpp)"
                ),
                false
            )
        );
        assert_eq!(depth.retry_at(), Some(SECOND));
    }

    #[test]
    fn a_due_retry_is_on_the_connectors_own_ring_unless_its_ring_broke() {
        let mut connectors = [health(0), health(1)];
        connectors[1].fail(status(), SECOND);
        // Before the delay is over the loop waits, busy or not.
        assert_eq!(
            decide(&mut connectors, false, 2 * SECOND),
            Verdict::Continue
        );
        assert_eq!(decide(&mut connectors, true, 3 * SECOND), Verdict::Retry(1));
        assert_eq!(connectors[1].retries(), 1);
        assert_eq!(connectors[1].restart(), Some(status()));
        connectors[1].flipped();
        assert_eq!(connectors[1].retries(), 0);
        // A broken ring reconnects the device.
        connectors[0].fail(broken(), SECOND);
        assert_eq!(
            decide(&mut connectors, true, 3 * SECOND),
            Verdict::Reconnect(DeviceError::BrokenRing {
                name: String::from("conn=0 (DP-1)"),
                error: broken(),
                retry: 1
            })
        );
        // A depth fallback is no retry.
        let mut connectors = [health(0)];
        let refused = ConnectorError::DepthRefused {
            bpp: 16,
            status: -22,
        };
        connectors[0].fail(refused, SECOND);
        assert_eq!(decide(&mut connectors, true, SECOND), Verdict::Retry(0));
        assert_eq!(connectors[0].retries(), 0);
    }

    #[test]
    fn the_device_finishes_once_no_connector_has_work_or_a_retry_left() {
        // One connector stopped for good, the other done: finished.
        let mut connectors = [health(0), health(1)];
        connectors[0].fail(no_memory(), 0);
        assert_eq!(decide(&mut connectors, false, SECOND), Verdict::Finished);
        // Both stopped, retries used up or for good: no reconnection, as no
        // connector's ring is broken.
        let mut connectors = [
            Health::new(connector_name(0, "DP-1"), MAX_CONNECTOR_RETRIES),
            health(1),
        ];
        connectors[0].fail(status(), 0);
        connectors[1].fail(no_memory(), 0);
        assert_eq!(decide(&mut connectors, false, SECOND), Verdict::Finished);
    }

    #[test]
    fn teardown_leaves_failed_rings_alone_and_undoes_buffers_on_connector_0() {
        let buffers = [
            BufferObjects {
                dbuf_cookie: 0x11,
                fb_cookie: 0x19,
                created: true,
                attached: true,
            },
            BufferObjects {
                dbuf_cookie: 0x21,
                fb_cookie: 0x29,
                created: true,
                attached: false,
            },
            BufferObjects {
                dbuf_cookie: 0x22,
                fb_cookie: 0x2a,
                created: false,
                attached: false,
            },
        ];
        let (disable, release) = teardown_batches(&[true, false, true], &buffers);
        assert_eq!(disable, [(0, Request::DISABLE), (2, Request::DISABLE)]);
        // Framebuffers first: a display buffer with one attached cannot go.
        assert_eq!(
            release,
            [
                (0, Request::FbDetach { fb_cookie: 0x19 }),
                (0, Request::DbufDestroy { dbuf_cookie: 0x11 }),
                (0, Request::DbufDestroy { dbuf_cookie: 0x21 }),
            ]
        );
        let (disable, release) = teardown_batches(&[false, true], &buffers);
        assert_eq!(disable, [(1, Request::DISABLE)]);
        assert!(release.is_empty());
    }
}
