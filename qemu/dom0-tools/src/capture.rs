//! Captured frames: a flipped display buffer copied out of the frontend's pages becomes an
//! RGB8 image ([`FrameLayout::write_rgb8`]: every pixel format Linux's xen-drm-front offers,
//! rows at the buffer's real pitch), a line `frame conn=<N> seq=<K> crc32=<hex> ...` on
//! the console (CRC-32 of the RGB8 bytes) and a PNG file `dom<D>-conn<N>-seq<K>.png`.
//!
//! Encoding and writing happen on worker threads ([`FrameWriter`]) of lower priority, so that
//! the workers never hold up the backend, the toolstack or xenstored (the copy itself is taken
//! by the copy threads of [`crate::frame_copy`]). Handing a frame over never waits: each connector has
//! room for [`PENDING_PER_CONNECTOR`] frames waiting for a worker, within [`PENDING_BYTES`] in
//! all, and when the workers fall behind its oldest waiting frame is dropped for the newest
//! (latest wins), and reported.
//! Without an output directory only the checksum is computed (no PNG encoding).

use drivers::framebuffer::PixelFormat;
use drivers::xen::displif::{
    format_bpp, fourcc_name, FOURCC_ARGB1555, FOURCC_ARGB4444, FOURCC_ARGB8888, FOURCC_RGB565,
    FOURCC_RGB888, FOURCC_XRGB1555, FOURCC_XRGB4444, FOURCC_XRGB8888, FOURCC_YUYV,
};
use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where a framebuffer's pixels are in its display buffer: its size, the buffer's pitch and
/// the DRM FOURCC of its pixels (one of `drivers::xen::displif::FRONTEND_FORMATS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    width: u32,
    height: u32,
    pitch: usize,
    fourcc: u32,
}

