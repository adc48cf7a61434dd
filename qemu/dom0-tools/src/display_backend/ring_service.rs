//! The ring service of the Dom0 display backend: each connector's ring is served by the
//! shared ring loop (`drivers::xen::vdispl::server::ServedConnector`), whose host here
//! ([`RingHost`]) answers requests through the shared backend rules
//! (`drivers::xen::vdispl::backend::BackendModel`) plus what only Dom0 does: mapping display
//! buffers (the frontend's grants, or buffers it allocates itself, see [`crate::be_alloc`]),
//! GET_EDID, the `--fault` log lines, a strict backend's vblank pacing of EVT_PG_FLIP, and the
//! capture each flip starts (`super::capture`).

use super::capture::{release_buffer, start_copy, waits_for_copy};
use super::{Link, LinkState, Summary};
use crate::be_alloc;
use crate::evtchn::Evtchn;
use crate::frame_copy::Copier;
use crate::frontend::DeviceKey;
use crate::grant_map::{Access, GrantMapper, GrantMapping};
use drivers::xen::displif::{self, Operation, Request, Response};
use drivers::xen::edid;
use drivers::xen::gnttab::GrantRef;
use drivers::xen::ring::{RingError, Slot};
use drivers::xen::vdispl::backend::{
    read_directory, respond, DirectoryReader, Effect, Rejection, EINVAL,
};
use drivers::xen::vdispl::fault::{FaultHit, FaultState};
use drivers::xen::vdispl::server::{Channel, Outgoing, ServeHost};
use std::sync::Arc;
use std::time::Duration;

/// How often a strict backend's display refreshes: EVT_PG_FLIP goes out at the next vblank.
pub(super) const VBLANK_PERIOD: Duration = Duration::from_nanos(16_666_667);

/// A 60 Hz vblank clock, as a DRM backend's page flip completes on the display's next
/// vertical blank (displ_be sends EVT_PG_FLIP from the DRM flip event, after the answer).
/// Times are [`monotonic_ns`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Vblank {
    /// A vblank; the others follow every [`VBLANK_PERIOD`].
    pub(super) epoch_ns: u64,
}

impl Vblank {
    /// The first vblank strictly after `now_ns`.
    pub(super) fn next_after(&self, now_ns: u64) -> u64 {
        let period = VBLANK_PERIOD.as_nanos() as u64;
        let ticks = now_ns.saturating_sub(self.epoch_ns) / period + 1;
        self.epoch_ns.saturating_add(ticks.saturating_mul(period))
    }
}

/// Reads page directory pages by mapping them one at a time, and allocates backend-allocated
/// buffers ([`be_alloc`]).
pub(super) struct GrantReader<'a> {
    grants: &'a GrantMapper,
    domid: u32,
    /// The last mapping error, for the log.
    failure: Option<String>,
    /// The buffer [`DirectoryReader::allocate`] allocated, until it is a display buffer.
    allocated: Option<GrantMapping>,
}

impl DirectoryReader for GrantReader<'_> {
    fn allocate(
        &mut self,
        directory: GrantRef,
        pages: usize,
    ) -> Option<Result<Vec<GrantRef>, String>> {
        Some(
            match be_alloc::allocate(self.grants, self.domid, directory, pages)? {
                Ok(allocation) => {
                    self.allocated = Some(allocation.mapping);
                    Ok(allocation.refs)
                }
                Err(error) => Err(error.to_string()),
            },
        )
    }

    fn read_page(&mut self, gref: GrantRef) -> Option<[u8; 4096]> {
        match self.grants.map(self.domid, &[gref], Access::ReadOnly) {
            Ok(mapping) => {
                let page = mapping.first_page();
                if let Err(error) = mapping.unmap() {
                    self.failure = Some(error.to_string());
                }
                Some(page)
            }
            Err(error) => {
                self.failure = Some(error.to_string());
                None
            }
        }
    }
}

