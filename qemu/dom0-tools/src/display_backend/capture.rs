//! The ring thread's side of capture in the Dom0 display backend: each flip hands a copy of
//! the frame now shown to the copy threads ([`crate::frame_copy`]), the tear-free rule holds a
//! request back while a copy it would disturb runs ([`waits_for_copy`]), and copies that are
//! over go to the frame workers ([`crate::capture`]) or are named as not captured
//! ([`crate::drop_report`]).

use super::ring_service::Rings;
use super::{InFlight, LinkState, Summary};
use crate::capture::{FrameLayout, FrameWriter, Submitted};
use crate::drop_report;
use crate::frame_copy::{Completed, CopyOutcome, CopySource, JobStatus};
use crate::frontend::DeviceKey;
use crate::grant_map::GrantMapping;
use drivers::xen::displif::Request;
use drivers::xen::ring::Slot;
use std::sync::Arc;

/// Lets go of a display buffer's mapping: unmaps it now, or, if a copy still reads it, leaves
/// that to the copy (it is the last owner then).
pub(super) fn release_buffer(key: DeviceKey, cookie: u64, mapping: Arc<GrantMapping>) {
    if let Some(mapping) = Arc::into_inner(mapping) {
        if let Err(error) = mapping.unmap() {
            eprintln_line!("vdispl-backend: {key}: display buffer {cookie:#x}: {error}");
        }
    }
}

/// Whether `slot` must wait for a copy to be over before it is answered: a flip on connector
/// `index` while the copy of its frame shown before runs (that answer lets the frontend draw
/// into the buffer being copied), or a DBUF_DESTROY of a buffer being copied. A copy that has
/// not started is withdrawn instead: its frame is not captured, and the request goes on.
pub(super) fn waits_for_copy(
    rings: &mut Rings,
    key: DeviceKey,
    index: usize,
    link: &mut LinkState,
    slot: &Slot,
) -> bool {
    let Some(copier) = rings.copier else {
        return false;
    };
    let (copies, why): (Vec<usize>, String) = match Request::decode(slot) {
        Ok((_, Request::PageFlip { fb_cookie }))
            if link.model.framebuffers.contains_key(&fb_cookie) =>
        {
            let next = link.connectors[index].flips;
            (
                vec![index],
                format!("flip seq {next} came before a copy thread took it"),
            )
        }
        Ok((_, Request::DbufDestroy { dbuf_cookie })) => (
            link.connectors
                .iter()
                .enumerate()
                .filter(|(_, connector)| {
                    connector
                        .copy
                        .is_some_and(|copy| copy.dbuf_cookie == dbuf_cookie)
                })
                .map(|(other, _)| other)
                .collect(),
            format!(
                "its display buffer {dbuf_cookie:#x} was destroyed before a copy thread took it"
            ),
        ),
        _ => return false,
    };
    let mut waits = false;
    for other in copies {
        let Some(copy) = link.connectors[other].copy else {
            continue;
        };
        match copier.withdraw(copy.job) {
            JobStatus::Running => waits = true,
            JobStatus::Done => link.connectors[other].copy = None,
            JobStatus::Withdrawn => {
                link.connectors[other].copy = None;
                rings.summary.not_captured += 1;
                dropped(key, other, copy.seq, &why);
            }
        }
    }
    waits
}

/// Connector `index` of device `key` in the report of frames not captured.
pub(super) fn connector_key(key: DeviceKey, index: usize) -> drop_report::ConnectorKey {
    (key.domid, key.device, index)
}

/// Reports frame `seq` of connector `index` as not captured (named, or counted in a range
/// line: see [`drop_report`]).
pub(super) fn dropped(key: DeviceKey, index: usize, seq: u64, why: &str) {
    drop_report::not_captured(
        connector_key(key, index),
        &format!("{key} conn{index}"),
        seq,
        why,
    );
}