impl FrameLayout {
    /// A layout of `width` x `height` pixels of `fourcc` whose rows start `pitch` bytes apart
    /// (from the buffer's first byte); fails for an empty frame, an unknown format, a pitch
    /// shorter than a row, an odd YUYV width or a size that does not fit `usize`.
    pub fn new(width: u32, height: u32, pitch: usize, fourcc: u32) -> Result<Self, String> {
        let name: String = fourcc_name(fourcc).iter().collect();
        let bpp = format_bpp(fourcc)
            .ok_or_else(|| format!("pixel format {fourcc:#010x} ({name}) is not captured"))?;
        if width == 0 || height == 0 {
            return Err(format!("empty frame {width}x{height}"));
        }
        if fourcc == FOURCC_YUYV && !width.is_multiple_of(2) {
            return Err(format!("YUYV frame of odd width {width}"));
        }
        let row = (width as usize)
            .checked_mul(bpp as usize / 8)
            .ok_or_else(|| format!("a row of {width} pixels is too long"))?;
        if pitch < row {
            return Err(format!(
                "pitch of {pitch} bytes is shorter than a row of {row} bytes"
            ));
        }
        pitch
            .checked_mul(height as usize)
            .ok_or_else(|| format!("{height} rows of {pitch} bytes are too many"))?;
        Ok(FrameLayout {
            width,
            height,
            pitch,
            fourcc,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from one row to the next.
    pub fn pitch(&self) -> usize {
        self.pitch
    }

    /// The DRM FOURCC.
    pub fn fourcc(&self) -> u32 {
        self.fourcc
    }

    /// Bytes of pixels in a row.
    pub fn row_bytes(&self) -> usize {
        self.width as usize * format_bpp(self.fourcc).unwrap_or(0) as usize / 8
    }

    /// Bytes the frame spans in its buffer: `pitch * height`.
    pub fn size_bytes(&self) -> usize {
        self.pitch * self.height as usize
    }

    /// Appends the frame in `bytes` (at least [`FrameLayout::size_bytes`] of them, or the
    /// last row's end) as packed 8-bit R, G, B triples, row by row. Alpha is dropped (a
    /// display scans the primary plane out opaque); channels narrower than 8 bits are scaled
    /// to 0..=255 with rounding (as embedded-graphics widens RGB565, so the guest's goldens
    /// match); YUYV is BT.601 limited range, the DRM default.
    pub fn write_rgb8(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let needed = self.pitch * (self.height as usize - 1) + self.row_bytes();
        if bytes.len() < needed {
            return Err(format!(
                "the copy of {} bytes is shorter than the {needed} bytes of the frame",
                bytes.len()
            ));
        }
        out.reserve(self.width as usize * self.height as usize * 3);
        for y in 0..self.height as usize {
            let start = y * self.pitch;
            let row = &bytes[start..start + self.row_bytes()];
            write_row(self.fourcc, row, out);
        }
        Ok(())
    }
}

/// A channel of `bits` bits widened to 8, rounding: `value * 255 / max`.
fn widen(value: u32, bits: u32) -> u8 {
    let max = (1u32 << bits) - 1;
    ((value * 255 + max / 2) / max) as u8
}

/// One YUV sample (BT.601, limited range) as RGB.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = i32::from(y) - 16;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |value: i32| ((value + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(298 * c + 409 * e),
        clamp(298 * c - 100 * d - 208 * e),
        clamp(298 * c + 516 * d),
    ]
}

/// Converts one row of pixels of `fourcc` (exactly a row's bytes) to RGB8.
fn write_row(fourcc: u32, row: &[u8], out: &mut Vec<u8>) {
    let word16 = |pixel: &[u8]| u32::from(u16::from_le_bytes([pixel[0], pixel[1]]));
    match fourcc {
        FOURCC_XRGB8888 | FOURCC_ARGB8888 => {
            for pixel in row.chunks_exact(4) {
                out.extend_from_slice(&[pixel[2], pixel[1], pixel[0]]);
            }
        }
        FOURCC_RGB888 => {
            // [23:0] R:G:B little endian: bytes B, G, R.
            for pixel in row.chunks_exact(3) {
                out.extend_from_slice(&[pixel[2], pixel[1], pixel[0]]);
            }
        }
        FOURCC_RGB565 => {
            for pixel in row.chunks_exact(2) {
                let value = word16(pixel);
                out.extend_from_slice(&[
                    widen(value >> 11, 5),
                    widen((value >> 5) & 0x3f, 6),
                    widen(value & 0x1f, 5),
                ]);
            }
        }
        FOURCC_XRGB4444 | FOURCC_ARGB4444 => {
            for pixel in row.chunks_exact(2) {
                let value = word16(pixel);
                out.extend_from_slice(&[
                    widen((value >> 8) & 0xf, 4),
                    widen((value >> 4) & 0xf, 4),
                    widen(value & 0xf, 4),
                ]);
            }
        }
        FOURCC_XRGB1555 | FOURCC_ARGB1555 => {
            for pixel in row.chunks_exact(2) {
                let value = word16(pixel);
                out.extend_from_slice(&[
                    widen((value >> 10) & 0x1f, 5),
                    widen((value >> 5) & 0x1f, 5),
                    widen(value & 0x1f, 5),
                ]);
            }
        }
        FOURCC_YUYV => {
            for pair in row.chunks_exact(4) {
                let (y0, u, y1, v) = (pair[0], pair[1], pair[2], pair[3]);
                out.extend_from_slice(&yuv_to_rgb(y0, u, v));
                out.extend_from_slice(&yuv_to_rgb(y1, u, v));
            }
        }
        // FrameLayout::new admits no other format.
        _ => {}
    }
}

/// The [`FrameLayout`] of a frame drawn with `drivers::framebuffer` (the guest's formats).
pub fn layout_of(width: u32, height: u32, pitch: usize, format: PixelFormat) -> FrameLayout {
    let fourcc = match format {
        PixelFormat::Xrgb8888 => FOURCC_XRGB8888,
        PixelFormat::Rgb565 => FOURCC_RGB565,
    };
    FrameLayout {
        width,
        height,
        pitch,
        fourcc,
    }
}

/// A flipped frame, copied out of the display buffer.
pub struct CapturedFrame {
    /// The frontend's domain.
    pub domid: u32,
    /// The connector it was flipped on.
    pub connector: u32,
    /// Flips on that connector before this one.
    pub seq: u64,
    /// Its geometry in `bytes`.
    pub layout: FrameLayout,
    /// The buffer's bytes, at least `layout.size_bytes()`.
    pub bytes: Vec<u8>,
}

/// A frame as an image.
#[derive(Debug)]
pub struct Encoded {
    /// CRC-32 (IEEE) of the RGB8 bytes.
    pub crc32: u32,
    /// The PNG file's bytes.
    pub png: Vec<u8>,
}

/// The PNG file name of a frame.
pub fn file_name(domid: u32, connector: u32, seq: u64) -> String {
    format!("dom{domid}-conn{connector}-seq{seq}.png")
}

/// The console line of a frame: `frame conn=<N> seq=<K> crc32=<8 hex digits> dom=<D>
/// size=<W>x<H>`, then ` png=<file name>` when a file was written.
pub fn frame_line(frame: &CapturedFrame, crc32: u32, file: Option<&str>) -> String {
    let mut line = format!(
        "frame conn={} seq={} crc32={crc32:08x} dom={} size={}x{}",
        frame.connector,
        frame.seq,
        frame.domid,
        frame.layout.width(),
        frame.layout.height()
    );
    if let Some(file) = file {
        line.push_str(" png=");
        line.push_str(file);
    }
    line
}

/// The CRC-32 (IEEE) of a frame's RGB8 rows.
pub fn checksum(frame: &CapturedFrame) -> Result<u32, String> {
    Ok(crc32fast::hash(&rgb8(frame)?))
}

/// The RGB8 rows of a frame.
pub fn rgb8(frame: &CapturedFrame) -> Result<Vec<u8>, String> {
    let mut rgb = Vec::new();
    frame.layout.write_rgb8(&frame.bytes, &mut rgb)?;
    Ok(rgb)
}

/// Encodes a frame as an 8-bit RGB PNG (fast compression: the scenes are mostly flat colors)
/// and its checksum.
pub fn encode(frame: &CapturedFrame) -> Result<Encoded, String> {
    let rgb = rgb8(frame)?;
    let crc32 = crc32fast::hash(&rgb);
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, frame.layout.width(), frame.layout.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder
        .write_header()
        .map_err(|error| format!("PNG header: {error}"))?;
    writer
        .write_image_data(&rgb)
        .map_err(|error| format!("PNG data: {error}"))?;
    writer
        .finish()
        .map_err(|error| format!("PNG end: {error}"))?;
    Ok(Encoded { crc32, png })
}

/// Encodes one frame, writes its file into `dir` (if any) and returns the console line and,
/// on failure, the error line.
pub fn process(frame: &CapturedFrame, dir: Option<&Path>) -> (Option<String>, Option<String>) {
    let name = file_name(frame.domid, frame.connector, frame.seq);
    let Some(dir) = dir else {
        return match checksum(frame) {
            Ok(crc32) => (Some(frame_line(frame, crc32, None)), None),
            Err(error) => (
                None,
                Some(format!("vdispl-backend: cannot read frame {name}: {error}")),
            ),
        };
    };
    let encoded = match encode(frame) {
        Ok(encoded) => encoded,
        Err(error) => {
            return (
                None,
                Some(format!("vdispl-backend: cannot encode {name}: {error}")),
            )
        }
    };
    let path = dir.join(&name);
    match fs::write(&path, &encoded.png) {
        Ok(()) => (Some(frame_line(frame, encoded.crc32, Some(&name))), None),
        Err(error) => (
            Some(frame_line(frame, encoded.crc32, None)),
            Some(format!(
                "vdispl-backend: cannot write {}: {error}",
                path.display()
            )),
        ),
    }
}

/// What the workers did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Frames encoded.
    pub frames: u64,
    /// PNG files written.
    pub files: u64,
    /// Frames that could not be encoded or written.
    pub failures: u64,
    /// Time spent on frames, all workers together.
    pub busy: Duration,
}