/// Nanoseconds since Dom0 booted (CLOCK_MONOTONIC): the ring loop's clock.
pub(super) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return 0;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// Sends event channel notifications: the kernel's event channel device, or a recorder in
/// host tests.
pub(super) trait Notifier {
    /// Notifies the frontend through local `port`; failures are logged.
    fn signal(&self, key: DeviceKey, port: u32);
}

impl Notifier for Evtchn {
    fn signal(&self, key: DeviceKey, port: u32) {
        if let Err(error) = self.notify(port) {
            eprintln_line!("vdispl-backend: {key}: {error}");
        }
    }
}

/// What serving a ring needs besides the ring's link.
pub(super) struct Rings<'a> {
    pub(super) grants: &'a GrantMapper,
    pub(super) notifier: &'a dyn Notifier,
    pub(super) fault: Option<&'a mut FaultState>,
    /// `None`: frames are not copied, and no answer waits.
    pub(super) copier: Option<&'a Copier>,
    pub(super) summary: &'a mut Summary,
    /// Set by a `state-back` fault, for the caller.
    pub(super) state_back: &'a mut Option<DeviceKey>,
}

/// Answers the requests on connector `index`'s ring through the shared ring loop
/// (`ServedConnector::serve`), up to and including one flip (a frontend that flips as fast
/// as it is answered would otherwise keep the backend on its ring); whether requests are
/// left. A request that must wait for a copy (see [`waits_for_copy`]) is held: it and the
/// requests after it are left until the copy is over, when the ring is served again.
pub(super) fn serve_ring(
    rings: &mut Rings,
    key: DeviceKey,
    index: usize,
    link: &mut Link,
) -> Result<bool, RingError> {
    let Some(ring) = link.served.get_mut(index) else {
        return Ok(false);
    };
    let mut host = RingHost {
        rings,
        key,
        link: &mut link.state,
    };
    let served = ring.serve(index, &mut host)?;
    if served.left {
        *host.rings.state_back = Some(key);
    }
    Ok(served.more)
}

/// Sends what is due on every ring of `link` (device `key`): EVT_PG_FLIP events whose vblank
/// has come, in strict mode; returns when the next one is due ([`monotonic_ns`]). A ring that
/// fails here is logged, and closed when it is next served.
pub(super) fn send_due(rings: &mut Rings, key: DeviceKey, link: &mut Link) -> Option<u64> {
    let mut host = RingHost {
        rings,
        key,
        link: &mut link.state,
    };
    let mut next: Option<u64> = None;
    for (index, ring) in link.served.iter_mut().enumerate() {
        if let Err(error) = ring.send_due(index, &mut host) {
            eprintln_line!("vdispl-backend: {key} conn{index}: {error}");
        }
        if let Some(due) = ring.next_due() {
            next = Some(next.map_or(due, |next| next.min(due)));
        }
    }
    next
}

/// The Dom0 backend's side of the shared ring loop for one device: how a request is answered
/// ([`answer`]), which wait for a copy ([`waits_for_copy`]), when EVT_PG_FLIP is due (at
/// once, or at the next vblank in strict mode), and the copy each flip starts
/// ([`start_copy`]).
struct RingHost<'h, 'r> {
    rings: &'h mut Rings<'r>,
    key: DeviceKey,
    link: &'h mut LinkState,
}

impl ServeHost for RingHost<'_, '_> {
    fn now_ns(&self) -> u64 {
        monotonic_ns()
    }

    fn holds(&mut self, index: usize, slot: &Slot, again: bool) -> bool {
        let waits = waits_for_copy(self.rings, self.key, index, self.link, slot);
        if waits && !again {
            self.rings.summary.held += 1;
        }
        waits
    }

    fn fault(&mut self, index: usize, slot: &Slot) -> Option<FaultHit> {
        let hit = self.rings.fault.as_mut()?.hit(index, slot)?;
        println!(
            "vdispl-backend: {} conn{index}: {}",
            self.key,
            hit.describe()
        );
        Some(hit)
    }

