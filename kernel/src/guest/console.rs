//! The console: every line goes to the PV console ring (read by xenconsoled
//! in Dom0), to the vpl011 UART when the domain has one, and to Xen's own
//! console (`CONSOLEIO_write`) when neither exists.

use super::xen::Xen;
use core::fmt::{self, Write};
use drivers::uart::pl011::{Pl011, Registers};
use drivers::xen::console::ConsoleInterface;
use drivers::xen::hypercall;
use spin::Mutex;

/// How long a writer waits for xenconsoled to make room in a full PV ring
/// before it drops the rest of its text (and counts it).
const FULL_RING_TIMEOUT_NS: u64 = 2_000_000_000;
/// Before event channels work, how many times a writer yields to Dom0
/// instead.
const FULL_RING_YIELDS: u32 = 10_000;

struct PvConsole {
    ring: &'static ConsoleInterface,
    evtchn: u32,
}

struct Console {
    pv: Option<PvConsole>,
    uart: Option<Pl011<'static>>,
    dropped: u64,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    pv: None,
    uart: None,
    dropped: 0,
});

impl Console {
    fn write_pv(pv: &PvConsole, mut bytes: &[u8]) -> u64 {
        let mut yields = 0;
        let mut deadline = None;
        while !bytes.is_empty() {
            let taken = pv.ring.write(bytes);
            bytes = &bytes[taken..];
            if taken > 0 {
                // A failed notification only delays output until the next one.
                let _ = drivers::xen::evtchn::send(&Xen, pv.evtchn);
                continue;
            }
            // Full: xenconsoled notifies the port when it has taken output.
            if let Some(events) = super::services::events() {
                let deadline =
                    *deadline.get_or_insert(super::time::now_ns() + FULL_RING_TIMEOUT_NS);
                let room = super::time::wait_until(deadline, || {
                    events.take(pv.evtchn);
                    pv.ring.free_space() > 0
                });
                if !room {
                    return bytes.len() as u64;
                }
                continue;
            }
            yields += 1;
            if yields > FULL_RING_YIELDS {
                return bytes.len() as u64;
            }
            hypercall::sched_yield(&Xen);
        }
        0
    }
}

impl Console {
    fn write_bytes(&mut self, bytes: &[u8]) {
        if let Some(pv) = &self.pv {
            self.dropped += Console::write_pv(pv, bytes);
        }
        if let Some(uart) = &mut self.uart {
            uart.write(bytes);
        }
        if self.pv.is_none() && self.uart.is_none() {
            // Refused (EPERM) by release builds of Xen for toolstack-created
            // domains; nothing else is left to try.
            let _ = hypercall::console_io_write(&Xen, bytes);
        }
    }
}

/// Bytes of formatted text collected before they go to the consoles.
const CHUNK: usize = 256;

/// Formatted text on its way to the consoles, [`CHUNK`] bytes at a time: a
/// line reaches the PV console in one piece with one notification, not
/// fragment by fragment between the UART's byte-by-byte writes.
struct Chunked<'a> {
    console: &'a mut Console,
    buffer: [u8; CHUNK],
    len: usize,
}

impl Chunked<'_> {
    fn flush(&mut self) {
        if self.len > 0 {
            self.console.write_bytes(&self.buffer[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for Chunked<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        if self.len + bytes.len() > CHUNK {
            self.flush();
        }
        if bytes.len() > CHUNK {
            self.console.write_bytes(bytes);
        } else {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

/// Writes `args` to `console` through a [`Chunked`] buffer.
fn write_chunked(console: &mut Console, args: fmt::Arguments<'_>) {
    let mut chunked = Chunked {
        console,
        buffer: [0; CHUNK],
        len: 0,
    };
    let _ = chunked.write_fmt(args);
    chunked.flush();
}

/// Starts using the PV console ring at `ring` with event channel `evtchn`.
pub fn attach_pv(ring: &'static ConsoleInterface, evtchn: u32) {
    CONSOLE.lock().pv = Some(PvConsole { ring, evtchn });
}

/// Starts using the UART whose registers are `registers`.
pub fn attach_uart(registers: &'static Registers) {
    CONSOLE.lock().uart = Some(Pl011::new(registers));
}

/// Bytes dropped so far because a console stayed full.
pub fn dropped_bytes() -> u64 {
    let console = CONSOLE.lock();
    console.dropped + console.uart.as_ref().map_or(0, Pl011::dropped)
}

/// Prints formatted text on every console.
pub fn print(args: fmt::Arguments<'_>) {
    write_chunked(&mut CONSOLE.lock(), args);
}

/// Prints even if the console lock is held, for the panic and exception
/// paths, which never return to the interrupted holder.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    if CONSOLE.is_locked() {
        // SAFETY: the guest runs on one vCPU and this path never returns to
        // the code that holds the lock, so no one else can observe the
        // console while it is reused here.
        unsafe { CONSOLE.force_unlock() };
    }
    print(args);
}

/// `print!` to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::guest::console::print(format_args!($($arg)*)));
}

/// `println!` to the console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::guest::console::print(format_args!("{}\n", format_args!($($arg)*))));
}