impl WriterStats {
    fn add(&mut self, other: &WriterStats) {
        self.frames += other.frames;
        self.files += other.files;
        self.failures += other.failures;
        self.busy += other.busy;
    }

    /// Mean time per frame, in milliseconds.
    pub fn mean_ms(&self) -> u64 {
        match u32::try_from(self.frames) {
            Ok(frames) if frames > 0 => (self.busy / frames).as_millis() as u64,
            _ => 0,
        }
    }
}

/// How much lower than the backend's the workers' priority is (nice increment).
pub const WORKER_NICENESS: libc::c_int = 10;

/// Frames of one connector that may wait for a worker. A connector that flips faster than
/// the workers write keeps its newest frames: the oldest waiting one makes room (latest wins).
/// Sixteen absorb a burst of flips (a short run of scenes flips far faster than the workers
/// encode under emulation) without losing a frame; [`PENDING_BYTES`] bounds the memory.
pub const PENDING_PER_CONNECTOR: usize = 16;

/// Bytes of frames that may wait for the workers in all: past it, a connector's oldest waiting
/// frame makes room for its newest (a connector with nothing waiting always gets one in, so the
/// total overshoots by at most one frame per connector). 96 MiB is about twelve 1920x1080
/// XRGB8888 frames, in a Dom0 of 512 MiB.
pub const PENDING_BYTES: usize = 96 << 20;

