//! The display run as the serial log and the frames share show it: the guest's flip lines
//! (`flip conn=.. seq=..`, `kernel::scenes::FlipLine`) and summary lines (`display: summary
//! conn=..`), the Dom0 backend's frame lines (`frame conn=.. seq=.. crc32=.. dom=.. png=..`),
//! and the PNG files it wrote. [`check_frames`] holds every flipped frame against its golden
//! (`golden.rs`), a paint frame drawn from the input event script the rig played
//! ([`frame_input`]); [`summary_lines`] is what `cargo xtask run` prints at the end.

use crate::golden::{self, Comparison};
use crate::logmatch;
use anyhow::{Context, Result};
use drivers::xen::kbdif::script::Script;
use kernel::app::{paint_window, InputEvent};
use kernel::scenes::FlipLine;
use std::collections::BTreeMap;
use std::path::Path;

/// Raw prefixes of the guest's console lines in the log (PV console and vpl011; both carry the
/// same lines).
const GUEST_CONSOLES: &[&str] = &["guest-console: ", "guest-vuart: "];

/// A backend `frame` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRecord {
    /// The frontend's domain.
    pub domid: Option<u32>,
    /// Connector index.
    pub connector: u32,
    /// Flip sequence number on that connector.
    pub seq: u64,
    /// CRC-32 of the frame's RGB8 bytes.
    pub crc32: u32,
    /// The PNG file's name, when one was written.
    pub png: Option<String>,
    /// Which backend process printed it, counted from 0 at the start of the log by its
    /// `vdispl-backend: serving` line (set by [`per_domain`]; 0 elsewhere).
    pub run: u32,
}

/// Parses a (stripped) backend frame line.
pub fn parse_frame_line(text: &str) -> Option<FrameRecord> {
    let rest = text.strip_prefix("frame ")?;
    let mut connector = None;
    let mut seq = None;
    let mut crc32 = None;
    let mut domid = None;
    let mut png = None;
    for word in rest.split_whitespace() {
        let (key, value) = word.split_once('=')?;
        match key {
            "conn" => connector = Some(value.parse().ok()?),
            "seq" => seq = Some(value.parse().ok()?),
            "crc32" => crc32 = Some(u32::from_str_radix(value, 16).ok()?),
            "dom" => domid = Some(value.parse().ok()?),
            "png" => png = Some(value.to_string()),
            _ => {}
        }
    }
    Some(FrameRecord {
        domid,
        connector: connector?,
        seq: seq?,
        crc32: crc32?,
        png,
        run: 0,
    })
}

/// A guest `display: summary` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Connector index.
    pub connector: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames flipped.
    pub frames: u64,
    /// Frames per second as the guest measured it (text, as printed).
    pub fps: String,
    /// Median flip round trip (request to response and EVT_PG_FLIP), microseconds.
    pub rtt_p50_us: u64,
    /// 99th percentile flip round trip, microseconds.
    pub rtt_p99_us: u64,
    /// Why the connector stopped early, if it did.
    pub failed: Option<String>,
}

/// Parses a (stripped) `display: summary conn=0 1280x720 frames=32 fps=7.812
/// rtt_p50_us=.. rtt_p99_us=..[ failed: ...]` line.
pub fn parse_summary(text: &str) -> Option<Summary> {
    let rest = text.strip_prefix("display: summary ")?;
    let (fields, failed) = match rest.split_once(" failed: ") {
        Some((fields, reason)) => (fields, Some(reason.to_string())),
        None => (rest, None),
    };
    let mut words = fields.split_whitespace();
    let connector = words.next()?.strip_prefix("conn=")?.parse().ok()?;
    let (width, height) = words.next()?.split_once('x')?;
    let mut summary = Summary {
        connector,
        width: width.parse().ok()?,
        height: height.parse().ok()?,
        frames: 0,
        fps: String::new(),
        rtt_p50_us: 0,
        rtt_p99_us: 0,
        failed,
    };
    for word in words {
        let (key, value) = word.split_once('=')?;
        match key {
            "frames" => summary.frames = value.parse().ok()?,
            "fps" => summary.fps = value.to_string(),
            "rtt_p50_us" => summary.rtt_p50_us = value.parse().ok()?,
            "rtt_p99_us" => summary.rtt_p99_us = value.parse().ok()?,
            _ => {}
        }
    }
    Some(summary)
}

/// Everything about the display in one serial log.
#[derive(Default)]
pub struct DisplayLog {
    /// The guest's flip lines by (connector, seq); the consoles' copies merged.
    pub flips: BTreeMap<(u32, u64), FlipLine>,
    /// Guest flip lines that did not parse, with the reason.
    pub bad_flip_lines: Vec<String>,
    /// The backend's frame lines.
    pub frames: Vec<FrameRecord>,
    /// The guest's summaries by connector.
    pub summaries: BTreeMap<u32, Summary>,
    /// Flips the backend said it did not capture (its copy threads or PNG writers were behind,
    /// or the device went away): shown, but with no frame to check. Per line, the connector and
    /// the range of seqs it covers.
    pub not_captured: Vec<(u32, u64, u64)>,
    /// The guest's frames were shown by more than one backend process (its console section said
    /// `begins, across backend restarts`): each backend counts its own seq from 0 while the
    /// guest's keeps counting, so they are held by content ([`check_frames_across_restarts`]).
    pub across_restarts: bool,
}

impl DisplayLog {
    /// Whether a backend line covers flip (`connector`, `seq`) as not captured.
    pub fn is_not_captured(&self, connector: u32, seq: u64) -> bool {
        self.not_captured
            .iter()
            .any(|&(conn, low, high)| conn == connector && (low..=high).contains(&seq))
    }

