//! Copies of shown frames, taken off the backend's ring thread: after a PG_FLIP is answered,
//! a copy thread ([`Copier`]) reads the framebuffer now shown out of its mapped display buffer
//! and hands the bytes back; the ring thread goes on serving every ring meanwhile.
//!
//! The tear-free rule (displif.h: the frontend does not write the shown buffer until the next
//! flip completes): the copy of frame n must be done before the answer to the connector's
//! next flip is published, since that answer lets the frontend draw into frame n's buffer
//! again. So the backend asks [`Copier::withdraw`] when flip n+1 comes: a copy that has not
//! started is dropped (frame n is not captured, and said so), a running one holds flip n+1's
//! answer until it is done ([`Copier::wake_fd`] becomes readable then).
//!
//! A copy shares its display buffer's mapping (`Arc<GrantMapping>`), so a DBUF_DESTROY or a
//! closed device never unmaps pages a copy reads: the last owner unmaps them. A copy checks
//! for [`Copier::cancel`] between chunks of [`COPY_CHUNK`] bytes, so a closed device's
//! buffers are unmapped within one chunk.

use crate::capture::CapturedFrame;
use crate::capture::FrameLayout;
use crate::grant_map::GrantMapping;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes a copy takes between two looks at its cancel flag.
pub const COPY_CHUNK: usize = 64 * 1024;

/// What to copy: a framebuffer in a mapped display buffer.
pub struct CopySource {
    /// The display buffer's pages, shared with the backend's table of buffers.
    pub mapping: Arc<GrantMapping>,
    /// The framebuffer's geometry in the buffer (from its first byte).
    pub layout: FrameLayout,
    /// The frontend's domain.
    pub domid: u32,
    /// The vdispl device.
    pub device: u32,
    /// The connector it was flipped on.
    pub connector: u32,
    /// Flips on that connector before this one.
    pub seq: u64,
}

/// A copy handed to the [`Copier`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(u64);

/// Where a copy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// It had not started; it is taken out and will not run (nor report).
    Withdrawn,
    /// A copy thread is reading the buffer now.
    Running,
    /// It is over: its mapping is let go and its [`Completed`] is waiting.
    Done,
}

/// How a copy ended.
pub enum CopyOutcome {
    /// The frame, copied.
    Copied(CapturedFrame),
    /// Stopped by [`Copier::cancel`] (its device was closed).
    Cancelled,
}

/// A copy that is over, for the ring thread.
pub struct Completed {
    /// Which copy.
    pub job: JobId,
    /// The frontend's domain.
    pub domid: u32,
    /// The vdispl device.
    pub device: u32,
    /// The connector.
    pub connector: u32,
    /// The frame's sequence number.
    pub seq: u64,
    /// The frame or why there is none.
    pub outcome: CopyOutcome,
    /// Time spent copying.
    pub took: Duration,
    /// The copy held the last reference to its buffer's mapping (the buffer was destroyed or
    /// its device closed meanwhile) and unmapped it: the error, if that failed.
    pub unmapped: Option<Result<(), String>>,
}

/// Runs before each chunk of a copy (job, chunk index): host tests stop a copy there to order
/// events without timing anything.
pub type Gate = Arc<dyn Fn(JobId, usize) + Send + Sync>;

struct Waiting {
    id: JobId,
    source: CopySource,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Copies being read now, with their cancel flags.
    running: BTreeMap<JobId, Arc<AtomicBool>>,
    closed: bool,
    next_id: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a copy is queued or the queue is closed.
    work: Condvar,
    /// Readable once a copy is over.
    wake: OwnedFd,
    /// None but in host tests.
    gate: Option<Gate>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue holds whole entries only; a thread that panicked leaves it consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the wake-up descriptor readable (eventfd: adds 1 to its counter).
    fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: write(2) of 8 bytes we own to the eventfd we own. A full counter (EAGAIN)
        // is readable already, which is all a signal is for.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

/// Copy threads (normal priority: a flip's answer may wait for them) and their queue.
pub struct Copier {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    completions: Receiver<Completed>,
}

impl Copier {
    /// Starts `threads` copy threads (at least one).
    pub fn start(threads: usize) -> io::Result<Self> {
        Self::start_inner(threads, None)
    }

    /// Starts copy threads that pass `gate` before each chunk.
    #[cfg(test)]
    pub fn start_gated(threads: usize, gate: Gate) -> io::Result<Self> {
        Self::start_inner(threads, Some(gate))
    }