/// What [`FrameWriter::submit`] did with a frame. It never waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Queued; nothing was dropped.
    Queued,
    /// Queued; the connector's oldest waiting frame, `seq`, was dropped to make room (the
    /// workers are behind).
    Replaced {
        /// The dropped frame's sequence number.
        seq: u64,
    },
    /// Not queued: the workers are stopping or gone.
    Stopped,
}

/// Adds `frame` to `queue`, first dropping the oldest waiting frame of the same domain and
/// connector if `limit` of them wait already; returns the dropped frame's `seq`.
pub fn admit(
    queue: &mut VecDeque<CapturedFrame>,
    frame: CapturedFrame,
    limit: usize,
) -> Option<u64> {
    admit_within(queue, frame, limit, usize::MAX)
}

/// [`admit`], also dropping the connector's oldest waiting frame when the frames waiting would
/// take more than `budget` bytes with this one.
pub fn admit_within(
    queue: &mut VecDeque<CapturedFrame>,
    frame: CapturedFrame,
    limit: usize,
    budget: usize,
) -> Option<u64> {
    let same = |waiting: &CapturedFrame| {
        waiting.domid == frame.domid && waiting.connector == frame.connector
    };
    let waiting_bytes: usize = queue.iter().map(|waiting| waiting.bytes.len()).sum();
    let waiting_same = queue.iter().filter(|waiting| same(waiting)).count();
    let over_budget = waiting_bytes.saturating_add(frame.bytes.len()) > budget;
    let mut dropped = None;
    if waiting_same >= limit.max(1) || (over_budget && waiting_same > 0) {
        if let Some(oldest) = queue.iter().position(same) {
            dropped = queue.remove(oldest).map(|frame| frame.seq);
        }
    }
    queue.push_back(frame);
    dropped
}

/// The frames waiting for a worker and what the workers are doing.
#[derive(Default)]
struct Queue {
    frames: VecDeque<CapturedFrame>,
    /// No more frames come: workers leave once `frames` is empty.
    closed: bool,
    /// Workers that have not returned yet.
    running: usize,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a frame is queued or the queue is closed.
    work: Condvar,
    /// Signalled when a worker returns.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A worker that panicked while holding the lock leaves a queue that is still
        // consistent (it only pushes and pops whole frames).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Worker threads that encode frames and write their files, printing each frame's line.
/// The backend hands frames over with [`FrameWriter::submit`], which never waits: when the
/// workers fall behind, a connector's oldest waiting frame is dropped (and reported) instead.
pub struct FrameWriter {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<WriterStats>>,
}

impl FrameWriter {
    /// Starts `threads` workers (at least one) writing into `dir` (`None`: lines only).
    pub fn start(dir: Option<PathBuf>, threads: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let threads = threads.max(1);
        shared.lock().running = threads;
        let workers = (0..threads)
            .map(|_| {
                let shared = Arc::clone(&shared);
                let dir = dir.clone();
                thread::spawn(move || work(&shared, dir.as_deref()))
            })
            .collect();
        Self { shared, workers }
    }

    /// Queues a frame without waiting; see [`Submitted`].
    pub fn submit(&self, frame: CapturedFrame) -> Submitted {
        let mut queue = self.shared.lock();
        if queue.closed || queue.running == 0 {
            return Submitted::Stopped;
        }
        let dropped = admit_within(
            &mut queue.frames,
            frame,
            PENDING_PER_CONNECTOR,
            PENDING_BYTES,
        );
        drop(queue);
        self.shared.work.notify_one();
        match dropped {
            Some(seq) => Submitted::Replaced { seq },
            None => Submitted::Queued,
        }
    }

    /// Lets the workers finish what is queued, then stops them; `None` if they are not done
    /// within `timeout` (they are left running).
    pub fn finish_within(mut self, timeout: Duration) -> Option<WriterStats> {
        let queue = {
            let mut queue = self.shared.lock();
            queue.closed = true;
            queue
        };
        self.shared.work.notify_all();
        let (queue, _) = self
            .shared
            .done
            .wait_timeout_while(queue, timeout, |queue| queue.running > 0)
            .unwrap_or_else(PoisonError::into_inner);
        if queue.running > 0 {
            return None;
        }
        drop(queue);
        let mut total = WriterStats::default();
        for worker in self.workers.drain(..) {
            if let Ok(stats) = worker.join() {
                total.add(&stats);
            }
        }
        Some(total)
    }
}

/// Counts a worker out when it returns, also by a panic.
struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.running = queue.running.saturating_sub(1);
        drop(queue);
        self.0.done.notify_all();
    }
}