    /// For a guest ended while flipping (`xl shutdown` or `xl destroy`): takes out, per
    /// connector, the backend's frame of the guest's last flip when the guest printed no line
    /// for it (a flip line is printed when the flip completes, and the guest was gone or tearing
    /// down before it saw that), and returns them as (connector, seq). Only a frame newer than
    /// every flip line of its connector goes; any other frame without a line stays and fails the
    /// check, and so does a frame of a connector the guest printed no line for at all.
    pub fn drop_unanswered_last_flips(&mut self) -> Vec<(u32, u64)> {
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for record in &self.frames {
            let seq = last.entry(record.connector).or_insert(record.seq);
            *seq = (*seq).max(record.seq);
        }
        let dropped: Vec<(u32, u64)> = last
            .into_iter()
            .filter(|&(connector, seq)| {
                let mut flipped = self
                    .flips
                    .keys()
                    .filter(|&&(conn, _)| conn == connector)
                    .map(|&(_, flipped)| flipped)
                    .peekable();
                flipped.peek().is_some() && flipped.all(|flipped| flipped < seq)
            })
            .collect();
        self.frames
            .retain(|record| !dropped.contains(&(record.connector, record.seq)));
        dropped
    }
}

/// The backend's `vdispl-backend: dom<D> dev<N> conn<I>: frame seq <K> not captured (...)` line,
/// or its range line `... conn<I>: frames seq <A> to <B>: <N> not captured (...)`: (connector,
/// lowest seq, highest seq).
pub fn parse_not_captured(text: &str) -> Option<(u32, u64, u64)> {
    let rest = text.strip_prefix("vdispl-backend: ")?;
    if let Some((head, tail)) = rest.split_once(": frame seq ") {
        let connector = head.rsplit_once(" conn")?.1.parse().ok()?;
        let (seq, tail) = tail.split_once(' ')?;
        let seq = seq.parse().ok()?;
        return tail
            .starts_with("not captured")
            .then_some((connector, seq, seq));
    }
    let (head, tail) = rest.split_once(": frames seq ")?;
    let connector = head.rsplit_once(" conn")?.1.parse().ok()?;
    let (low, tail) = tail.split_once(" to ")?;
    let (high, tail) = tail.split_once(": ")?;
    let (_count, tail) = tail.split_once(' ')?;
    tail.starts_with("not captured").then_some(()).and(Some((
        connector,
        low.parse().ok()?,
        high.parse().ok()?,
    )))
}

impl DisplayLog {
    /// Reads a serial log file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut log = Self::default();
        for line in String::from_utf8_lossy(&bytes).lines() {
            log.feed(line);
        }
        Ok(log)
    }

    /// Takes one raw log line.
    pub fn feed(&mut self, raw: &str) {
        let text = logmatch::strip_prefixes(raw);
        let from_guest = GUEST_CONSOLES
            .iter()
            .any(|prefix| raw.trim_start_matches(['\r', ' ']).starts_with(prefix));
        if from_guest {
            match FlipLine::find_in(text) {
                Some(Ok(flip)) => {
                    self.flips.entry((flip.connector, flip.seq)).or_insert(flip);
                }
                Some(Err(error)) => self.bad_flip_lines.push(format!("`{text}`: {error}")),
                None => {}
            }
            if let Some(summary) = parse_summary(text) {
                self.summaries.insert(summary.connector, summary);
            }
        } else if let Some(record) = parse_frame_line(text) {
            self.frames.push(record);
        } else if let Some(range) = parse_not_captured(text) {
            self.not_captured.push(range);
        }
    }

    /// The backend's record of flip (`connector`, `seq`) whose PNG exists in `dir`, else any.
    fn record(&self, connector: u32, seq: u64, dir: &Path) -> Option<&FrameRecord> {
        let mut matching = self
            .frames
            .iter()
            .filter(|record| record.connector == connector && record.seq == seq);
        let first = matching.clone().next();
        matching
            .find(|record| {
                record
                    .png
                    .as_ref()
                    .is_some_and(|png| dir.join(png).is_file())
            })
            .or(first)
    }
}

/// The starts of the lines `multi.sh`, `be-alloc.sh` and `recovery.sh` print before a guest's
/// console log.
const SECTION_BEGINS: &[&str] = &[
    "rig: multi: console of domain ",
    "rig: be-alloc: console of domain ",
    "rig: recovery: console of domain ",
];

/// The line each vdispl-backend process starts with.
const BACKEND_STARTS: &str = "vdispl-backend: serving ";

/// A log of one or several guests (`multi.sh`, `be-alloc.sh`, `recovery.sh`), one [`DisplayLog`]
/// per domain: a guest's
/// flip and summary lines come from its console section (between `rig: multi: console of domain
/// <D> begins` and `... ends`, or the same with `be-alloc:`; `begins, across backend restarts`
/// marks a guest whose frames several backend processes showed), its frames from the backend's
/// lines for `dom=<D>` (and its `vdispl-backend: dom<D> ...` not-captured lines), each frame
/// numbered with the backend process that printed it.
pub fn per_domain(path: &Path) -> Result<BTreeMap<u32, DisplayLog>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut logs: BTreeMap<u32, DisplayLog> = BTreeMap::new();
    let mut section = None;
    let mut run = 0;
    let mut backends = 0;
    for raw in String::from_utf8_lossy(&bytes).lines() {
        let text = logmatch::strip_prefixes(raw);
        if let Some(rest) = SECTION_BEGINS
            .iter()
            .find_map(|begins| text.strip_prefix(begins))
        {
            let (domain, what) = rest.split_once(' ').unwrap_or((rest, ""));
            section = match (domain.parse::<u32>(), what) {
                (Ok(domain), "begins") => Some(domain),
                (Ok(domain), "begins, across backend restarts") => {
                    logs.entry(domain).or_default().across_restarts = true;
                    Some(domain)
                }
                _ => None,
            };
            continue;
        }
        if text.starts_with(BACKEND_STARTS) {
            run = backends;
            backends += 1;
        }
        let domain = if let Some(record) = parse_frame_line(text) {
            record.domid
        } else if let Some(rest) = text.strip_prefix("vdispl-backend: dom") {
            rest.split(' ')
                .next()
                .and_then(|domain| domain.parse().ok())
        } else {
            section
        };
        if let Some(domain) = domain {
            let log = logs.entry(domain).or_default();
            let frames = log.frames.len();
            log.feed(raw);
            if let Some(record) = log.frames.get_mut(frames) {
                record.run = run;
            }
        }
    }
    Ok(logs)
}