    fn answer(&mut self, index: usize, slot: &Slot) -> (Response, Option<u64>) {
        answer(
            self.key,
            index,
            self.link,
            self.rings.grants,
            slot,
            self.rings.summary,
        )
    }

    fn event_due(&self, _index: usize, response_due: u64) -> Option<u64> {
        Some(match self.link.vblank {
            None => response_due,
            Some(clock) => clock.next_after(response_due),
        })
    }

    fn flipped(&mut self, index: usize, fb_cookie: u64) {
        // The flip is complete: the framebuffer is the one shown now. Its answer (and, but in
        // strict mode, its EVT_PG_FLIP) went out; a copy thread copies the shown buffer, which
        // the frontend leaves alone until its next flip completes, and that flip's answer
        // waits for this copy.
        start_copy(self.rings, self.key, index, self.link, fb_cookie);
    }

    fn notify(&mut self, index: usize, channel: Channel) {
        let Some(connector) = self.link.connectors.get(index) else {
            return;
        };
        let port = match channel {
            Channel::Requests => connector.req_port,
            Channel::Events => connector.evt_port,
        };
        self.rings.notifier.signal(self.key, port);
    }

    fn event_lost(&mut self, index: usize, event: Outgoing, error: RingError) {
        let key = self.key;
        match event {
            Outgoing::PageFlip(fb_cookie) => eprintln_line!(
                "vdispl-backend: {key} conn{index}: EVT_PG_FLIP for {fb_cookie:#x} dropped: \
                 {error}"
            ),
            Outgoing::Garbage => {
                eprintln_line!("vdispl-backend: {key} conn{index}: garbage event dropped: {error}")
            }
        }
    }
}

