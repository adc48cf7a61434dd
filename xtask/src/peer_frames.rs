//! The linux-peer scenarios' checks (`qemu/dom0/scenarios/linux-peer.sh`): Linux's
//! xen-drm-front in a DomU, driven by `kms-client`, against the project's display backend.
//!
//! The script runs one DomU per case and frames each in the log:
//! `rig: linux-peer case <name> start: format <FOURCC> be-alloc <0|1> connectors <id:WxH;...>
//! frames <N>`, `rig: linux-peer case <name> domain <D>`, the DomU's console (`guest-console:`
//! lines) and `rig: linux-peer case <name> end`. Per case this checks:
//! - Every case: `kms-client: ok: conn <i> <W>x<H> <FOURCC> <N> flips` for every connector,
//!   and every flip the backend captured of that domain (`frame conn=<i> seq=<s> ... dom=<D>
//!   png=...`, seq `s` being the client's frame `s + 1`: frame 0 is shown by SETCRTC, which the
//!   backend does not capture) equal, pixel for pixel, to `kms_client::pattern` converted to
//!   RGB8 as the backend converts that format (`dom0_tools::capture`); seqs 0 to N-1 each
//!   captured or named as not captured, none beyond, at least one compared per connector.
//! - be-alloc 1: the same, and the backend allocated the buffers itself (`vdispl-backend:
//!   dom<D> dev<d>: display buffer <cookie>: <n> pages allocated and granted to domain <D>
//!   (be-alloc)`, at least one per connector) and refused no request of the domain: the frames
//!   compared were drawn by Linux into Dom0's pages.
//! - Always: no `*ERROR*` line on the DomU's console, no `timeout closing device` (Linux
//!   waits 5 s at shutdown for the backend's Closing), the DomU powered itself off (`reason
//!   code 0`) and left `xl list`.

use crate::display::{parse_frame_line, parse_not_captured, FrameRecord};
use crate::golden::{self, Comparison, RgbImage};
use crate::logmatch;
use dom0_tools::capture::FrameLayout;
use kms_client::format::Format;
use kms_client::pattern::Frame;
use std::collections::BTreeMap;
use std::path::Path;

/// What the backend says of each buffer it allocated (after the cookie).
pub const BE_ALLOC_LINE: &str = "pages allocated and granted to domain ";

/// One DomU of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Its name in the script.
    pub name: String,
    /// The client's pixel format.
    pub format: Format,
    /// The vdispl device's `be-alloc`.
    pub be_alloc: bool,
    /// Connector sizes, in order.
    pub connectors: Vec<(u32, u32)>,
    /// Page flips asked per connector.
    pub frames: u32,
    /// Its domain id, once created.
    pub domid: Option<u32>,
    /// Its console lines (the guest's text).
    pub console: Vec<String>,
    /// xl's log said it powered off.
    pub powered_off: bool,
    /// The script saw it leave `xl list`.
    pub gone: bool,
    /// The script saw the end of the case.
    pub ended: bool,
}