/// Holds the frames of a guest that several backend processes showed (`across_restarts`)
/// against the goldens of its flip lines, by content: each backend process counts its seq from
/// 0 while the guest's keeps counting, so a frame is held against the guest's flips by its
/// CRC-32. Per connector, in order (backend process, then its seq), every frame must equal the
/// golden of a guest flip no older than the previous frame's (the same flip may be shown again
/// after a restart), except a backend process's last frame of a connector, which may be a flip
/// the guest never saw complete (the backend was killed, or the guest ended, before the answer
/// reached it): that one is left unchecked and counted in `not_captured`. Every backend process
/// that printed frames of a connector must have shown at least one that matched.
pub fn check_frames_across_restarts(log: &DisplayLog, connectors: usize) -> FrameCheck {
    let mut check = FrameCheck::default();
    check.failures.extend(
        log.bad_flip_lines
            .iter()
            .map(|bad| format!("guest flip line {bad}")),
    );
    let shown: BTreeMap<u32, (u32, u32)> = log
        .flips
        .values()
        .map(|flip| (flip.connector, (flip.width, flip.height)))
        .collect();
    let mut sizes: Vec<(u32, u32)> = shown.values().copied().collect();
    sizes.sort_unstable();
    sizes.dedup();
    if shown.len() < connectors || sizes.len() < connectors {
        check.failures.push(format!(
            "expected {connectors} connectors with different resolutions, the guest flipped on {}",
            shown.len()
        ));
    }
    let mut connectors_seen: Vec<u32> = log.frames.iter().map(|frame| frame.connector).collect();
    connectors_seen.extend(shown.keys());
    connectors_seen.sort_unstable();
    connectors_seen.dedup();
    for connector in connectors_seen {
        let flips: Vec<&FlipLine> = log
            .flips
            .values()
            .filter(|flip| flip.connector == connector)
            .collect();
        // A backend's copy threads may print its frames out of order: its seq orders them.
        let mut frames: Vec<&FrameRecord> = log
            .frames
            .iter()
            .filter(|frame| frame.connector == connector)
            .collect();
        frames.sort_by_key(|frame| (frame.run, frame.seq));
        let mut goldens: Vec<Option<Result<u32, String>>> = vec![None; flips.len()];
        let mut golden_crc = |index: usize| -> Result<u32, String> {
            goldens[index]
                .get_or_insert_with(|| {
                    let flip = flips[index];
                    let input = frame_input(flip, None)?;
                    golden::render_golden(flip, &input)
                        .map(|image| crc32fast::hash(&image.pixels))
                        .map_err(|error| {
                            format!("flip conn={} seq={}: {error}", flip.connector, flip.seq)
                        })
                })
                .clone()
        };
        let mut cursor = 0;
        let mut matched_runs: BTreeMap<u32, usize> = BTreeMap::new();
        for (position, frame) in frames.iter().enumerate() {
            matched_runs.entry(frame.run).or_default();
            let mut found = None;
            for index in cursor..flips.len() {
                match golden_crc(index) {
                    Ok(crc32) if crc32 == frame.crc32 => {
                        found = Some(index);
                        break;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        check.failures.push(error);
                        break;
                    }
                }
            }
            let last_of_run = frames
                .get(position + 1)
                .is_none_or(|next| next.run != frame.run);
            match found {
                Some(index) => {
                    cursor = index;
                    *matched_runs.entry(frame.run).or_default() += 1;
                    *check.matched.entry(connector).or_default() += 1;
                }
                None if last_of_run => {
                    *check.not_captured.entry(connector).or_default() += 1;
                }
                None => check.failures.push(format!(
                    "backend process {} frame conn={connector} seq={} (crc32 {:08x}) equals the golden of no guest flip from seq {} on",
                    frame.run,
                    frame.seq,
                    frame.crc32,
                    flips.get(cursor).map_or(0, |flip| flip.seq)
                )),
            }
        }
        for (run, matched) in matched_runs {
            if matched == 0 {
                check.failures.push(format!(
                    "connector {connector}: no frame shown by backend process {run} matched a golden"
                ));
            }
        }
        if frames.is_empty() {
            check.failures.push(format!(
                "connector {connector}: no captured frame to hold against its golden"
            ));
        }
    }
    check.failures.dedup();
    if check.failures.len() > SHOWN_FAILURES {
        let more = check.failures.len() - SHOWN_FAILURES;
        check.failures.truncate(SHOWN_FAILURES);
        check.failures.push(format!("and {more} more"));
    }
    check
}

/// What [`check_frames`] found.
#[derive(Debug, Default)]
pub struct FrameCheck {
    /// Frames that match their goldens, per connector.
    pub matched: BTreeMap<u32, usize>,
    /// Flips the backend named as not captured (its writers were behind), per connector.
    pub not_captured: BTreeMap<u32, usize>,
    /// What is wrong, one sentence each.
    pub failures: Vec<String>,
}

/// The guest's frame count a failure list shows before it says "and N more".
const SHOWN_FAILURES: usize = 6;