/// Answers one request on connector `index`: the response and, for a flip, the framebuffer
/// now shown, whose EVT_PG_FLIP is due and whose frame is to be captured.
pub(super) fn answer(
    key: DeviceKey,
    index: usize,
    link: &mut LinkState,
    grants: &GrantMapper,
    slot: &Slot,
    summary: &mut Summary,
) -> (Response, Option<u64>) {
    let mut reader = GrantReader {
        grants,
        domid: key.domid,
        failure: None,
        allocated: None,
    };
    let decoded = Request::decode(slot);
    let id = u16::from_le_bytes([slot[0], slot[1]]);
    let operation = Operation::try_from(slot[2])
        .map(|operation| operation.to_string())
        .unwrap_or_else(|_| format!("operation {:#04x}", slot[2]));
    // A refused connector (its `resolution` cannot be driven; said once when the device
    // connected) gets -EINVAL for everything that concerns it: SET_CONFIG, PG_FLIP, GET_EDID,
    // and whatever does not decode. The buffer and framebuffer requests displif.h puts on
    // connector 0's ring serve every connector, so they are served there even when connector 0
    // itself is refused.
    let mode = link.connectors[index].config.mode();
    let generic = matches!(
        decoded,
        Ok((
            _,
            Request::DbufCreate(_)
                | Request::DbufDestroy { .. }
                | Request::FbAttach { .. }
                | Request::FbDetach { .. }
        ))
    );
    let (width, height) = match mode {
        Some(mode) => mode,
        None if generic => (0, 0),
        None => {
            summary.rejected += 1;
            return (respond(slot, EINVAL), None);
        }
    };
    let reject = |summary: &mut Summary, rejection: &Rejection, failure: &Option<String>| {
        summary.rejected += 1;
        let detail = failure
            .as_ref()
            .map(|failure| format!(" [{failure}]"))
            .unwrap_or_default();
        eprintln_line!(
            "vdispl-backend: {key} conn{index}: rejected {operation} (id {id}): {rejection}{detail}"
        );
    };
    if let (
        Ok((
            _,
            Request::GetEdid {
                buffer_sz,
                gref_directory,
            },
        )),
        true,
    ) = (decoded, link.version >= 2 || link.strict)
    {
        let outcome = send_edid((width, height), buffer_sz, gref_directory, &mut reader);
        let (status, edid_sz) = match outcome {
            Ok(size) => {
                println!(
                    "vdispl-backend: {key} conn{index}: EDID for {width}x{height} sent ({size} \
                     bytes)"
                );
                (0, size)
            }
            Err(rejection) => {
                reject(summary, &rejection, &reader.failure);
                (rejection.status, 0)
            }
        };
        let response = Response {
            id,
            operation: slot[2],
            status,
            edid_sz,
        };
        return (response, None);
    }
    let (mut response, outcome) = link.model.handle_explained_on(index, slot, &mut reader);
    match outcome {
        Err(rejection) => {
            reject(summary, &rejection, &reader.failure);
            (response, None)
        }
        Ok(Effect::Created(cookie)) => {
            let Some(buffer) = link.model.buffers.get(&cookie) else {
                return (response, None);
            };
            let mapped = match reader.allocated.take() {
                Some(allocated) => {
                    println!(
                        "vdispl-backend: {key}: display buffer {cookie:#x}: {} pages allocated \
                         and granted to domain {} (be-alloc)",
                        buffer.refs.len(),
                        key.domid
                    );
                    Ok(allocated)
                }
                None => grants.map(key.domid, &buffer.refs, Access::ReadOnly),
            };
            match mapped {
                Ok(mapping) => {
                    link.buffers.insert(cookie, Arc::new(mapping));
                }
                Err(error) => {
                    link.model.buffers.remove(&cookie);
                    response.status = EINVAL;
                    let rejection = Rejection {
                        status: EINVAL,
                        reason: format!("its pages cannot be mapped: {error}"),
                    };
                    reject(summary, &rejection, &None);
                }
            }
            (response, None)
        }
        Ok(Effect::Destroyed(cookie)) => {
            // A copy of this buffer was over before this answer (`waits_for_copy`), so this
            // unmaps it now.
            if let Some(mapping) = link.buffers.remove(&cookie) {
                let held = be_alloc::Held::before(grants);
                release_buffer(key, cookie, mapping);
                held.report(&format!("{key}: display buffer {cookie:#x}"), grants);
            }
            (response, None)
        }
        Ok(Effect::Configured(shown)) => {
            let connector = &link.connectors[index].config;
            match shown {
                Some(fb_cookie) => println!(
                    "vdispl-backend: {key} conn{index}: showing framebuffer {fb_cookie:#x} \
                     ({} {width}x{height})",
                    connector.unique_id
                ),
                None => println!("vdispl-backend: {key} conn{index}: disabled"),
            }
            (response, None)
        }
        Ok(Effect::Flipped(fb_cookie)) => (response, Some(fb_cookie)),
        Ok(Effect::None) => (response, None),
    }
}

/// GET_EDID (version 2): writes a base block for the connector's resolution (`mode`) into the
/// first page of the frontend's buffer; returns the EDID's size.
pub(super) fn send_edid(
    (width, height): (u32, u32),
    buffer_sz: u32,
    gref_directory: GrantRef,
    reader: &mut GrantReader,
) -> Result<u32, Rejection> {
    let block = edid::base_block(width, height);
    if (buffer_sz as usize) < block.len() {
        return Err(Rejection {
            status: EINVAL,
            reason: format!(
                "EDID buffer of {buffer_sz} bytes cannot hold a {}-byte block",
                block.len()
            ),
        });
    }
    let refs = read_directory(gref_directory, displif::buffer_pages(buffer_sz), reader)?;
    let mapping = reader
        .grants
        .map(reader.domid, &refs[..1], Access::ReadWrite)
        .map_err(|error| Rejection {
            status: EINVAL,
            reason: format!("the EDID buffer cannot be mapped: {error}"),
        })?;
    mapping.write_start(&block);
    if let Err(error) = mapping.unmap() {
        eprintln_line!("vdispl-backend: EDID buffer: {error}");
    }
    Ok(block.len() as u32)
}
