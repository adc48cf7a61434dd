//! A fake xenbus device for host tests: the byte stream Dom0's
//! `/dev/xen/xenbus` is, played by the fake xenstored ([`FakeXenstored`]).
//!
//! It keeps the rules of Linux's `xenbus_dev_frontend.c` that a client relies
//! on: a write may carry part of a message, and the device gathers the pieces;
//! whatever a write carries past the end of the message it completes is
//! dropped (counted in [`FakeXenbusDevice::dropped_bytes`], so that tests see
//! a client that packs two messages into one write); a read returns what has
//! arrived, replies and watch events interleaved, in pieces of any size. The
//! stream's own faults are scripted: writes and reads cut short
//! ([`FakeXenbusDevice::write_chunk`], [`FakeXenbusDevice::read_chunk`]), the
//! other end closing ([`FakeXenbusDevice::close`]) and an OS error on every
//! later read or write ([`FakeXenbusDevice::fail`]). The daemon's faults
//! (error replies, corrupt replies, events before replies) are its own: reach
//! it through [`FakeXenbusDevice::daemon`].

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::client::{Stream, Transport};
use super::fake::FakeXenstored;
use super::wire::{Fault, Header, HEADER_SIZE};

/// The fake device. See the module documentation.
pub struct FakeXenbusDevice {
    daemon: FakeXenstored,
    /// The message a write has begun and not finished yet.
    partial: Vec<u8>,
    /// Whole messages waiting to go into the daemon's ring.
    to_daemon: VecDeque<u8>,
    /// Takes at most this many bytes per write.
    pub write_chunk: Option<usize>,
    /// Returns at most this many bytes per read.
    pub read_chunk: Option<usize>,
    dropped: usize,
    closed: bool,
    failed: Option<i32>,
    writes: u64,
}

impl FakeXenbusDevice {
    /// A device in front of `daemon`.
    pub fn new(daemon: FakeXenstored) -> Self {
        FakeXenbusDevice {
            daemon,
            partial: Vec::new(),
            to_daemon: VecDeque::new(),
            write_chunk: None,
            read_chunk: None,
            dropped: 0,
            closed: false,
            failed: None,
            writes: 0,
        }
    }

    /// The daemon behind the device.
    pub fn daemon(&mut self) -> &mut FakeXenstored {
        &mut self.daemon
    }

    /// Bytes dropped because a write went on past the end of a message.
    pub fn dropped_bytes(&self) -> usize {
        self.dropped
    }

    /// How many writes the client made.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Ends the stream: reads see end of file once what was sent is read.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Makes every later read and write fail with `errno`.
    pub fn fail(&mut self, errno: i32) {
        self.failed = Some(errno);
    }

    /// Lets the daemon run one step (after handing it the whole messages
    /// written so far).
    pub fn step(&mut self) -> bool {
        self.flush();
        self.daemon.step()
    }

    /// Moves the whole messages written so far into the daemon's ring, as
    /// far as it has room.
    fn flush(&mut self) {
        while !self.to_daemon.is_empty() {
            let bytes = self.to_daemon.make_contiguous();
            match self.daemon.page().write_request(bytes) {
                Ok(0) | Err(_) => break,
                Ok(taken) => {
                    self.to_daemon.drain(..taken);
                }
            }
        }
    }

    /// The length of the message `partial` begins, once its header is in.
    fn message_length(&self) -> Option<usize> {
        let header: &[u8; HEADER_SIZE] = self.partial.first_chunk()?;
        Some(HEADER_SIZE + Header::from_bytes(header).len as usize)
    }
}

impl Stream for FakeXenbusDevice {
    fn send(&mut self, bytes: &[u8]) -> Result<usize, Fault> {
        if let Some(errno) = self.failed {
            return Err(Fault::StreamFailed { errno });
        }
        self.writes += 1;
        let count = bytes.len().min(self.write_chunk.unwrap_or(usize::MAX));
        let mut taken = &bytes[..count];
        // The header first, then as much of the payload as the message has.
        let header_left = HEADER_SIZE
            .saturating_sub(self.partial.len())
            .min(taken.len());
        self.partial.extend_from_slice(&taken[..header_left]);
        taken = &taken[header_left..];
        if let Some(length) = self.message_length() {
            let wanted = length.saturating_sub(self.partial.len()).min(taken.len());
            self.partial.extend_from_slice(&taken[..wanted]);
            self.dropped += taken.len() - wanted;
            if self.partial.len() == length {
                self.to_daemon.extend(self.partial.drain(..));
            }
        }
        Ok(count)
    }

    fn receive(&mut self, buffer: &mut [u8]) -> Result<usize, Fault> {
        if let Some(errno) = self.failed {
            return Err(Fault::StreamFailed { errno });
        }
        let limit = buffer.len().min(self.read_chunk.unwrap_or(usize::MAX));
        match self.daemon.page().read_response(&mut buffer[..limit]) {
            Ok(0) if self.closed => Err(Fault::StreamClosed),
            Ok(count) => Ok(count),
            Err(error) => Err(error.into()),
        }
    }

    fn notify(&mut self) {}

    fn wait(&mut self, deadline_ns: u64) {
        self.flush();
        Transport::wait(&mut self.daemon, deadline_ns);
        self.flush();
    }

    fn now_ns(&self) -> u64 {
        Transport::now_ns(&self.daemon)
    }

    fn given_up(&self) -> Option<Fault> {
        None
    }
}