/// Counts the flip of `fb_cookie` on connector `index` and hands the copy of the frame now
/// shown to the copy threads (with a share of its buffer's mapping).
pub(super) fn start_copy(
    rings: &mut Rings,
    key: DeviceKey,
    index: usize,
    link: &mut LinkState,
    fb_cookie: u64,
) {
    let seq = link.connectors[index].flips;
    link.connectors[index].flips += 1;
    rings.summary.flips += 1;
    let Some(copier) = rings.copier else {
        return;
    };
    match copy_source(key, index, link, fb_cookie, seq) {
        Ok((source, dbuf_cookie)) => match copier.submit(source) {
            Some(job) => {
                link.connectors[index].copy = Some(InFlight {
                    job,
                    dbuf_cookie,
                    seq,
                })
            }
            None => {
                rings.summary.not_captured += 1;
                dropped(key, index, seq, "the copy threads have stopped");
            }
        },
        Err(error) => {
            eprintln_line!("vdispl-backend: {key} conn{index}: cannot capture seq {seq}: {error}")
        }
    }
}

/// What the ring thread does with a copy that is over: the frame goes to the workers (never
/// waiting), or a line says why there is none.
pub(super) fn deliver(completed: Completed, writer: Option<&FrameWriter>, summary: &mut Summary) {
    let key = DeviceKey {
        domid: completed.domid,
        device: completed.device,
    };
    let (index, seq) = (completed.connector, completed.seq);
    if let Some(Err(error)) = completed.unmapped {
        eprintln_line!("vdispl-backend: {key}: display buffer of conn{index} seq {seq}: {error}");
    }
    let frame = match completed.outcome {
        CopyOutcome::Copied(frame) => frame,
        CopyOutcome::Cancelled => {
            summary.not_captured += 1;
            dropped(
                key,
                index as usize,
                seq,
                "the device closed during its copy",
            );
            return;
        }
    };
    summary.copied += 1;
    summary.capture += completed.took;
    // Never waits: when the workers are behind, the connector's oldest waiting frame gives
    // way to this one.
    match writer.map(|writer| writer.submit(frame)) {
        None | Some(Submitted::Queued) => {}
        Some(Submitted::Replaced { seq: dropped_seq }) => {
            summary.not_captured += 1;
            dropped(
                key,
                index as usize,
                dropped_seq,
                &format!("the writers were behind; seq {seq} is newer"),
            );
        }
        Some(Submitted::Stopped) => {
            summary.not_captured += 1;
            dropped(key, index as usize, seq, "the writers have stopped");
        }
    }
}

/// What copying the framebuffer `fb_cookie` out of its display buffer takes, and the buffer's
/// cookie.
pub(super) fn copy_source(
    key: DeviceKey,
    index: usize,
    link: &LinkState,
    fb_cookie: u64,
    seq: u64,
) -> Result<(CopySource, u64), String> {
    let framebuffer = link
        .model
        .framebuffers
        .get(&fb_cookie)
        .ok_or_else(|| format!("framebuffer {fb_cookie:#x} is unknown"))?;
    let buffer = link
        .model
        .buffers
        .get(&framebuffer.dbuf_cookie)
        .ok_or_else(|| format!("display buffer {:#x} is unknown", framebuffer.dbuf_cookie))?;
    let mapping = link.buffers.get(&framebuffer.dbuf_cookie).ok_or_else(|| {
        format!(
            "display buffer {:#x} is not mapped",
            framebuffer.dbuf_cookie
        )
    })?;
    // The framebuffer starts at the buffer's first byte, its rows at the pitch the buffer's
    // size gave (the frontend's, see `displif::infer_pitch`).
    let layout = FrameLayout::new(
        framebuffer.width,
        framebuffer.height,
        buffer.pitch as usize,
        framebuffer.pixel_format,
    )?;
    let source = CopySource {
        mapping: Arc::clone(mapping),
        layout,
        domid: key.domid,
        device: key.device,
        connector: link.connectors[index].config.index,
        seq,
    };
    Ok((source, framebuffer.dbuf_cookie))
}