impl Case {
    /// Parses `<name> start: format <F> be-alloc <0|1> connectors <id:WxH;...> frames <N>`.
    fn parse_start(rest: &str) -> Option<Case> {
        let (name, fields) = rest.split_once(" start: ")?;
        let words: Vec<&str> = fields.split_whitespace().collect();
        let value = |key: &str| {
            words
                .windows(2)
                .find(|pair| pair[0] == key)
                .map(|pair| pair[1])
        };
        let connectors = value("connectors")?
            .split(';')
            .map(|connector| {
                let (_, size) = connector.rsplit_once(':')?;
                let (width, height) = size.split_once('x')?;
                Some((width.parse().ok()?, height.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Case {
            name: name.to_string(),
            format: value("format")?.parse().ok()?,
            be_alloc: value("be-alloc")? == "1",
            connectors,
            frames: value("frames")?.parse().ok()?,
            domid: None,
            console: Vec::new(),
            powered_off: false,
            gone: false,
            ended: false,
        })
    }
}

/// Everything the checks need from one serial log.
#[derive(Default)]
pub struct PeerLog {
    /// The cases, in order.
    pub cases: Vec<Case>,
    /// The backend's frame lines.
    pub frames: Vec<FrameRecord>,
    /// The backend's not-captured lines: (domain, connector, lowest seq, highest seq).
    pub not_captured: Vec<(u32, u32, u64, u64)>,
    /// The backend's rejections: (domain, the line).
    pub rejections: Vec<(u32, String)>,
    /// Buffers the backend allocated (be-alloc), by domain.
    pub allocations: Vec<u32>,
    /// Case start lines that did not parse.
    pub bad_lines: Vec<String>,
}

/// The domain of a `vdispl-backend: dom<D> ...` line.
fn backend_domain(text: &str) -> Option<u32> {
    let rest = text.strip_prefix("vdispl-backend: dom")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

impl PeerLog {
    /// Reads a serial log.
    pub fn read(path: &Path) -> anyhow::Result<PeerLog> {
        let bytes = std::fs::read(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        let mut log = PeerLog::default();
        for line in String::from_utf8_lossy(&bytes).lines() {
            log.feed(line);
        }
        Ok(log)
    }

    /// Takes one raw log line.
    pub fn feed(&mut self, raw: &str) {
        let text = logmatch::strip_prefixes(raw);
        let trimmed = raw.trim_start_matches(['\r', ' ']);
        let current = self.cases.last_mut().filter(|case| !case.ended);
        if let Some(rest) = text.strip_prefix("rig: linux-peer case ") {
            if rest.contains(" start: ") {
                match Case::parse_start(rest) {
                    Some(case) => self.cases.push(case),
                    None => self.bad_lines.push(text.to_string()),
                }
            } else if let Some(case) = current {
                if let Some(domid) = rest
                    .strip_prefix(&format!("{} domain ", case.name))
                    .and_then(|d| d.trim().parse().ok())
                {
                    case.domid = Some(domid);
                } else if rest == format!("{} end", case.name) {
                    case.ended = true;
                }
            }
        } else if trimmed.starts_with("guest-console: ") {
            if let Some(case) = current {
                case.console.push(text.to_string());
            }
        } else if trimmed.starts_with("xl-log: ") {
            if let Some(case) = current {
                case.powered_off |= text.contains("has shut down, reason code 0 0x0");
            }
        } else if text.starts_with("rig: guest linux-peer gone after ") {
            if let Some(case) = current {
                case.gone = true;
            }
        } else if let Some(record) = parse_frame_line(text) {
            self.frames.push(record);
        } else if let Some(domid) = backend_domain(text) {
            if let Some((connector, low, high)) = parse_not_captured(text) {
                self.not_captured.push((domid, connector, low, high));
            } else if text.contains(": rejected ") {
                self.rejections.push((domid, text.to_string()));
            } else if text.contains(BE_ALLOC_LINE) && text.ends_with(" (be-alloc)") {
                self.allocations.push(domid);
            }
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct PeerCheck {
    /// Frames equal to their pattern, in all.
    pub matched: usize,
    /// Flips the backend named as not captured, in all.
    pub not_captured: usize,
    /// Cases checked.
    pub cases: usize,
    /// What is wrong, one sentence each.
    pub failures: Vec<String>,
}

/// The failures a list shows before "and N more".
const SHOWN_FAILURES: usize = 8;

/// The RGB8 image the backend should have written for `frame`: the pattern, converted as the
/// backend converts its format.
pub fn expected_image(frame: &Frame) -> Result<RgbImage, String> {
    let bytes = frame.packed().map_err(|error| error.to_string())?;
    let layout = FrameLayout::new(
        frame.width,
        frame.height,
        frame.row_bytes(),
        frame.format.fourcc(),
    )?;
    let mut pixels = Vec::new();
    layout.write_rgb8(&bytes, &mut pixels)?;
    Ok(RgbImage {
        width: frame.width,
        height: frame.height,
        pixels,
    })
}

/// Checks every case of `log` (PNG files in `dir`); `expected_cases` names the cases that
/// must all be there.
pub fn check(log: &PeerLog, dir: &Path, expected_cases: &[&str]) -> PeerCheck {
    let mut check = PeerCheck::default();
    check.failures.extend(
        log.bad_lines
            .iter()
            .map(|line| format!("unparsed line `{line}`")),
    );
    for name in expected_cases {
        if !log.cases.iter().any(|case| case.name == *name) {
            check.failures.push(format!("case {name} did not run"));
        }
    }
    for case in &log.cases {
        check.cases += 1;
        check_case(log, case, dir, &mut check);
    }
    if check.failures.len() > SHOWN_FAILURES {
        let more = check.failures.len() - SHOWN_FAILURES;
        check.failures.truncate(SHOWN_FAILURES);
        check.failures.push(format!("and {more} more"));
    }
    check
}

fn check_case(log: &PeerLog, case: &Case, dir: &Path, check: &mut PeerCheck) {
    let name = &case.name;
    let mut fail = |what: String| check.failures.push(format!("case {name}: {what}"));
    let Some(domid) = case.domid else {
        fail("no domain was created".into());
        return;
    };
    if !case.ended {
        fail("the script did not finish it".into());
    }
    if !case.gone {
        fail("the DomU did not leave xl list by itself".into());
    }
    if !case.powered_off {
        fail("xl's log does not say the DomU powered off (reason code 0)".into());
    }
    if let Some(line) = case.console.iter().find(|line| line.contains("*ERROR*")) {
        fail(format!("the DomU said `{line}`"));
    }
    if let Some(line) = case
        .console
        .iter()
        .find(|line| line.contains("timeout closing device"))
    {
        fail(format!(
            "the DomU said `{line}` (the backend never went Closing)"
        ));
    }
    let client_lines: Vec<&String> = case
        .console
        .iter()
        .filter(|line| {
            line.starts_with("kms-client: ok: ") || line.starts_with("kms-client: failed: ")
        })
        .collect();
    let domain_frames: Vec<&FrameRecord> = log
        .frames
        .iter()
        .filter(|record| record.domid == Some(domid))
        .collect();
    if case.be_alloc {
        let allocated = log.allocations.iter().filter(|&&dom| dom == domid).count();
        if allocated < case.connectors.len() {
            fail(format!(
                "the backend allocated {allocated} buffers (be-alloc), expected one per \
                 connector at least"
            ));
        }
        if let Some((_, line)) = log.rejections.iter().find(|(dom, _)| *dom == domid) {
            fail(format!("the backend refused a request: `{line}`"));
        }
    }
    for (index, &(width, height)) in case.connectors.iter().enumerate() {
        let wanted = format!(
            "kms-client: ok: conn {index} {width}x{height} {} {} flips",
            case.format, case.frames
        );
        if !client_lines.iter().any(|line| **line == wanted) {
            fail(format!(
                "the client did not say `{wanted}` (it said {client_lines:?})"
            ));
        }
    }
    if client_lines
        .iter()
        .any(|line| line.starts_with("kms-client: failed: "))
    {
        fail(format!("the client said {client_lines:?}"));
    }
    let mut by_flip: BTreeMap<(u32, u64), &FrameRecord> = BTreeMap::new();
    for record in &domain_frames {
        let in_range = (record.connector as usize) < case.connectors.len()
            && record.seq < u64::from(case.frames);
        if !in_range {
            fail(format!(
                "the backend captured conn={} seq={}, beyond the {} connectors and {} flips asked",
                record.connector,
                record.seq,
                case.connectors.len(),
                case.frames
            ));
            continue;
        }
        let keep = by_flip
            .entry((record.connector, record.seq))
            .or_insert(record);
        if keep.png.as_ref().is_none_or(|png| !dir.join(png).is_file()) {
            *keep = record;
        }
    }
    for (index, &(width, height)) in case.connectors.iter().enumerate() {
        let connector = index as u32;
        let mut compared = 0;
        for seq in 0..u64::from(case.frames) {
            let Some(record) = by_flip.get(&(connector, seq)) else {
                let named = log.not_captured.iter().any(|&(dom, conn, low, high)| {
                    dom == domid && conn == connector && (low..=high).contains(&seq)
                });
                if named {
                    check.not_captured += 1;
                } else {
                    fail(format!(
                        "conn {index} seq {seq}: no frame line and no not-captured line"
                    ));
                }
                continue;
            };
            let frame = Frame {
                connector,
                number: seq as u32 + 1,
                width,
                height,
                format: case.format,
            };
            match compare_frame(&frame, record, dir) {
                Ok(()) => {
                    compared += 1;
                    check.matched += 1;
                }
                Err(error) => fail(format!("conn {index} seq {seq}: {error}")),
            }
        }
        if compared == 0 {
            fail(format!("conn {index}: no captured frame to compare"));
        }
    }
}

/// Holds the backend's PNG of `record` against `frame`'s pattern; writes a diff image next to
/// the PNG on a mismatch.
fn compare_frame(frame: &Frame, record: &FrameRecord, dir: &Path) -> Result<(), String> {
    let png = record
        .png
        .as_ref()
        .ok_or("the backend wrote no PNG file for it")?;
    let path = dir.join(png);
    let captured = golden::read_png(&path).map_err(|error| error.to_string())?;
    let expected = expected_image(frame)?;
    match golden::compare(&captured, &expected) {
        Comparison::Match => Ok(()),
        comparison @ Comparison::SizeDiffers { .. } => {
            Err(format!("{} {comparison}", path.display()))
        }
        comparison => {
            let diff = dir.join(format!("{}-diff.png", png.trim_end_matches(".png")));
            let written = golden::encode_png(&golden::diff_image(&captured, &expected))
                .map_err(|error| error.to_string())
                .and_then(|bytes| std::fs::write(&diff, bytes).map_err(|e| e.to_string()));
            Err(format!(
                "{} {comparison} (frame {} of the pattern, {}; diff: {})",
                path.display(),
                frame.number,
                frame.format,
                match written {
                    Ok(()) => diff.display().to_string(),
                    Err(error) => format!("not written: {error}"),
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "rig: linux-peer case two start: format RG16 be-alloc 0 connectors \
                         DP-1:64x48;HDMI-A-1:32x16 frames 2";

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-peer-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes the PNG the backend would write for (connector, seq) of a case.
    fn capture(dir: &Path, frame: &Frame, name: &str, tamper: bool) {
        let mut image = expected_image(frame).unwrap();
        if tamper {
            image.pixels[7] ^= 0x40;
        }
        std::fs::write(dir.join(name), golden::encode_png(&image).unwrap()).unwrap();
    }

    fn frame(connector: u32, number: u32, width: u32, height: u32) -> Frame {
        Frame {
            connector,
            number,
            width,
            height,
            format: Format::Rgb565,
        }
    }

    fn good_log(not_captured: bool) -> Vec<String> {
        let mut lines = vec![
            START.to_string(),
            "rig: linux-peer case two domain 3".to_string(),
            "frame conn=0 seq=0 crc32=1 dom=3 size=64x48 png=dom3-conn0-seq0.png".to_string(),
            "frame conn=0 seq=1 crc32=1 dom=3 size=64x48 png=dom3-conn0-seq1.png".to_string(),
            "frame conn=1 seq=0 crc32=1 dom=3 size=32x16 png=dom3-conn1-seq0.png".to_string(),
        ];
        if not_captured {
            lines.push(
                "vdispl-backend: dom3 dev0 conn1: frame seq 1 not captured (writers behind)"
                    .to_string(),
            );
        } else {
            lines.push(
                "frame conn=1 seq=1 crc32=1 dom=3 size=32x16 png=dom3-conn1-seq1.png".to_string(),
            );
        }
        lines.extend(
            [
                "rig: guest linux-peer gone after 900 ms",
                "guest-console: [drm] Initialized xendrm-du 1.0.0 20180221 for vdispl-0 on minor 0",
                "guest-console: kms-client: ok: conn 0 64x48 RG16 2 flips",
                "guest-console: kms-client: ok: conn 1 32x16 RG16 2 flips",
                "xl-log: Domain 3 has shut down, reason code 0 0x0",
                "rig: linux-peer case two end",
            ]
            .map(String::from),
        );
        lines
    }

    fn parse(lines: &[String]) -> PeerLog {
        let mut log = PeerLog::default();
        for line in lines {
            log.feed(line);
        }
        log
    }

    fn write_captures(dir: &Path) {
        capture(dir, &frame(0, 1, 64, 48), "dom3-conn0-seq0.png", false);
        capture(dir, &frame(0, 2, 64, 48), "dom3-conn0-seq1.png", false);
        capture(dir, &frame(1, 1, 32, 16), "dom3-conn1-seq0.png", false);
        capture(dir, &frame(1, 2, 32, 16), "dom3-conn1-seq1.png", false);
    }

    #[test]
    fn a_case_is_parsed_from_its_lines() {
        let log = parse(&good_log(false));
        assert_eq!(log.cases.len(), 1);
        let case = &log.cases[0];
        assert_eq!(case.name, "two");
        assert_eq!(case.format, Format::Rgb565);
        assert_eq!(case.connectors, [(64, 48), (32, 16)]);
        assert_eq!(
            (case.frames, case.domid, case.be_alloc),
            (2, Some(3), false)
        );
        assert!(case.ended && case.gone && case.powered_off);
        assert_eq!(case.console.len(), 3);
        assert_eq!(log.frames.len(), 4);
    }

    #[test]
    fn captured_frames_match_the_pattern_and_a_changed_pixel_fails() {
        let dir = dir("match");
        write_captures(&dir);
        let check = check(&parse(&good_log(false)), &dir, &["two"]);
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        assert_eq!((check.matched, check.cases), (4, 1));

        let check = self::check(&parse(&good_log(true)), &dir, &["two", "gone"]);
        assert_eq!(check.matched, 3);
        assert_eq!(check.not_captured, 1);
        assert_eq!(check.failures, ["case gone did not run"]);

        // The frame of the wrong number (seq 0 is frame 1, not 0) differs.
        capture(&dir, &frame(0, 0, 64, 48), "dom3-conn0-seq0.png", false);
        let check = self::check(&parse(&good_log(false)), &dir, &["two"]);
        assert_eq!(check.failures.len(), 1, "{:?}", check.failures);
        assert!(
            check.failures[0].contains("conn 0 seq 0"),
            "{:?}",
            check.failures
        );
        assert!(dir.join("dom3-conn0-seq0-diff.png").is_file());
        capture(&dir, &frame(0, 1, 64, 48), "dom3-conn0-seq0.png", true);
        let check = self::check(&parse(&good_log(false)), &dir, &["two"]);
        assert!(
            check.failures[0].contains("differs"),
            "{:?}",
            check.failures
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_timeouts_and_missing_lines_fail_a_case() {
        let dir = dir("errors");
        write_captures(&dir);
        let mut lines = good_log(false);
        lines.insert(
            7,
            "guest-console: [drm:display_enable] *ERROR* Failed to enable display: -22".into(),
        );
        lines.insert(
            7,
            "guest-console: xenbus_dev_shutdown: device/vdispl/0 timeout closing device".into(),
        );
        lines.retain(|line| !line.contains("conn 1 32x16 RG16 2 flips"));
        lines.retain(|line| !line.contains("conn=0 seq=1"));
        let check = check(&parse(&lines), &dir, &["two"]);
        let text = check.failures.join("\n");
        assert!(text.contains("*ERROR* Failed to enable display"), "{text}");
        assert!(text.contains("timeout closing device"), "{text}");
        assert!(text.contains("conn 1 32x16 RG16 2 flips"), "{text}");
        assert!(text.contains("conn 0 seq 1: no frame line"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_backend_allocated_case_needs_the_backends_allocations_and_no_refusal() {
        let dir = dir("be-alloc");
        write_captures(&dir);
        let start = START.replace("be-alloc 0", "be-alloc 1");
        let allocation = |cookie: u32| {
            format!(
                "vdispl-backend: dom3 dev0: display buffer {cookie:#x}: 3 pages allocated and \
                 granted to domain 3 (be-alloc)"
            )
        };
        let mut lines = good_log(false);
        lines[0] = start;
        lines.insert(2, allocation(0x10));
        lines.insert(3, allocation(0x20));
        let check = check(&parse(&lines), &dir, &["two"]);
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        assert_eq!(check.matched, 4);
        // One buffer for two connectors; a refusal; xen-drm-front's error.
        lines.remove(3);
        lines.insert(
            3,
            "vdispl-backend: dom3 dev0 conn0: rejected DBUF_CREATE (id 0): cannot allocate 3 \
             pages: over the limit (status -12)"
                .to_string(),
        );
        lines.insert(
            9,
            "guest-console: [drm:xen_drm_drv_dumb_create] *ERROR* Failed to create dumb buffer: -12"
                .to_string(),
        );
        let check = self::check(&parse(&lines), &dir, &["two"]);
        let text = check.failures.join("\n");
        assert!(text.contains("allocated 1 buffers"), "{text}");
        assert!(text.contains("refused a request"), "{text}");
        assert!(
            text.contains("*ERROR* Failed to create dumb buffer"),
            "{text}"
        );
        // The same log with be-alloc 0 does not ask for allocations.
        lines[0] = START.to_string();
        lines.remove(3);
        lines.remove(8);
        let check = self::check(&parse(&lines), &dir, &["two"]);
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
