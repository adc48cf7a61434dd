//! Captured frames: a flipped display buffer copied out of the frontend's pages becomes an
//! RGB8 image (`FrameView::write_rgb8`), a line `frame conn=<N> seq=<K> crc32=<hex> ...` on
//! the console (CRC-32 of the RGB8 bytes) and a PNG file `dom<D>-conn<N>-seq<K>.png`.
//!
//! Encoding and writing happen on worker threads ([`FrameWriter`]) of lower priority, so that
//! the backend answers the flip as soon as the copy is taken and the workers never hold up the
//! backend, the toolstack or xenstored; a bounded queue holds frames while they catch up.
//! Without an output directory only the checksum is computed (no PNG encoding).

use drivers::framebuffer::{FrameView, Layout};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Frames waiting for a worker before the backend itself waits (each holds a copy of a
/// display buffer).
pub const QUEUE_DEPTH: usize = 2;

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

/// Worker threads that encode frames and write their files, printing each frame's line.
pub struct FrameWriter {
    sender: Option<SyncSender<CapturedFrame>>,
    workers: Vec<JoinHandle<WriterStats>>,
}

impl FrameWriter {
    /// Starts `threads` workers (at least one) writing into `dir` (`None`: lines only).
    pub fn start(dir: Option<PathBuf>, threads: usize) -> Self {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_DEPTH);
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads.max(1))
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                let dir = dir.clone();
                thread::spawn(move || work(&receiver, dir.as_deref()))
            })
            .collect();
        Self {
            sender: Some(sender),
            workers,
        }
    }

    /// Queues a frame, waiting while [`QUEUE_DEPTH`] frames are queued, for `timeout` at
    /// most. False if the frame was not queued (timeout, or the workers are gone).
    pub fn submit_within(&self, frame: CapturedFrame, timeout: Duration) -> bool {
        let Some(sender) = &self.sender else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        let mut frame = frame;
        loop {
            match sender.try_send(frame) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    frame = back;
                    thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    /// Lets the workers finish what is queued, then stops them; `None` if they are not done
    /// within `timeout` (they are left running).
    pub fn finish_within(mut self, timeout: Duration) -> Option<WriterStats> {
        self.sender = None;
        let deadline = Instant::now() + timeout;
        while self.workers.iter().any(|worker| !worker.is_finished()) {
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let mut total = WriterStats::default();
        for worker in self.workers.drain(..) {
            if let Ok(stats) = worker.join() {
                total.add(&stats);
            }
        }
        Some(total)
    }
}

fn work(receiver: &Mutex<Receiver<CapturedFrame>>, dir: Option<&Path>) -> WriterStats {
    lower_priority();
    let mut stats = WriterStats::default();
    loop {
        // The lock is held only while taking a frame, not while encoding it.
        let next = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => break,
        };
        let Ok(frame) = next else {
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
            assert!(writer.submit_within(next, Duration::from_secs(10)));
        }
        let stats = writer.finish_within(Duration::from_secs(10)).unwrap();
        assert_eq!((stats.frames, stats.files, stats.failures), (6, 6, 0));
        for seq in 0..6 {
            assert!(dir.join(file_name(4, 1, seq)).is_file());
        }
        let unwritable = FrameWriter::start(Some(dir.join("missing")), 1);
        assert!(unwritable.submit_within(frame(), Duration::from_secs(10)));
        let stats = unwritable.finish_within(Duration::from_secs(10)).unwrap();
        assert_eq!(stats.failures, 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