    fn start_inner(threads: usize, gate: Option<Gate>) -> io::Result<Self> {
        // SAFETY: eventfd(2) with plain flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd(2) and nothing else owns it.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            work: Condvar::new(),
            wake,
            gate,
        });
        let (sender, completions) = mpsc::channel();
        let threads = (0..threads.max(1))
            .map(|_| {
                let shared = Arc::clone(&shared);
                let sender = sender.clone();
                thread::spawn(move || work(&shared, &sender))
            })
            .collect();
        Ok(Self {
            shared,
            threads,
            completions,
        })
    }

    /// Queues a copy; `None` once the copier is finishing.
    pub fn submit(&self, source: CopySource) -> Option<JobId> {
        let mut queue = self.shared.lock();
        if queue.closed {
            return None;
        }
        let id = JobId(queue.next_id);
        queue.next_id += 1;
        queue.waiting.push_back(Waiting { id, source });
        drop(queue);
        self.shared.work.notify_one();
        Some(id)
    }

    /// Takes a copy out if it has not started; says where it is.
    pub fn withdraw(&self, id: JobId) -> JobStatus {
        let mut queue = self.shared.lock();
        if let Some(position) = queue.waiting.iter().position(|job| job.id == id) {
            // Its share of the mapping goes here, on the caller's thread.
            drop(queue.waiting.remove(position));
            return JobStatus::Withdrawn;
        }
        if queue.running.contains_key(&id) {
            JobStatus::Running
        } else {
            JobStatus::Done
        }
    }

    /// Withdraws a copy, or tells a running one to stop at its next chunk (it then reports
    /// [`CopyOutcome::Cancelled`]); never waits.
    pub fn cancel(&self, id: JobId) -> JobStatus {
        let status = self.withdraw(id);
        if status == JobStatus::Running {
            if let Some(flag) = self.shared.lock().running.get(&id) {
                flag.store(true, Ordering::Release);
            }
        }
        status
    }

    /// Readable once a copy is over (then [`Copier::clear_wake`] and
    /// [`Copier::try_completed`]).
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.shared.wake.as_fd()
    }

    /// Makes [`Copier::wake_fd`] unreadable again (before taking completions, so that none is
    /// missed).
    pub fn clear_wake(&self) {
        let mut counter = [0u8; 8];
        // SAFETY: read(2) of 8 bytes into a buffer we own from the eventfd we own; EAGAIN
        // (nothing to clear) is fine.
        unsafe {
            libc::read(
                self.shared.wake.as_raw_fd(),
                counter.as_mut_ptr().cast(),
                counter.len(),
            )
        };
    }

    /// The next copy that is over, if any.
    pub fn try_completed(&self) -> Option<Completed> {
        self.completions.try_recv().ok()
    }

    /// Waits for the next copy that is over, and until it is [`JobStatus::Done`] (its
    /// completion is sent just before), as the backend's loop does: by the wake-up descriptor.
    #[cfg(test)]
    pub fn wait_completed(&self) -> Completed {
        let completed = self
            .completions
            .recv()
            .expect("copy threads are running while the copier lives");
        while self.shared.lock().running.contains_key(&completed.job) {
            let mut wake = libc::pollfd {
                fd: self.shared.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one pollfd we own, until it is readable.
            unsafe { libc::poll(&mut wake, 1, -1) };
            self.clear_wake();
        }
        completed
    }

    /// Lets the copy threads take what is queued (cancelled copies stop at their next chunk),
    /// waits for them, and returns the copies that were over.
    pub fn finish(mut self) -> Vec<Completed> {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.completions.try_iter().collect()
    }
}

/// Takes a copy off the running list when its thread is done with it, also by a panic, and
/// wakes the ring thread.
struct Over<'a> {
    shared: &'a Shared,
    id: JobId,
}

impl Drop for Over<'_> {
    fn drop(&mut self) {
        self.shared.lock().running.remove(&self.id);
        self.shared.signal();
    }
}

fn work(shared: &Shared, completions: &Sender<Completed>) {
    loop {
        let (job, cancel) = {
            let mut queue = shared.lock();
            loop {
                if let Some(job) = queue.waiting.pop_front() {
                    let cancel = Arc::new(AtomicBool::new(false));
                    queue.running.insert(job.id, Arc::clone(&cancel));
                    break (job, cancel);
                }
                if queue.closed {
                    return;
                }
                queue = shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let _over = Over { shared, id: job.id };
        let started = Instant::now();
        let bytes = copy_frame(&job.source, &cancel, |chunk| {
            if let Some(gate) = &shared.gate {
                gate(job.id, chunk);
            }
        });
        let took = started.elapsed();
        let CopySource {
            mapping,
            layout,
            domid,
            device,
            connector,
            seq,
        } = job.source;
        // Exactly one of the owners gets the mapping back, whichever thread lets go last.
        let unmapped = Arc::into_inner(mapping)
            .map(|mapping| mapping.unmap().map_err(|error| error.to_string()));
        let outcome = match bytes {
            Some(bytes) => CopyOutcome::Copied(CapturedFrame {
                domid,
                connector,
                seq,
                layout,
                bytes,
            }),
            None => CopyOutcome::Cancelled,
        };
        // The receiver lives as long as the copier, which joins this thread before it goes.
        let _ = completions.send(Completed {
            job: job.id,
            domid,
            device,
            connector,
            seq,
            outcome,
            took,
            unmapped,
        });
        // `_over` goes now: the copy is Done only once its mapping and completion are out.
    }
}

/// Copies the framebuffer chunk by chunk, calling `before_chunk` and then looking at `cancel`
/// before each; `None` if cancelled.
pub fn copy_frame(
    source: &CopySource,
    cancel: &AtomicBool,
    mut before_chunk: impl FnMut(usize),
) -> Option<Vec<u8>> {
    let len = source.layout.size_bytes();
    let mut bytes = Vec::with_capacity(len);
    for (chunk, offset) in (0..len).step_by(COPY_CHUNK).enumerate() {
        before_chunk(chunk);
        if cancel.load(Ordering::Acquire) {
            return None;
        }
        source
            .mapping
            .copy_range_into(offset, COPY_CHUNK.min(len - offset), &mut bytes);
    }
    Some(bytes)
}
