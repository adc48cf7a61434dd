//! `/dev/xen/evtchn`: event channels to other domains from Dom0 user space.
//!
//! Linux `include/uapi/xen/evtchn.h` (the ioctls and their structs) and
//! `drivers/xen/evtchn.c`. IOCTL_EVTCHN_BIND_INTERDOMAIN binds a local port to a port another
//! domain allocated unbound to us and returns the local port; IOCTL_EVTCHN_NOTIFY signals it;
//! IOCTL_EVTCHN_UNBIND closes it. read() returns the local ports that fired, as u32 each;
//! a port that fired stays masked until it is written back with write().

use crate::gntdev::{ioc, IOC_NONE};
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The device node (module `xen-evtchn`).
pub const DEVICE: &CStr = c"/dev/xen/evtchn";

/// `struct ioctl_evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindInterdomain {
    /// `remote_domain`.
    pub remote_domain: u32,
    /// `remote_port`: the port the other domain allocated unbound to us.
    pub remote_port: u32,
}

/// `struct ioctl_evtchn_unbind` and `struct ioctl_evtchn_notify` (both one port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// `port`: a local port.
    pub port: u32,
}

const _: () = assert!(size_of::<BindInterdomain>() == 8);
const _: () = assert!(size_of::<Port>() == 4);

/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`: `_IOC(_IOC_NONE, 'E', 1, sizeof(struct
/// ioctl_evtchn_bind_interdomain))`.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u32 = ioc(IOC_NONE, b'E', 1, size_of::<BindInterdomain>());
/// `IOCTL_EVTCHN_UNBIND`: `_IOC(_IOC_NONE, 'E', 3, sizeof(struct ioctl_evtchn_unbind))`.
pub const IOCTL_EVTCHN_UNBIND: u32 = ioc(IOC_NONE, b'E', 3, size_of::<Port>());
/// `IOCTL_EVTCHN_NOTIFY`: `_IOC(_IOC_NONE, 'E', 4, sizeof(struct ioctl_evtchn_notify))`.
pub const IOCTL_EVTCHN_NOTIFY: u32 = ioc(IOC_NONE, b'E', 4, size_of::<Port>());

/// The operation on the device that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// open() of [`DEVICE`].
    Open,
    /// IOCTL_EVTCHN_BIND_INTERDOMAIN.
    Bind {
        /// The other domain.
        domid: u32,
        /// Its port.
        remote_port: u32,
    },
    /// IOCTL_EVTCHN_NOTIFY.
    Notify(u32),
    /// IOCTL_EVTCHN_UNBIND.
    Unbind(u32),
    /// read() of the fired ports.
    Read,
    /// write() of ports to unmask.
    Unmask,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Open => f.write_str("open /dev/xen/evtchn"),
            Step::Bind { domid, remote_port } => write!(
                f,
                "bind port {remote_port} of domain {domid} (IOCTL_EVTCHN_BIND_INTERDOMAIN)"
            ),
            Step::Notify(port) => write!(f, "notify local port {port} (IOCTL_EVTCHN_NOTIFY)"),
            Step::Unbind(port) => write!(f, "unbind local port {port} (IOCTL_EVTCHN_UNBIND)"),
            Step::Read => f.write_str("read fired ports from /dev/xen/evtchn"),
            Step::Unmask => f.write_str("unmask ports (write to /dev/xen/evtchn)"),
        }
    }
}

/// A failed step and the error the kernel gave.
#[derive(Debug)]
pub struct Error {
    /// What was being done.
    pub step: Step,
    /// The OS error.
    pub source: io::Error,
}