fn work(shared: &Shared, dir: Option<&Path>) -> WriterStats {
    let _running = Running(shared);
    lower_priority();
    let mut stats = WriterStats::default();
    loop {
        // The lock is held only while taking a frame, not while encoding it.
        let frame = {
            let mut queue = shared.lock();
            loop {
                if let Some(frame) = queue.frames.pop_front() {
                    break Some(frame);
                }
                if queue.closed {
                    break None;
                }
                queue = shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some(frame) = frame else {
            break;
        };
        let started = Instant::now();
        let (line, error) = process(&frame, dir);
        stats.busy += started.elapsed();
        stats.frames += 1;
        if error.is_some() {
            stats.failures += 1;
        } else if dir.is_some() {
            stats.files += 1;
        }
        if let Some(error) = error {
            eprintln_line!("{error}");
        }
        if let Some(line) = line {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
    stats
}

/// Lowers the calling thread's priority by [`WORKER_NICENESS`] (on Linux the nice value is a
/// thread's); failing that, the thread keeps its priority.
fn lower_priority() {
    // SAFETY: gettid(2) takes no arguments and only returns the calling thread's id.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    if let Ok(tid) = libc::id_t::try_from(tid) {
        // SAFETY: setpriority(2) on our own thread id with a plain value; it changes only the
        // scheduling priority.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, WORKER_NICENESS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::framebuffer::{FrameView, Layout};

    /// A 3x2 XRGB8888 frame with a padded stride: red, green, blue / white, black, grey.
    fn frame() -> CapturedFrame {
        let layout = FrameLayout::new(3, 2, 16, FOURCC_XRGB8888).unwrap();
        let pixels: [[u32; 4]; 2] = [
            [0x00ff_0000, 0x0000_ff00, 0x0000_00ff, 0xdead_beef],
            [0x00ff_ffff, 0x0000_0000, 0x0080_8080, 0xdead_beef],
        ];
        let bytes = pixels
            .iter()
            .flatten()
            .flat_map(|pixel| pixel.to_le_bytes())
            .collect();
        CapturedFrame {
            domid: 4,
            connector: 1,
            seq: 12,
            layout,
            bytes,
        }
    }

    #[test]
    fn without_a_directory_only_the_checksum_is_taken() {
        let frame = frame();
        let (line, error) = process(&frame, None);
        assert_eq!(error, None);
        let crc32 = checksum(&frame).unwrap();
        assert_eq!(crc32, encode(&frame).unwrap().crc32);
        assert_eq!(
            line.unwrap(),
            format!("frame conn=1 seq=12 crc32={crc32:08x} dom=4 size=3x2")
        );
        let stats = WriterStats {
            frames: 4,
            busy: Duration::from_millis(100),
            ..WriterStats::default()
        };
        assert_eq!(stats.mean_ms(), 25);
        assert_eq!(WriterStats::default().mean_ms(), 0);
    }

    #[test]
    fn names_and_lines_follow_the_rig() {
        assert_eq!(file_name(4, 1, 12), "dom4-conn1-seq12.png");
        let frame = frame();
        assert_eq!(
            frame_line(&frame, 0x0012_abcd, Some("dom4-conn1-seq12.png")),
            "frame conn=1 seq=12 crc32=0012abcd dom=4 size=3x2 png=dom4-conn1-seq12.png"
        );
        assert_eq!(
            frame_line(&frame, 1, None),
            "frame conn=1 seq=12 crc32=00000001 dom=4 size=3x2"
        );
    }

    #[test]
    fn the_png_holds_the_pixels_and_the_crc_covers_them() {
        let frame = frame();
        let rgb = rgb8(&frame).unwrap();
        assert_eq!(
            rgb,
            [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 128, 128, 128]
        );
        let encoded = encode(&frame).unwrap();
        assert_eq!(encoded.crc32, crc32fast::hash(&rgb));
        let mut reader = png::Decoder::new(std::io::Cursor::new(&encoded.png))
            .read_info()
            .unwrap();
        let mut decoded = vec![0u8; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut decoded).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&decoded[..info.buffer_size()], rgb.as_slice());
    }

    #[test]
    fn a_short_copy_is_an_error_not_a_panic() {
        let mut frame = frame();
        frame.bytes.truncate(20);
        assert!(encode(&frame).unwrap_err().contains("shorter"));
        let (line, error) = process(&frame, None);
        assert_eq!(line, None);
        assert!(error
            .unwrap()
            .starts_with("vdispl-backend: cannot read frame dom4-conn1-seq12.png"));
        let (line, error) = process(&frame, Some(Path::new("/nonexistent")));
        assert_eq!(line, None);
        assert!(error
            .unwrap()
            .starts_with("vdispl-backend: cannot encode dom4-conn1-seq12.png"));
    }

    #[test]
    fn workers_write_every_queued_frame_before_finishing() {
        let dir = std::env::temp_dir().join(format!("vdispl-capture-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let writer = FrameWriter::start(Some(dir.clone()), 2);
        for seq in 0..6 {
            let mut next = frame();
            next.seq = seq;
            // A connector each, so that no frame has to make room for another.
            next.connector = seq as u32;
            assert_eq!(writer.submit(next), Submitted::Queued);
        }
        let stats = writer.finish_within(Duration::from_secs(10)).unwrap();
        assert_eq!((stats.frames, stats.files, stats.failures), (6, 6, 0));
        for seq in 0..6 {
            assert!(dir.join(file_name(4, seq as u32, seq)).is_file());
        }
        let unwritable = FrameWriter::start(Some(dir.join("missing")), 1);
        assert_eq!(unwritable.submit(frame()), Submitted::Queued);
        let stats = unwritable.finish_within(Duration::from_secs(10)).unwrap();
        assert_eq!(stats.failures, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn numbered(domid: u32, connector: u32, seq: u64) -> CapturedFrame {
        CapturedFrame {
            domid,
            connector,
            seq,
            ..frame()
        }
    }

    fn seqs(queue: &VecDeque<CapturedFrame>) -> Vec<(u32, u32, u64)> {
        queue
            .iter()
            .map(|frame| (frame.domid, frame.connector, frame.seq))
            .collect()
    }

    #[test]
    fn a_connector_behind_keeps_its_newest_frames_and_leaves_the_others_alone() {
        let mut queue = VecDeque::new();
        assert_eq!(admit(&mut queue, numbered(4, 0, 0), 2), None);
        assert_eq!(admit(&mut queue, numbered(4, 1, 0), 2), None);
        assert_eq!(admit(&mut queue, numbered(4, 0, 1), 2), None);
        // Connector 0 has two waiting: its oldest makes room, connector 1's stays.
        assert_eq!(admit(&mut queue, numbered(4, 0, 2), 2), Some(0));
        assert_eq!(seqs(&queue), [(4, 1, 0), (4, 0, 1), (4, 0, 2)]);
        // The same connector number of another domain is another connector.
        assert_eq!(admit(&mut queue, numbered(5, 0, 0), 2), None);
        assert_eq!(admit(&mut queue, numbered(4, 0, 3), 2), Some(1));
        assert_eq!(seqs(&queue), [(4, 1, 0), (4, 0, 2), (5, 0, 0), (4, 0, 3)]);
        // A limit of one is a latest-wins slot (zero counts as one).
        let mut slot = VecDeque::new();
        assert_eq!(admit(&mut slot, numbered(4, 0, 7), 0), None);
        assert_eq!(admit(&mut slot, numbered(4, 0, 8), 1), Some(7));
        assert_eq!(seqs(&slot), [(4, 0, 8)]);
    }

    #[test]
    fn the_byte_budget_makes_a_connector_drop_its_oldest_but_always_admits_one() {
        let sized = |connector, seq| CapturedFrame {
            bytes: vec![0; 100],
            ..numbered(4, connector, seq)
        };
        let mut queue = VecDeque::new();
        assert_eq!(admit_within(&mut queue, sized(0, 0), 16, 250), None);
        assert_eq!(admit_within(&mut queue, sized(0, 1), 16, 250), None);
        // 300 bytes would wait: connector 0's oldest gives way.
        assert_eq!(admit_within(&mut queue, sized(0, 2), 16, 250), Some(0));
        // Connector 1 has nothing waiting: it gets its frame in over the budget.
        assert_eq!(admit_within(&mut queue, sized(1, 0), 16, 250), None);
        assert_eq!(seqs(&queue), [(4, 0, 1), (4, 0, 2), (4, 1, 0)]);
        // Within the budget nothing is dropped below the count limit.
        let mut roomy = VecDeque::new();
        for seq in 0..16 {
            assert_eq!(admit_within(&mut roomy, sized(0, seq), 16, 1 << 20), None);
        }
        assert_eq!(admit_within(&mut roomy, sized(0, 16), 16, 1 << 20), Some(0));
    }

    #[test]
    fn submitting_never_waits_for_the_workers_and_every_frame_is_written_or_reported() {
        // One worker and forty frames of one connector handed over in a row: submit returns
        // at once whatever the worker does, and each frame is either written or named as
        // dropped; the newest is always written.
        let dir = std::env::temp_dir().join(format!("vdispl-latest-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let writer = FrameWriter::start(Some(dir.clone()), 1);
        let mut dropped = Vec::new();
        for seq in 0..40 {
            match writer.submit(numbered(4, 1, seq)) {
                Submitted::Queued => {}
                Submitted::Replaced { seq: old } => {
                    assert!(old < seq);
                    dropped.push(old);
                }
                Submitted::Stopped => panic!("the workers stopped"),
            }
        }
        let stats = writer.finish_within(Duration::from_secs(60)).unwrap();
        assert_eq!(stats.frames + dropped.len() as u64, 40);
        assert_eq!(stats.files, stats.frames);
        for seq in 0..40 {
            let written = dir.join(file_name(4, 1, seq)).is_file();
            assert_eq!(written, !dropped.contains(&seq), "seq {seq}");
        }
        assert!(dir.join(file_name(4, 1, 39)).is_file());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stopped_writer_takes_no_frames() {
        let writer = FrameWriter::start(None, 2);
        writer.shared.lock().closed = true;
        assert_eq!(writer.submit(frame()), Submitted::Stopped);
        let stats = writer.finish_within(Duration::from_secs(10)).unwrap();
        assert_eq!(stats.frames, 0);
    }

    /// Converts `bytes` as a `width` x `height` frame of `fourcc` at `pitch`.
    fn convert(fourcc: &[u8; 4], width: u32, height: u32, pitch: usize, bytes: &[u8]) -> Vec<u8> {
        let layout = FrameLayout::new(width, height, pitch, u32::from_le_bytes(*fourcc)).unwrap();
        let mut rgb = Vec::new();
        layout.write_rgb8(bytes, &mut rgb).unwrap();
        rgb
    }

    const RED: [u8; 3] = [255, 0, 0];
    const GREEN: [u8; 3] = [0, 255, 0];
    const BLUE: [u8; 3] = [0, 0, 255];
    const WHITE: [u8; 3] = [255, 255, 255];

    /// Known pixels of every format Linux's xen-drm-front offers, laid out as drm_fourcc.h
    /// describes each (little endian words, the channels' bit positions), give their colours.
    #[test]
    fn every_format_linux_offers_is_captured_with_its_colours() {
        let expected: Vec<u8> = [RED, GREEN, BLUE, WHITE].concat();
        let words16 =
            |words: [u16; 4]| -> Vec<u8> { words.iter().flat_map(|w| w.to_le_bytes()).collect() };
        let words32 =
            |words: [u32; 4]| -> Vec<u8> { words.iter().flat_map(|w| w.to_le_bytes()).collect() };
        // [31:0] x:R:G:B 8:8:8:8 / A:R:G:B; alpha is dropped.
        let xrgb = words32([0x00ff_0000, 0x0000_ff00, 0x0000_00ff, 0x00ff_ffff]);
        assert_eq!(convert(b"XR24", 4, 1, 16, &xrgb), expected);
        let argb = words32([0x80ff_0000, 0xff00_ff00, 0x0000_00ff, 0x12ff_ffff]);
        assert_eq!(convert(b"AR24", 4, 1, 16, &argb), expected);
        // [23:0] R:G:B little endian: B, G, R in memory.
        let rgb888 = [0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255];
        assert_eq!(convert(b"RG24", 4, 1, 12, &rgb888), expected);
        // [15:0] R:G:B 5:6:5.
        let rgb565 = words16([0xf800, 0x07e0, 0x001f, 0xffff]);
        assert_eq!(convert(b"RG16", 4, 1, 8, &rgb565), expected);
        // [15:0] x:R:G:B 4:4:4:4 and A:R:G:B.
        let xrgb4444 = words16([0x0f00, 0x00f0, 0x000f, 0x0fff]);
        assert_eq!(convert(b"XR12", 4, 1, 8, &xrgb4444), expected);
        let argb4444 = words16([0xff00, 0x70f0, 0x000f, 0xffff]);
        assert_eq!(convert(b"AR12", 4, 1, 8, &argb4444), expected);
        // [15:0] x:R:G:B 1:5:5:5 and A:R:G:B.
        let xrgb1555 = words16([0x7c00, 0x03e0, 0x001f, 0x7fff]);
        assert_eq!(convert(b"XR15", 4, 1, 8, &xrgb1555), expected);
        let argb1555 = words16([0xfc00, 0x03e0, 0x801f, 0xffff]);
        assert_eq!(convert(b"AR15", 4, 1, 8, &argb1555), expected);
        // Mid-scale channels round: 0x10 of 0x1f is 132, 0x8 of 0xf is 136.
        assert_eq!(
            convert(b"XR15", 1, 1, 2, &0x4210u16.to_le_bytes()),
            [132, 132, 132]
        );
        assert_eq!(
            convert(b"XR12", 1, 1, 2, &0x0888u16.to_le_bytes()),
            [136, 136, 136]
        );
        // [31:0] Cr0:Y1:Cb0:Y0 8:8:8:8 little endian: Y0, U, Y1, V in memory; BT.601
        // limited range: Y 235 is white, Y 16 black, Y 126 mid grey.
        assert_eq!(
            convert(b"YUYV", 4, 1, 8, &[235, 128, 16, 128, 126, 128, 235, 128]),
            [WHITE, [0, 0, 0], [128, 128, 128], WHITE].concat()
        );
        // Colours within one step of the BT.601 equations in floating point.
        for (y, u, v) in [
            (81u8, 90u8, 240u8),
            (145, 54, 34),
            (41, 240, 110),
            (170, 166, 16),
        ] {
            let rgb = convert(b"YUYV", 2, 1, 4, &[y, u, y, v]);
            let (c, d, e) = (
                f64::from(y) - 16.0,
                f64::from(u) - 128.0,
                f64::from(v) - 128.0,
            );
            let reference = [
                1.164 * c + 1.596 * e,
                1.164 * c - 0.392 * d - 0.813 * e,
                1.164 * c + 2.017 * d,
            ]
            .map(|channel| channel.round().clamp(0.0, 255.0));
            for (got, want) in rgb[..3].iter().zip(reference) {
                assert!(
                    (f64::from(*got) - want).abs() <= 1.0,
                    "{y} {u} {v}: {rgb:?}"
                );
            }
            assert_eq!(rgb[..3], rgb[3..]);
        }
    }

    #[test]
    fn rgb565_is_widened_exactly_as_the_guests_goldens_are() {
        let layout = Layout::new(1, 1, 4, PixelFormat::Rgb565).unwrap();
        for value in 0..=u16::MAX {
            let bytes = [value.to_le_bytes()[0], value.to_le_bytes()[1], 0, 0];
            let mut golden = Vec::new();
            FrameView::new(&bytes, layout)
                .unwrap()
                .write_rgb8(&mut golden);
            assert_eq!(convert(b"RG16", 1, 1, 4, &bytes), golden, "{value:#06x}");
        }
    }

    #[test]
    fn rows_are_read_at_the_buffers_real_pitch() {
        // RGB565, 3 pixels a row, Linux's pitch of 6 bytes (not a multiple of 4): red, green,
        // blue / blue, green, red.
        let rows: Vec<u8> = [0xf800u16, 0x07e0, 0x001f, 0x001f, 0x07e0, 0xf800]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(
            convert(b"RG16", 3, 2, 6, &rows),
            [RED, GREEN, BLUE, BLUE, GREEN, RED].concat()
        );
        // The same with 4 padding bytes after each row.
        let padded: Vec<u8> = rows
            .chunks(6)
            .flat_map(|row| [row, &[0xaa; 4]].concat())
            .collect();
        assert_eq!(
            convert(b"RG16", 3, 2, 10, &padded),
            [RED, GREEN, BLUE, BLUE, GREEN, RED].concat()
        );
        // The last row needs no padding after it; one byte less is an error.
        let layout = FrameLayout::new(3, 2, 10, FOURCC_RGB565).unwrap();
        assert_eq!(layout.size_bytes(), 20);
        let mut rgb = Vec::new();
        assert!(layout.write_rgb8(&padded[..16], &mut rgb).is_ok());
        assert!(layout
            .write_rgb8(&padded[..15], &mut rgb)
            .unwrap_err()
            .contains("shorter"));
        assert!(FrameLayout::new(3, 2, 5, FOURCC_RGB565)
            .unwrap_err()
            .contains("shorter"));
        assert!(FrameLayout::new(3, 2, 6, FOURCC_YUYV)
            .unwrap_err()
            .contains("odd"));
        assert!(FrameLayout::new(3, 2, 12, u32::from_le_bytes(*b"NV12")).is_err());
        assert_eq!(
            layout_of(3, 2, 8, PixelFormat::Rgb565),
            FrameLayout::new(3, 2, 8, FOURCC_RGB565).unwrap()
        );
    }
}
