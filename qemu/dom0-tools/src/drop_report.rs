//! Lines for frames the backend flipped but did not capture, without flooding the console: a
//! connector that outruns the copy threads or the PNG workers for minutes (a guest flipping
//! small frames as fast as it is answered) would otherwise print a line per flip, and under
//! emulation the serial console is slow enough for that to stall the whole rig.
//!
//! Per connector, the first [`NAMED`] frames not captured are named one by one
//! (`frame seq K not captured (why)`); after that they are counted and reported as a range
//! every [`BATCH`] frames (`frames seq A to B: N not captured (why)`), and what is left is
//! reported when the device closes or the backend stops ([`DropReport::flush`]). Every frame
//! not captured is thus covered by a line, which is what the rig's frame check needs.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Frames per connector named one by one before they are counted.
pub const NAMED: u64 = 8;
/// Frames per range line after that.
pub const BATCH: u64 = 100;

/// A connector: domain, device, connector index.
pub type ConnectorKey = (u32, u32, usize);

#[derive(Debug, Default)]
struct Drops {
    total: u64,
    pending: u64,
    lowest: u64,
    highest: u64,
    why: String,
}

/// The frames not captured so far, per connector.
#[derive(Debug, Default)]
pub struct DropReport {
    connectors: BTreeMap<ConnectorKey, Drops>,
}

impl DropReport {
    /// An empty report.
    pub const fn new() -> Self {
        Self {
            connectors: BTreeMap::new(),
        }
    }

    /// Records frame `seq` of `connector` (printed as `prefix`, e.g. `dom1 dev0 conn1`) as not
    /// captured for `why`; returns the line to print now, if any.
    pub fn record(
        &mut self,
        connector: ConnectorKey,
        prefix: &str,
        seq: u64,
        why: &str,
    ) -> Option<String> {
        let drops = self.connectors.entry(connector).or_default();
        drops.total += 1;
        if drops.total <= NAMED {
            return Some(format!(
                "vdispl-backend: {prefix}: frame seq {seq} not captured ({why})"
            ));
        }
        if drops.pending == 0 {
            drops.lowest = seq;
            drops.highest = seq;
        }
        drops.pending += 1;
        drops.lowest = drops.lowest.min(seq);
        drops.highest = drops.highest.max(seq);
        drops.why = why.to_string();
        (drops.pending >= BATCH).then(|| range_line(prefix, drops))
    }

    /// The range line of what `connector` has counted and not reported yet, if anything, and
    /// forgets the connector (its device closed; a new connection numbers frames from 0).
    pub fn flush(&mut self, connector: ConnectorKey, prefix: &str) -> Option<String> {
        let mut drops = self.connectors.remove(&connector)?;
        (drops.pending > 0).then(|| range_line(prefix, &mut drops))
    }

    /// The connectors with something recorded.
    pub fn connectors(&self) -> Vec<ConnectorKey> {
        self.connectors.keys().copied().collect()
    }
}

fn range_line(prefix: &str, drops: &mut Drops) -> String {
    let line = format!(
        "vdispl-backend: {prefix}: frames seq {} to {}: {} not captured ({}; {} in all)",
        drops.lowest, drops.highest, drops.pending, drops.why, drops.total
    );
    drops.pending = 0;
    line
}

/// The backend's report (the ring thread and the copy threads' completions share it).
static REPORT: Mutex<DropReport> = Mutex::new(DropReport::new());

/// Records a frame not captured in the backend's report and prints what is due.
pub fn not_captured(connector: ConnectorKey, prefix: &str, seq: u64, why: &str) {
    let line = REPORT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .record(connector, prefix, seq, why);
    if let Some(line) = line {
        crate::write_stderr_line(line);
    }
}

/// Prints what the backend's report holds for `connector` and forgets it.
pub fn flush(connector: ConnectorKey, prefix: &str) {
    let line = REPORT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .flush(connector, prefix);
    if let Some(line) = line {
        crate::write_stderr_line(line);
    }
}

/// Prints what the backend's report holds for every connector (the backend is stopping).
pub fn flush_all() {
    let connectors = REPORT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .connectors();
    for (domid, device, index) in connectors {
        flush(
            (domid, device, index),
            &format!("dom{domid} dev{device} conn{index}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_frames_are_named_then_counted_in_ranges_and_flushed() {
        let mut report = DropReport::new();
        let key = (1, 0, 1);
        for seq in 0..NAMED {
            let line = report
                .record(key, "dom1 dev0 conn1", seq, "behind")
                .unwrap();
            assert_eq!(
                line,
                format!("vdispl-backend: dom1 dev0 conn1: frame seq {seq} not captured (behind)")
            );
        }
        // Another connector has its own count.
        assert!(report
            .record((1, 0, 0), "dom1 dev0 conn0", 3, "x")
            .is_some());
        let mut lines = Vec::new();
        for seq in NAMED..NAMED + BATCH + 5 {
            lines.extend(report.record(key, "dom1 dev0 conn1", seq, "behind"));
        }
        assert_eq!(
            lines,
            [format!(
                "vdispl-backend: dom1 dev0 conn1: frames seq {} to {}: {BATCH} not captured \
                 (behind; {} in all)",
                NAMED,
                NAMED + BATCH - 1,
                NAMED + BATCH
            )]
        );
        let rest = report.flush(key, "dom1 dev0 conn1").unwrap();
        assert!(rest.contains(&format!(
            "frames seq {} to {}: 5 not captured",
            NAMED + BATCH,
            NAMED + BATCH + 4
        )));
        // Flushed: the connector starts over (a new connection), naming frames again.
        assert!(report.flush(key, "dom1 dev0 conn1").is_none());
        assert!(report
            .record(key, "dom1 dev0 conn1", 0, "behind")
            .unwrap()
            .contains("frame seq 0 not captured"));
    }

    #[test]
    fn a_range_covers_frames_reported_out_of_order() {
        let mut report = DropReport::new();
        let key = (2, 0, 0);
        for seq in 0..NAMED {
            report.record(key, "p", seq, "w");
        }
        report.record(key, "p", 50, "w");
        report.record(key, "p", 40, "w");
        report.record(key, "p", 60, "w");
        let line = report.flush(key, "p").unwrap();
        assert!(
            line.contains("frames seq 40 to 60: 3 not captured (w; 11 in all)"),
            "{line}"
        );
    }
}