/// The input events the guest had handed the connector of `flip` when it drew it, as its scene
/// draws them: the first [`FlipLine::inputs`] events of `script` that reach the input device
/// whose unique-id is the connector's name (the guest gives a device's events to the connector
/// its unique-id names, and the backend plays a device the events of its unique-id), cut to
/// the paint scene's window ([`paint_window`]).
pub fn frame_input(flip: &FlipLine, script: Option<&Script>) -> Result<Vec<InputEvent>, String> {
    let wanted = flip.inputs as usize;
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let what = format!("flip conn={} seq={}", flip.connector, flip.seq);
    let Some(script) = script else {
        return Err(format!(
            "{what}: drawn after {wanted} input events, and the scenario names no input script \
             to redraw them from"
        ));
    };
    let name = flip.name.as_str();
    let events: Vec<InputEvent> = script
        .for_device(Some(name))
        .take(wanted)
        .map(|event| event.event)
        .collect();
    if events.len() < wanted {
        return Err(format!(
            "{what}: drawn after {wanted} input events, but the input script has {} for {name}",
            events.len()
        ));
    }
    Ok(paint_window(&events).to_vec())
}

/// Checks that every flip line has a frame line whose PNG in `dir` is pixel-identical to the
/// golden drawn from the flip line (diff images go next to the PNGs; a paint frame is drawn from
/// the input event `script` the rig played, see [`frame_input`]), that every frame line has a
/// flip line, and that at least `connectors` connectors with different resolutions flipped.
pub fn check_frames(
    log: &DisplayLog,
    dir: &Path,
    connectors: usize,
    script: Option<&Script>,
) -> FrameCheck {
    let mut check = FrameCheck::default();
    check.failures.extend(
        log.bad_flip_lines
            .iter()
            .map(|bad| format!("guest flip line {bad}")),
    );
    if log.flips.is_empty() {
        check
            .failures
            .push("the guest printed no flip line".to_string());
        return check;
    }
    let mut sizes: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    for flip in log.flips.values() {
        sizes.insert(flip.connector, (flip.width, flip.height));
    }
    let mut distinct: Vec<(u32, u32)> = sizes.values().copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if sizes.len() < connectors || distinct.len() < connectors {
        let shown: Vec<String> = sizes
            .iter()
            .map(|(connector, (w, h))| format!("conn {connector} {w}x{h}"))
            .collect();
        check.failures.push(format!(
            "expected {connectors} connectors with different resolutions, the guest flipped on {}",
            shown.join(", ")
        ));
    }
    for record in &log.frames {
        if !log.flips.contains_key(&(record.connector, record.seq)) {
            check.failures.push(format!(
                "backend frame conn={} seq={} has no guest flip line",
                record.connector, record.seq
            ));
        }
    }
    // Goldens are drawn pixel by pixel; spread them over the host's cores. A flip the backend
    // named as not captured has nothing to compare.
    let jobs: Vec<&FlipLine> = log
        .flips
        .values()
        .filter(|flip| {
            let key = (flip.connector, flip.seq);
            let skipped =
                log.is_not_captured(key.0, key.1) && log.record(key.0, key.1, dir).is_none();
            if skipped {
                *check.not_captured.entry(flip.connector).or_default() += 1;
            }
            !skipped
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |count| count.get());
    let results: Vec<(u32, Result<(), String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(jobs.len().div_ceil(threads).max(1))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|flip| (flip.connector, check_one(log, flip, dir, script)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| vec![(0, Err("a golden check panicked".to_string()))])
            })
            .collect()
    });
    for (connector, result) in results {
        match result {
            Ok(()) => *check.matched.entry(connector).or_default() += 1,
            Err(failure) => check.failures.push(failure),
        }
    }
    for connector in sizes.keys() {
        if !jobs.iter().any(|flip| flip.connector == *connector) {
            check.failures.push(format!(
                "connector {connector}: no captured frame to hold against its golden"
            ));
        }
    }
    if check.failures.len() > SHOWN_FAILURES {
        let more = check.failures.len() - SHOWN_FAILURES;
        check.failures.truncate(SHOWN_FAILURES);
        check.failures.push(format!("and {more} more"));
    }
    check
}

/// The diff image's name for a PNG.
fn diff_name(png: &str) -> String {
    match png.strip_suffix(".png") {
        Some(stem) => format!("{stem}-diff.png"),
        None => format!("{png}-diff.png"),
    }
}

fn check_one(
    log: &DisplayLog,
    flip: &FlipLine,
    dir: &Path,
    script: Option<&Script>,
) -> Result<(), String> {
    let what = format!("flip conn={} seq={}", flip.connector, flip.seq);
    let input = frame_input(flip, script)?;
    let record = log
        .record(flip.connector, flip.seq, dir)
        .ok_or_else(|| format!("{what}: the backend printed no frame line for it"))?;
    let png = record
        .png
        .as_ref()
        .ok_or_else(|| format!("{what}: the backend wrote no PNG file for it"))?;
    let path = dir.join(png);
    if !path.is_file() {
        return Err(format!("{what}: {} is missing", path.display()));
    }
    let diff = dir.join(diff_name(png));
    match golden::check_frame(flip, &input, &path, &diff) {
        Ok(Comparison::Match) => Ok(()),
        Ok(comparison @ Comparison::SizeDiffers { .. }) => {
            Err(format!("{what}: {} {comparison}", path.display()))
        }
        Ok(comparison) => Err(format!(
            "{what}: {} {comparison} (diff: {})",
            path.display(),
            diff.display()
        )),
        Err(error) => Err(format!("{what}: {error}")),
    }
}

/// Milliseconds with three decimals from microseconds.
fn millis(micros: u64) -> String {
    format!("{}.{:03}", micros / 1000, micros % 1000)
}

