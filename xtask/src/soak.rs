//! `cargo xtask soak`: the display guest flips many frames on two connectors
//! (`qemu/dom0/scenarios/soak.sh`), then the figures it printed are checked for
//! growth: heap and grants in use across its sampled flip lines, and after its
//! connection closed against the baseline it printed before connecting.

use crate::logmatch::strip_prefixes;
use crate::release::{self, Release};
use crate::{rig, scenarios};
use anyhow::{bail, Context, Result};
use kernel::scenes::FlipLine;
use std::collections::BTreeMap;

/// Options of `cargo xtask soak`.
#[derive(clap::Args)]
pub struct SoakArgs {
    /// The Xen release to boot: 4.17 or 4.20.
    #[arg(long = "xen", value_name = "RELEASE", default_value = "4.17", value_parser = release::parse_release)]
    pub xen: Release,
    /// Flips on each of the two connectors.
    #[arg(long, default_value_t = 5000)]
    pub flips: u32,
    /// GIC version of the emulated board.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub gic: u8,
    /// Overall timeout in seconds (default: generous for the flip count).
    #[arg(long)]
    pub timeout: Option<u64>,
}

/// Heap bytes and grants in use, as the guest printed them.
pub type InUse = (u64, u64);

/// The figures a soak produced.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    /// Heap and grants in use before connecting.
    pub baseline: Option<InUse>,
    /// Heap and grants after the connection closed.
    pub closed: Option<InUse>,
    /// Per connector: flips, and the (heap, grants) of its second and last sampled flip line.
    /// The first sample is left out: it is drawn before the connector's first flip completes,
    /// when queues that keep a steady size afterwards have not been allocated yet.
    pub connectors: BTreeMap<u32, (u64, InUse, InUse)>,
}

/// `display: device 0 baseline: <g> grants in use, heap in use <b> bytes` and the same figures
/// in `... connection <n> closed: <g> grants in use, heap in use <b> bytes, ...`.
fn grants_and_heap(text: &str) -> Option<InUse> {
    let (_, rest) = text.split_once(": ")?;
    let rest = rest.rsplit_once(": ").map_or(rest, |(_, tail)| tail);
    let grants = rest.split_whitespace().next()?.parse().ok()?;
    let heap = rest
        .split_once("heap in use ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((heap, grants))
}

/// Reads the figures from a serial log.
pub fn figures(log: &str) -> Figures {
    let mut figures = Figures::default();
    let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
    for line in log.lines() {
        let text = strip_prefixes(line);
        if text.starts_with("display: device ") && text.contains(" baseline: ") {
            figures.baseline = figures.baseline.or(grants_and_heap(text));
        } else if text.starts_with("display: device ") && text.contains(" closed: ") {
            figures.closed = grants_and_heap(text);
        } else if let Some(Ok(flip)) = FlipLine::find_in(text) {
            let sample = (flip.status.heap_bytes, flip.status.grants);
            let samples = seen.entry(flip.connector).or_insert(0u32);
            *samples += 1;
            let entry = figures
                .connectors
                .entry(flip.connector)
                .or_insert((0, sample, sample));
            entry.0 = flip.seq + 1;
            if *samples == 2 {
                entry.1 = sample;
            }
            entry.2 = sample;
        }
    }
    figures
}

/// Runs the soak and prints the verdict; fails if anything grew or frames are missing.
pub fn run(args: &SoakArgs) -> Result<()> {
    let every = (args.flips / 20).max(1);
    // Under emulation a small frame takes some tens of milliseconds to draw and flip.
    let timeout = args.timeout.unwrap_or(300 + u64::from(args.flips) / 5);
    println!(
        "soak: {} flips on each of two connectors (320x240, 256x192), a flip line every {every}; \
         expect several minutes under emulation (timeout {timeout} s)",
        args.flips
    );
    let run = scenarios::RunArgs {
        xen: args.xen,
        gic: args.gic,
        memory: None,
        bootargs: Some(format!(
            "log=info scene=animation frames={} flip-lines={every}",
            args.flips
        )),
        app: None,
        dom0less: false,
        script: "soak".into(),
        shell: false,
        timeout: Some(timeout),
    };
    let outcome = scenarios::run(&run);
    let log_path = rig::release_logs(args.xen).join(format!("run-gicv{}.log", args.gic));
    let log = std::fs::read_to_string(&log_path)
        .with_context(|| format!("reading {}", log_path.display()))?;
    let figures = figures(&log);
    let mut problems = Vec::new();
    for (connector, (flips, first, last)) in &figures.connectors {
        println!(
            "soak: connector {connector}: {flips} flips; from its second sampled flip to its last, heap in use {} -> {} bytes, grants in use {} -> {}",
            first.0, last.0, first.1, last.1
        );
        if *flips != u64::from(args.flips) {
            problems.push(format!(
                "connector {connector} flipped {flips} of {} frames",
                args.flips
            ));
        }
        if last.0 > first.0 || last.1 > first.1 {
            problems.push(format!(
                "connector {connector}: heap or grants in use grew while flipping"
            ));
        }
    }
    if figures.connectors.len() != 2 {
        problems.push(format!(
            "{} connectors flipped, expected 2",
            figures.connectors.len()
        ));
    }
    match (figures.baseline, figures.closed) {
        (Some(baseline), Some(closed)) => {
            println!(
                "soak: before connecting heap {} bytes, grants {}; after closing heap {} bytes, grants {}",
                baseline.0, baseline.1, closed.0, closed.1
            );
            if closed != baseline {
                problems.push(String::from(
                    "heap or grants in use did not return to the baseline",
                ));
            }
        }
        _ => problems.push(String::from(
            "the guest's baseline or closing figures are missing",
        )),
    }
    if let Err(error) = outcome {
        problems.push(format!("{error:#}"));
    }
    if problems.is_empty() {
        println!(
            "soak: PASS, no growth of heap or grants in use (log: {})",
            log_path.display()
        );
        Ok(())
    } else {
        bail!(
            "soak: FAIL: {} (log: {})",
            problems.join("; "),
            log_path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_baseline_flip_and_closing_lines() {
        let log = "\
guest-console: display: device 0 baseline: 0 grants in use, heap in use 73408 bytes
guest-console: flip conn=0 seq=0 scene=animation frame=0 size=320x240 bpp=32 name=DP-1 uptime_ms=1 flips=0 rtt_us=0 heap=900000 grants=180
guest-console: flip conn=1 seq=0 scene=animation frame=0 size=256x192 bpp=32 name=HDMI-A-1 uptime_ms=1 flips=0 rtt_us=0 heap=900000 grants=180
guest-console: flip conn=0 seq=50 scene=animation frame=50 size=320x240 bpp=32 name=DP-1 uptime_ms=5 flips=50 rtt_us=5 heap=900064 grants=180
guest-console: flip conn=0 seq=99 scene=animation frame=99 size=320x240 bpp=32 name=DP-1 uptime_ms=9 flips=99 rtt_us=5 heap=900064 grants=180
guest-console: display: device 0 connection 1 closed: 0 grants in use, heap in use 73408 bytes, at baseline
";
        let figures = figures(log);
        assert_eq!(figures.baseline, Some((73408, 0)));
        assert_eq!(figures.closed, Some((73408, 0)));
        assert_eq!(figures.connectors[&0], (100, (900064, 180), (900064, 180)));
        assert_eq!(figures.connectors[&1].0, 1);
    }
}
