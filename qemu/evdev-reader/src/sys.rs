//! The reader's only unsafe code: the evdev ioctls it uses (include/uapi/linux/input.h, Linux
//! 6.1), `poll`, `mount`, loading a module (`finit_module`), `sync` and `reboot`, each wrapped in
//! a safe function. The request numbers are built as `_IOC` does on arm64 and x86-64.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// `_IOC_READ`.
const READ: u32 = 2;
/// `_IOC_WRITE`.
const WRITE: u32 = 1;

/// `_IOC(dir, 'E', nr, size)`.
const fn evdev_request(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((b'E' as u32) << 8) | nr
}

/// Bytes asked for a name or phys.
const TEXT_LEN: usize = 256;
/// Bytes of a key bitmap (`KEY_MAX / 8 + 1`).
const KEY_BITS_LEN: usize = 0x300 / 8;

/// `EVIOCGNAME(256)`.
const GET_NAME: u32 = evdev_request(READ, 0x06, TEXT_LEN);
/// `EVIOCGPHYS(256)`.
const GET_PHYS: u32 = evdev_request(READ, 0x07, TEXT_LEN);
/// `EVIOCGBIT(EV_KEY, 96)`.
const GET_KEY_BITS: u32 = evdev_request(READ, 0x20 + 1, KEY_BITS_LEN);
/// `EVIOCSCLOCKID`: `_IOW('E', 0xa0, int)`.
const SET_CLOCK: u32 = evdev_request(WRITE, 0xa0, size_of::<libc::c_int>());

/// An open evdev device.
pub struct Device {
    file: File,
}

/// Runs an ioctl that writes into `buffer` (whose length is the size the request encodes);
/// returns what the ioctl returned.
fn read_ioctl(file: &File, request: u32, buffer: &mut [u8]) -> io::Result<usize> {
    debug_assert_eq!((request >> 16) & 0x3fff, buffer.len() as u32);
    // SAFETY: `buffer` is a live, exclusively borrowed byte buffer exactly as long as the
    // size the request number encodes, so the kernel writes only inside it.
    let status = unsafe { libc::ioctl(file.as_raw_fd(), request as _, buffer.as_mut_ptr()) };
    usize::try_from(status).map_err(|_| io::Error::last_os_error())
}

impl Device {
    /// Opens a device read-only and non-blocking.
    pub fn open(path: &str) -> io::Result<Device> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Device { file })
    }

    /// The file, for reading events and polling.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn text(&self, request: u32) -> io::Result<String> {
        let mut buffer = [0u8; TEXT_LEN];
        let length = read_ioctl(&self.file, request, &mut buffer)?.min(TEXT_LEN);
        let text = &buffer[..length];
        let end = text
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(text.len());
        Ok(String::from_utf8_lossy(&text[..end]).into_owned())
    }

    /// `EVIOCGNAME`: the device's name.
    pub fn name(&self) -> io::Result<String> {
        self.text(GET_NAME)
    }

    /// `EVIOCGPHYS`: where the device is.
    pub fn phys(&self) -> io::Result<String> {
        self.text(GET_PHYS)
    }

    /// `EVIOCGBIT(EV_KEY)`: whether the device declares key `code`.
    pub fn has_key(&self, code: u16) -> io::Result<bool> {
        let mut bits = [0u8; KEY_BITS_LEN];
        read_ioctl(&self.file, GET_KEY_BITS, &mut bits)?;
        let byte = bits.get(usize::from(code / 8)).copied().unwrap_or(0);
        Ok(byte & (1 << (code % 8)) != 0)
    }

    /// `EVIOCSCLOCKID`: stamp events with clock `clock` (`CLOCK_MONOTONIC`: never set back).
    pub fn set_clock(&self, clock: libc::c_int) -> io::Result<()> {
        let value: libc::c_int = clock;
        // SAFETY: the request reads one `c_int` through the pointer, which points at `value`,
        // alive across the call.
        let status = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                SET_CLOCK as _,
                std::ptr::from_ref(&value),
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// poll(2) for input on `files`, at most `timeout`; which of them are readable (or have an
/// error or hang-up to read).
pub fn poll(files: &[&File], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut fds: Vec<libc::pollfd> = files
        .iter()
        .map(|file| libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll(2) on a vector of `fds.len()` pollfds this function owns, which the kernel
    // writes only the `revents` of.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(error);
    }
    Ok(fds
        .iter()
        .map(|fd| fd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
        .collect())
}

/// mount(2) without flags or data.
pub fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    let strings = [source, target, fstype].map(CString::new);
    let [Ok(source), Ok(target), Ok(fstype)] = strings else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: three NUL-terminated strings that live across the call, no data pointer.
    let status = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether loading a module found it there already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// Loaded now.
    Now,
    /// It was loaded (or built in) already.
    Already,
}

/// finit_module(2) of the module file at `path`, without parameters.
pub fn load_module(path: &str) -> io::Result<Loaded> {
    let file = File::open(path)?;
    let parameters = c"";
    // SAFETY: the fd is the open module file; the parameters are an empty NUL-terminated
    // string that lives across the call; flags 0.
    let status = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            parameters.as_ptr(),
            0,
        )
    };
    if status == 0 {
        return Ok(Loaded::Now);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EEXIST) => Ok(Loaded::Already),
        _ => Err(error),
    }
}

/// Flushes the file systems, then powers the domain off (reboot(2), LINUX_REBOOT_CMD_POWER_OFF);
/// returns only if that failed.
pub fn power_off() -> io::Error {
    // SAFETY: sync() and reboot() take no pointers; power-off ends this process with the
    // domain, which is what /init wants once it is done.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_are_those_of_linux_input_h() {
        // EVIOCGNAME(256), EVIOCGPHYS(256), EVIOCGBIT(EV_KEY, 96), EVIOCSCLOCKID.
        assert_eq!(GET_NAME, 0x8100_4506);
        assert_eq!(GET_PHYS, 0x8100_4507);
        assert_eq!(GET_KEY_BITS, 0x8060_4521);
        assert_eq!(SET_CLOCK, 0x4004_45a0);
    }
}