impl Error {
    fn last(step: Step) -> Self {
        Self {
            step,
            source: io::Error::last_os_error(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}", self.step, self.source)?;
        if self.step == Step::Open && self.source.kind() == io::ErrorKind::NotFound {
            f.write_str(" (is this Dom0 with the xen-evtchn module loaded?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Decodes what read() returned: native-endian u32 ports (a trailing partial word is dropped).
pub fn decode_ports(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|word| u32::from_ne_bytes([word[0], word[1], word[2], word[3]]))
        .collect()
}

/// Encodes ports for write() (unmask).
pub fn encode_ports(ports: &[u32]) -> Vec<u8> {
    ports.iter().flat_map(|port| port.to_ne_bytes()).collect()
}

/// An open `/dev/xen/evtchn`, non-blocking. Closing it (drop) unbinds every port bound
/// through it.
#[derive(Debug)]
pub struct Evtchn {
    fd: OwnedFd,
}

impl Evtchn {
    /// Opens [`DEVICE`] (non-blocking reads).
    pub fn open() -> Result<Self, Error> {
        // SAFETY: open(2) with a NUL-terminated path and plain flags; it only returns a new
        // descriptor or -1.
        let fd = unsafe {
            libc::open(
                DEVICE.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Error::last(Step::Open));
        }
        // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// The descriptor, to poll for fired ports.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Binds `remote_port` of `domid` (allocated unbound to this domain); returns the local
    /// port.
    pub fn bind_interdomain(&self, domid: u32, remote_port: u32) -> Result<u32, Error> {
        let mut request = BindInterdomain {
            remote_domain: domid,
            remote_port,
        };
        // SAFETY: the argument is a live struct ioctl_evtchn_bind_interdomain laid out as the
        // header says (asserted above); the kernel only reads it.
        let port = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                IOCTL_EVTCHN_BIND_INTERDOMAIN as libc::Ioctl,
                &mut request as *mut BindInterdomain,
            )
        };
        u32::try_from(port).map_err(|_| Error::last(Step::Bind { domid, remote_port }))
    }

    fn port_ioctl(&self, number: u32, port: u32, step: Step) -> Result<(), Error> {
        let mut request = Port { port };
        // SAFETY: the argument is a live struct ioctl_evtchn_notify / ioctl_evtchn_unbind (one
        // u32, asserted above); the kernel only reads it.
        let result = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                number as libc::Ioctl,
                &mut request as *mut Port,
            )
        };
        if result != 0 {
            return Err(Error::last(step));
        }
        Ok(())
    }

    /// Signals the other end of local `port`.
    pub fn notify(&self, port: u32) -> Result<(), Error> {
        self.port_ioctl(IOCTL_EVTCHN_NOTIFY, port, Step::Notify(port))
    }

    /// Closes local `port`.
    pub fn unbind(&self, port: u32) -> Result<(), Error> {
        self.port_ioctl(IOCTL_EVTCHN_UNBIND, port, Step::Unbind(port))
    }

    /// The local ports that fired since the last call (empty if none). Each stays masked
    /// until passed to [`Evtchn::unmask`].
    pub fn fired(&self) -> Result<Vec<u32>, Error> {
        let mut ports = Vec::new();
        let mut buffer = [0u8; 4 * 64];
        loop {
            // SAFETY: read(2) into a buffer we own, at most its length.
            let count = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            if count < 0 {
                let source = io::Error::last_os_error();
                match source.kind() {
                    io::ErrorKind::WouldBlock => return Ok(ports),
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        return Err(Error {
                            step: Step::Read,
                            source,
                        })
                    }
                }
            }
            let count = count as usize;
            ports.extend(decode_ports(&buffer[..count]));
            if count < buffer.len() {
                return Ok(ports);
            }
        }
    }

    /// Re-enables delivery for `ports` (those [`Evtchn::fired`] returned).
    pub fn unmask(&self, ports: &[u32]) -> Result<(), Error> {
        if ports.is_empty() {
            return Ok(());
        }
        let bytes = encode_ports(ports);
        // SAFETY: write(2) from a buffer we own, its exact length.
        let written =
            unsafe { libc::write(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if written != bytes.len() as isize {
            return Err(Error::last(Step::Unmask));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_those_of_the_header() {
        // _IOC(_IOC_NONE, 'E', 1, 8), _IOC(_IOC_NONE, 'E', 3, 4), _IOC(_IOC_NONE, 'E', 4, 4).
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
        assert_eq!(IOCTL_EVTCHN_UNBIND, 0x0004_4503);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
    }

    #[test]
    fn ports_travel_as_native_words() {
        let bytes = encode_ports(&[5, 0x0102_0304]);
        assert_eq!(bytes.len(), 8);
        assert_eq!(decode_ports(&bytes), [5, 0x0102_0304]);
        // A short read never yields half a port.
        assert_eq!(decode_ports(&bytes[..6]), [5]);
    }

    #[test]
    fn errors_name_the_step_and_the_port() {
        let bind = Error {
            step: Step::Bind {
                domid: 3,
                remote_port: 9,
            },
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(bind
            .to_string()
            .starts_with("cannot bind port 9 of domain 3 (IOCTL_EVTCHN_BIND_INTERDOMAIN): "));
        let open = Error {
            step: Step::Open,
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(open.to_string().contains("xen-evtchn module"));
        assert!(Error {
            step: Step::Notify(12),
            source: io::Error::from_raw_os_error(libc::EINVAL)
        }
        .to_string()
        .starts_with("cannot notify local port 12 "));
    }
}
