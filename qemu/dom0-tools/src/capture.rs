//! Captured frames: a flipped display buffer copied out of the frontend's pages becomes an
//! RGB8 image (`FrameView::write_rgb8`), a line `frame conn=<N> seq=<K> crc32=<hex> ...` on
//! the console (CRC-32 of the RGB8 bytes) and a PNG file `dom<D>-conn<N>-seq<K>.png`.
//!
//! Encoding and writing happen on worker threads ([`FrameWriter`]) of lower priority, so that
//! the workers never hold up the backend, the toolstack or xenstored (the copy itself is taken
//! by the copy threads of [`crate::frame_copy`]). Handing a frame over never waits: each connector has
//! room for [`PENDING_PER_CONNECTOR`] frames waiting for a worker, and when the workers fall
//! behind its oldest waiting frame is dropped for the newest (latest wins), and reported.
//! Without an output directory only the checksum is computed (no PNG encoding).

use drivers::framebuffer::{FrameView, Layout};
use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A flipped frame, copied out of the display buffer.
pub struct CapturedFrame {
    /// The frontend's domain.
    pub domid: u32,
    /// The connector it was flipped on.
    pub connector: u32,
    /// Flips on that connector before this one.
    pub seq: u64,
    /// Its geometry in `bytes`.
    pub layout: Layout,
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
    let view = FrameView::new(&frame.bytes, frame.layout).map_err(|error| error.to_string())?;
    let mut rgb = Vec::new();
    view.write_rgb8(&mut rgb);
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
/// Two absorb a short burst (one frame waiting while the previous one is written) without
/// losing a frame.
pub const PENDING_PER_CONNECTOR: usize = 2;

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
    let same = |waiting: &CapturedFrame| {
        waiting.domid == frame.domid && waiting.connector == frame.connector
    };
    let mut dropped = None;
    if queue.iter().filter(|waiting| same(waiting)).count() >= limit.max(1) {
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
        let dropped = admit(&mut queue.frames, frame, PENDING_PER_CONNECTOR);
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
            eprintln!("{error}");
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
    use drivers::framebuffer::PixelFormat;

    /// A 3x2 XRGB8888 frame with a padded stride: red, green, blue / white, black, grey.
    fn frame() -> CapturedFrame {
        let layout = Layout::new(3, 2, 16, PixelFormat::Xrgb8888).unwrap();
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
}