/// The end-of-run summary: per connector the guest's figures and the PNG files written, then
/// where they are.
pub fn summary_lines(log: &DisplayLog, dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if log.summaries.is_empty() {
        lines.push("display: the guest printed no summary (see the log)".to_string());
    }
    let mut files_total = 0;
    for summary in log.summaries.values() {
        let name = log
            .flips
            .values()
            .find(|flip| flip.connector == summary.connector)
            .map(|flip| format!("{} ", flip.name.as_str()))
            .unwrap_or_default();
        let files = log
            .frames
            .iter()
            .filter(|record| record.connector == summary.connector)
            .filter(|record| {
                record
                    .png
                    .as_ref()
                    .is_some_and(|png| dir.join(png).is_file())
            })
            .count();
        files_total += files;
        let mut line = format!(
            "display: conn {} ({name}{}x{}): {} frames, {} fps, flip round trip p50 {} ms, \
             p99 {} ms; {files} PNG files",
            summary.connector,
            summary.width,
            summary.height,
            summary.frames,
            summary.fps,
            millis(summary.rtt_p50_us),
            millis(summary.rtt_p99_us),
        );
        if let Some(reason) = &summary.failed {
            line.push_str(&format!("; stopped early: {reason}"));
        }
        lines.push(line);
    }
    lines.push(format!(
        "display: frames in {}/ ({files_total} PNG files, dom<D>-conn<N>-seq<K>.png)",
        dir.display()
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::framebuffer::{FrameView, Layout, PixelFormat, Xrgb8888Framebuffer};
    use kernel::scenes::draw;

    const FLIP: &str = "flip conn=1 seq=0 scene=bars frame=0 size=64x48 bpp=32 name=HDMI-A-1 \
                        uptime_ms=10 flips=0 rtt_us=0 heap=100 grants=20";

    #[test]
    fn frame_and_summary_lines_parse() {
        assert_eq!(
            parse_frame_line("frame conn=1 seq=7 crc32=00ab12cd dom=3 size=800x600 png=x.png"),
            Some(FrameRecord {
                domid: Some(3),
                connector: 1,
                seq: 7,
                crc32: 0x00ab_12cd,
                png: Some("x.png".into()),
                run: 0,
            })
        );
        assert_eq!(
            parse_frame_line("frame conn=0 seq=1 crc32=1").map(|r| (r.png, r.domid)),
            Some((None, None))
        );
        assert_eq!(parse_frame_line("frame conn=0 crc32=1"), None);
        assert_eq!(parse_frame_line("framebuffer 3"), None);

        let summary = parse_summary(
            "display: summary conn=0 1280x720 frames=32 fps=7.812 rtt_p50_us=12000 \
             rtt_p99_us=23456",
        )
        .unwrap();
        assert_eq!(
            (
                summary.connector,
                summary.width,
                summary.height,
                summary.frames
            ),
            (0, 1280, 720, 32)
        );
        assert_eq!(summary.fps, "7.812");
        assert_eq!((summary.rtt_p50_us, summary.rtt_p99_us), (12000, 23456));
        assert_eq!(summary.failed, None);
        let failed = parse_summary(
            "display: summary conn=1 800x600 frames=3 fps=0.000 rtt_p50_us=1 rtt_p99_us=2 \
             failed: PG_FLIP not completed within 3100 ms",
        )
        .unwrap();
        assert_eq!(
            failed.failed.as_deref(),
            Some("PG_FLIP not completed within 3100 ms")
        );
    }

    #[test]
    fn the_log_merges_both_consoles_and_keeps_backend_lines_apart() {
        let mut log = DisplayLog::default();
        log.feed(&format!("guest-console: {FLIP}"));
        log.feed(&format!("guest-vuart: {FLIP}"));
        log.feed("guest-console: flip conn=0 seq=0 scene=nope");
        log.feed("frame conn=1 seq=0 crc32=00000001 dom=2 size=64x48 png=dom2-conn1-seq0.png");
        log.feed("(XEN) frame conn=1 seq=1 crc32=00000002 dom=2");
        log.feed(
            "guest-console: display: summary conn=1 64x48 frames=1 fps=0.000 rtt_p50_us=5 \
             rtt_p99_us=5",
        );
        // A flip line that reaches the console outside the guest's logs is not the guest's.
        log.feed(FLIP);
        assert_eq!(log.flips.len(), 1);
        assert_eq!(log.bad_flip_lines.len(), 1);
        assert_eq!(log.frames.len(), 2);
        assert_eq!(log.summaries[&1].frames, 1);
    }

    /// A directory with the PNG the backend would write for `flip`, the frame drawn by the
    /// guest's code into an XRGB8888 buffer.
    fn captured(flip: &FlipLine, name: &str, tamper: bool) -> std::path::PathBuf {
        captured_with_input(flip, &[], name, tamper)
    }

    /// [`captured`] of a frame the guest drew with `input`.
    fn captured_with_input(
        flip: &FlipLine,
        input: &[InputEvent],
        name: &str,
        tamper: bool,
    ) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-display-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let layout = Layout::packed(flip.width, flip.height, PixelFormat::Xrgb8888).unwrap();
        let mut buffer = vec![0u8; layout.size_bytes()];
        let mut target = Xrgb8888Framebuffer::with_layout(&mut buffer, layout).unwrap();
        let frame = kernel::scenes::Frame {
            input,
            ..flip.frame()
        };
        draw(&frame, &mut target).unwrap();
        if tamper {
            buffer[4 * 70] ^= 0xff;
        }
        let mut rgb = Vec::new();
        FrameView::new(&buffer, layout)
            .unwrap()
            .write_rgb8(&mut rgb);
        let image = golden::RgbImage {
            width: flip.width,
            height: flip.height,
            pixels: rgb,
        };
        std::fs::write(
            dir.join("dom2-conn1-seq0.png"),
            golden::encode_png(&image).unwrap(),
        )
        .unwrap();
        dir
    }

    fn log_with(lines: &[&str]) -> DisplayLog {
        let mut log = DisplayLog::default();
        for line in lines {
            log.feed(line);
        }
        log
    }

    #[test]
    fn only_the_last_unanswered_flip_of_an_ended_guest_is_dropped() {
        let flip = |seq: u64| FLIP.replace("seq=0", &format!("seq={seq}"));
        let frame = |conn: u32, seq: u64| format!("frame conn={conn} seq={seq} crc32=1 dom=2");
        let lines = [
            format!("guest-console: {}", flip(0)),
            format!("guest-console: {}", flip(1)),
            frame(1, 0),
            frame(1, 1),
            // conn 1's last flip, never answered: dropped.
            frame(1, 2),
            // conn 0 has no flip line at all: its frames stay and fail.
            frame(0, 5),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut log = log_with(&lines);
        assert_eq!(log.drop_unanswered_last_flips(), vec![(1, 2)]);
        let kept: Vec<(u32, u64)> = log.frames.iter().map(|r| (r.connector, r.seq)).collect();
        assert_eq!(kept, vec![(1, 0), (1, 1), (0, 5)]);

        // A frame without a line that is not the newest is never dropped.
        let lines = [
            format!("guest-console: {}", flip(2)),
            frame(1, 1),
            frame(1, 2),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut log = log_with(&lines);
        assert!(log.drop_unanswered_last_flips().is_empty());
        assert_eq!(log.frames.len(), 2);
    }

    #[test]
    fn a_flip_the_backend_did_not_capture_is_counted_not_failed() {
        assert_eq!(
            parse_not_captured(
                "vdispl-backend: dom2 dev0 conn1: frame seq 3 not captured (the writers were \
                 behind; seq 5 is newer)"
            ),
            Some((1, 3, 3))
        );
        assert_eq!(
            parse_not_captured(
                "vdispl-backend: dom2 dev0 conn1: frames seq 8 to 120: 100 not captured (the \
                 writers were behind; seq 121 is newer; 108 in all)"
            ),
            Some((1, 8, 120))
        );
        assert_eq!(
            parse_not_captured("vdispl-backend: dom2 dev0 conn1: frame seq 3 dropped"),
            None
        );
        let flip: FlipLine = FLIP.parse().unwrap();
        let second: FlipLine = FLIP.replace("seq=0", "seq=1").parse().unwrap();
        let dir = captured(&flip, "not-captured", false);
        let guest = [
            format!("guest-console: {FLIP}"),
            format!("guest-console: {}", FLIP.replace("seq=0", "seq=1")),
        ];
        let backend = "frame conn=1 seq=0 crc32=00000001 dom=2 size=64x48 png=dom2-conn1-seq0.png";
        let dropped = "vdispl-backend: dom2 dev0 conn1: frame seq 1 not captured (the writers \
                       were behind; seq 2 is newer)";
        let check = check_frames(
            &log_with(&[&guest[0], &guest[1], backend, dropped]),
            &dir,
            1,
            None,
        );
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        assert_eq!(check.matched[&1], 1);
        assert_eq!(check.not_captured[&1], 1);
        // Without the backend's line, the missing frame is a failure.
        let check = check_frames(&log_with(&[&guest[0], &guest[1], backend]), &dir, 1, None);
        assert_eq!(check.failures.len(), 1, "{:?}", check.failures);
        assert_eq!(second.seq, 1);
        // A connector none of whose frames was captured fails.
        let none_captured = "vdispl-backend: dom2 dev0 conn1: frame seq 0 not captured (x)";
        let check = check_frames(&log_with(&[&guest[0], none_captured]), &dir, 1, None);
        assert!(
            check
                .failures
                .iter()
                .any(|f| f.contains("no captured frame")),
            "{:?}",
            check.failures
        );
    }

    #[test]
    fn captured_frames_are_held_against_their_goldens() {
        let flip: FlipLine = FLIP.parse().unwrap();
        let guest = format!("guest-console: {FLIP}");
        let backend = "frame conn=1 seq=0 crc32=00000001 dom=2 size=64x48 png=dom2-conn1-seq0.png";
        let log = log_with(&[&guest, backend]);

        let dir = captured(&flip, "match", false);
        let check = check_frames(&log, &dir, 1, None);
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        assert_eq!(check.matched[&1], 1);
        let summary = summary_lines(&log, &dir);
        assert_eq!(summary.len(), 2, "{summary:?}");

        let dir = captured(&flip, "mismatch", true);
        let check = check_frames(&log, &dir, 1, None);
        assert_eq!(check.failures.len(), 1, "{:?}", check.failures);
        assert!(
            check.failures[0].contains("differs from its golden in 1 of 3072 pixels"),
            "{:?}",
            check.failures
        );
        assert!(check.failures[0].contains("dom2-conn1-seq0-diff.png"));
        assert!(dir.join("dom2-conn1-seq0-diff.png").is_file());

        // Two connectors were asked for; a frame line without a flip line; a flip line
        // without a PNG.
        let orphan = "frame conn=0 seq=4 crc32=00000001 dom=2";
        let check = check_frames(&log_with(&[&guest, backend, orphan]), &dir, 2, None);
        assert!(check
            .failures
            .iter()
            .any(|f| f.starts_with("expected 2 connectors")));
        assert!(check
            .failures
            .iter()
            .any(|f| f == "backend frame conn=0 seq=4 has no guest flip line"));
        let check = check_frames(&log_with(&[&guest]), &dir, 1, None);
        assert_eq!(
            check.failures,
            ["flip conn=1 seq=0: the backend printed no frame line for it"]
        );
        assert_eq!(
            check_frames(&DisplayLog::default(), &dir, 1, None).failures,
            ["the guest printed no flip line"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_run_summary_names_connectors_rates_and_files() {
        let log = log_with(&[
            &format!("guest-console: {FLIP}"),
            "guest-console: display: summary conn=1 64x48 frames=1 fps=2.500 rtt_p50_us=12345 \
             rtt_p99_us=20000",
            "frame conn=1 seq=0 crc32=00000001 dom=2 png=missing.png",
        ]);
        let lines = summary_lines(&log, Path::new("/nonexistent/frames"));
        assert_eq!(
            lines,
            [
                "display: conn 1 (HDMI-A-1 64x48): 1 frames, 2.500 fps, flip round trip p50 \
                 12.345 ms, p99 20.000 ms; 0 PNG files",
                "display: frames in /nonexistent/frames/ (0 PNG files, dom<D>-conn<N>-seq<K>.png)"
            ]
        );
    }

    const PAINT: &str = "flip conn=1 seq=0 scene=paint frame=0 size=64x48 bpp=32 name=DP-1 \
                         uptime_ms=1000 flips=0 rtt_us=0 heap=65536 grants=40 inputs=3";

    const PAINT_SCRIPT: &str = "device HDMI-A-1\n\
                                0 touch 0 down 5 5\n\
                                device DP-1\n\
                                10 touch 0 down 10 10\n\
                                10 touch 0 move 20 20\n\
                                device *\n\
                                10 abs 30 30\n\
                                10 key KEY_ESC press\n";

    #[test]
    fn a_paint_frame_is_redrawn_from_its_connectors_first_events_of_the_script() {
        let script = Script::parse(PAINT_SCRIPT).unwrap();
        let flip: FlipLine = PAINT.parse().unwrap();
        let input = frame_input(&flip, Some(&script)).unwrap();
        // DP-1's events (its own and every device's), not HDMI-A-1's; the first three.
        assert_eq!(
            input,
            [
                InputEvent::Touch {
                    contact: 0,
                    touch: kernel::app::Touch::Down { x: 10, y: 10 }
                },
                InputEvent::Touch {
                    contact: 0,
                    touch: kernel::app::Touch::Motion { x: 20, y: 20 }
                },
                InputEvent::Position {
                    x: 30,
                    y: 30,
                    rel_z: 0
                },
            ]
        );
        let backend = "frame conn=1 seq=0 crc32=00000001 dom=2 size=64x48 png=dom2-conn1-seq0.png";
        let log = log_with(&[&format!("guest-console: {PAINT}"), backend]);
        let dir = captured_with_input(&flip, &input, "paint", false);
        let check = check_frames(&log, &dir, 1, Some(&script));
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        // Without the events the dots are missing.
        let dir = captured_with_input(&flip, &input[..2], "paint-short", false);
        let check = check_frames(&log, &dir, 1, Some(&script));
        assert!(
            check.failures[0].contains("differs from its golden"),
            "{:?}",
            check.failures
        );
        // No script, or too short a one, is said.
        let check = check_frames(&log, &dir, 1, None);
        assert_eq!(
            check.failures,
            [
                "flip conn=1 seq=0: drawn after 3 input events, and the scenario names no input \
              script to redraw them from"
            ]
        );
        let short = Script::parse("device DP-1\n0 abs 1 1\n").unwrap();
        assert_eq!(
            frame_input(&flip, Some(&short)).unwrap_err(),
            "flip conn=1 seq=0: drawn after 3 input events, but the input script has 1 for DP-1"
        );
        // A frame drawn before any input needs no script.
        let first: FlipLine = PAINT.replace(" inputs=3", "").parse().unwrap();
        assert!(frame_input(&first, None).unwrap().is_empty());
    }

    #[test]
    fn a_long_input_is_cut_to_the_paint_window() {
        let text: String = (0..600).map(|x| format!("1 abs {x} 1\n")).collect();
        let script = Script::parse(&text).unwrap();
        let flip: FlipLine = PAINT.replace("inputs=3", "inputs=600").parse().unwrap();
        let input = frame_input(&flip, Some(&script)).unwrap();
        assert_eq!(input.len(), kernel::scenes::MAX_PAINT_EVENTS);
        assert_eq!(
            input[0],
            InputEvent::Position {
                x: 600 - kernel::scenes::MAX_PAINT_EVENTS as i32,
                y: 1,
                rel_z: 0
            }
        );
    }

    #[test]
    fn a_log_of_several_guests_splits_by_domain() {
        let flip = |conn: u32, seq: u64| {
            format!(
                "guest-console: flip conn={conn} seq={seq} scene=bars frame={seq} size=320x240 \
                 bpp=32 name=DP-1 uptime_ms=1 flips={seq} rtt_us=1 heap=1 grants=1"
            )
        };
        let log = [
            "frame conn=0 seq=0 crc32=1 dom=3 size=320x240 png=dom3-conn0-seq0.png".to_string(),
            "frame conn=0 seq=0 crc32=2 dom=4 size=320x240 png=dom4-conn0-seq0.png".to_string(),
            "vdispl-backend: dom4 dev0 conn0: frame seq 1 not captured (the writers were behind)"
                .to_string(),
            "rig: multi: console of domain 3 begins".to_string(),
            flip(0, 0),
            "rig: multi: console of domain 3 ends".to_string(),
            "rig: be-alloc: console of domain 4 begins".to_string(),
            flip(0, 0),
            flip(0, 1),
            "rig: be-alloc: console of domain 4 ends".to_string(),
            flip(0, 7),
            "frame conn=0 seq=9 crc32=3 dom=5 size=320x240".to_string(),
        ]
        .join("\n");
        let path = std::env::temp_dir().join(format!("xtask-multi-{}.log", std::process::id()));
        std::fs::write(&path, log).unwrap();
        let logs = per_domain(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // Domain 5's console is in no section (be-alloc.sh's recovery phase): its frames are
        // there, its flips are not.
        assert_eq!(logs.keys().copied().collect::<Vec<_>>(), [3, 4, 5]);
        assert!(logs[&5].flips.is_empty());
        assert_eq!(logs[&3].flips.len(), 1);
        assert_eq!(logs[&4].flips.len(), 2);
        assert_eq!(logs[&3].frames.len(), 1);
        assert_eq!(logs[&3].frames[0].crc32, 1);
        assert_eq!(logs[&4].frames[0].crc32, 2);
        assert!(logs[&4].is_not_captured(0, 1));
        assert!(!logs[&3].is_not_captured(0, 1));
    }

    /// A status flip line (its uptime differs per seq, so each frame is its own) and the CRC-32
    /// of its golden, drawn by the host renderer.
    fn status_flip(connector: u32, seq: u64) -> (String, u32) {
        let (size, name) = if connector == 0 {
            ("320x240", "DP-1")
        } else {
            ("256x192", "HDMI-A-1")
        };
        let line = format!(
            "flip conn={connector} seq={seq} scene=status frame={seq} size={size} bpp=32 \
             name={name} uptime_ms={} flips={seq} rtt_us=1 heap=1 grants=1",
            1000 + seq * 40
        );
        let flip: FlipLine = line.parse().unwrap();
        let golden = golden::render_golden(&flip, &[]).unwrap();
        (line, crc32fast::hash(&golden.pixels))
    }

    /// The recovery log of one guest (domain 7): `runs` lists, per backend process, the frames
    /// it printed as (connector, crc32).
    fn restarts_log(flips: &[String], runs: &[Vec<(u32, u32)>]) -> DisplayLog {
        let mut lines = Vec::new();
        for frames in runs {
            lines.push("vdispl-backend: serving backend/vdispl (protocol versions 1,2)".into());
            let mut seqs = [0u64; 2];
            for &(connector, crc32) in frames {
                let seq = &mut seqs[connector as usize];
                lines.push(format!(
                    "frame conn={connector} seq={seq} crc32={crc32:08x} dom=7 size=1x1"
                ));
                *seq += 1;
            }
        }
        lines.push("rig: be-alloc: console of domain 7 begins, across backend restarts".into());
        lines.extend(flips.iter().map(|flip| format!("guest-console: {flip}")));
        lines.push("rig: be-alloc: console of domain 7 ends".into());
        let path = std::env::temp_dir().join(format!(
            "xtask-restarts-{}-{}.log",
            std::process::id(),
            runs.len() * 100 + runs.iter().map(Vec::len).sum::<usize>()
        ));
        std::fs::write(&path, lines.join("\n")).unwrap();
        let mut logs = per_domain(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let log = logs.remove(&7).unwrap();
        assert!(log.across_restarts);
        log
    }

    #[test]
    fn frames_across_backend_restarts_are_held_by_content() {
        let guest: Vec<(String, u32)> = (0..6)
            .flat_map(|seq| [status_flip(0, seq), status_flip(1, seq)])
            .collect();
        let flips: Vec<String> = guest.iter().map(|(line, _)| line.clone()).collect();
        let crc = |connector: u32, seq: u64| guest[(seq * 2 + u64::from(connector)) as usize].1;
        // Backend 0 shows seqs 0-2 of both connectors, then a frame of connector 0 the guest
        // never saw answered (killed); backend 1 shows 2 (again) to 5.
        let good = vec![
            vec![
                (0, crc(0, 0)),
                (1, crc(1, 0)),
                (0, crc(0, 1)),
                (1, crc(1, 1)),
                (0, crc(0, 2)),
                (1, crc(1, 2)),
                (0, 0xdead_beef),
            ],
            vec![
                (0, crc(0, 2)),
                (0, crc(0, 3)),
                (1, crc(1, 4)),
                (0, crc(0, 5)),
                (1, crc(1, 5)),
            ],
        ];
        // Backend 1's copy threads printed its conn 0 seq 2 before seq 1: seq orders them.
        let mut log = restarts_log(&flips, &good);
        let position = |log: &DisplayLog, seq: u64| {
            log.frames
                .iter()
                .position(|f| f.run == 1 && f.connector == 0 && f.seq == seq)
                .unwrap()
        };
        let (one, two) = (position(&log, 1), position(&log, 2));
        log.frames.swap(one, two);
        let check = check_frames_across_restarts(&log, 2);
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        let log = restarts_log(&flips, &good);
        assert_eq!(log.frames.iter().map(|f| f.run).max(), Some(1));
        let check = check_frames_across_restarts(&log, 2);
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        assert_eq!(check.matched[&0], 6);
        assert_eq!(check.matched[&1], 5);
        assert_eq!(check.not_captured[&0], 1);

        // A garbled frame inside a run fails, named.
        let mut garbled = good.clone();
        garbled[1][1].1 ^= 1;
        let check = check_frames_across_restarts(&restarts_log(&flips, &garbled), 2);
        assert_eq!(check.failures.len(), 1, "{:?}", check.failures);
        assert!(
            check.failures[0].starts_with("backend process 1 frame conn=0 seq=1 "),
            "{:?}",
            check.failures
        );

        // A frame older than the one before it fails.
        let mut backwards = good.clone();
        backwards[1][1].1 = crc(0, 1);
        let check = check_frames_across_restarts(&restarts_log(&flips, &backwards), 2);
        assert_eq!(check.failures.len(), 1, "{:?}", check.failures);
        assert!(
            check.failures[0].contains("equals the golden of no guest flip from seq 2 on"),
            "{:?}",
            check.failures
        );

        // A backend process whose only frame of a connector matches nothing fails.
        let mut lost = good.clone();
        lost.push(vec![(1, 0x1234_5678)]);
        let check = check_frames_across_restarts(&restarts_log(&flips, &lost), 2);
        assert_eq!(
            check.failures,
            ["connector 1: no frame shown by backend process 2 matched a golden"]
        );
    }
}
