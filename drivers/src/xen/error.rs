//! Error codes returned by Xen (xen/include/public/errno.h), as a typed enum.

use core::fmt;

/// An error returned by a hypercall, decoded from its negative result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenError {
    /// EPERM: operation not permitted.
    NotPermitted,
    /// ENOENT: no such entry.
    NoEntry,
    /// ESRCH: no such domain or object.
    NoSuchObject,
    /// EINTR: interrupted.
    Interrupted,
    /// EIO: I/O error.
    Io,
    /// E2BIG: argument list too long.
    TooBig,
    /// EAGAIN: try again.
    Again,
    /// ENOMEM: out of memory.
    NoMemory,
    /// EACCES: permission denied.
    AccessDenied,
    /// EFAULT: bad address.
    BadAddress,
    /// EBUSY: resource busy.
    Busy,
    /// EEXIST: already exists.
    Exists,
    /// ENODEV: no such device.
    NoDevice,
    /// EINVAL: invalid argument.
    Invalid,
    /// ENOSPC: no space left.
    NoSpace,
    /// ENOSYS: function not implemented.
    NotImplemented,
    /// EOPNOTSUPP: operation not supported.
    NotSupported,
    /// Any other errno value.
    Other(i32),
}

impl XenError {
    /// Decodes a `-errno` hypercall result; `None` when `result >= 0`.
    pub fn from_result(result: i64) -> Option<XenError> {
        if result >= 0 {
            return None;
        }
        let errno = result
            .checked_neg()
            .and_then(|errno| i32::try_from(errno).ok())
            .unwrap_or(i32::MAX);
        Some(XenError::from_errno(errno))
    }

    /// Decodes a positive errno value.
    pub fn from_errno(errno: i32) -> XenError {
        match errno {
            1 => XenError::NotPermitted,
            2 => XenError::NoEntry,
            3 => XenError::NoSuchObject,
            4 => XenError::Interrupted,
            5 => XenError::Io,
            7 => XenError::TooBig,
            11 => XenError::Again,
            12 => XenError::NoMemory,
            13 => XenError::AccessDenied,
            14 => XenError::BadAddress,
            16 => XenError::Busy,
            17 => XenError::Exists,
            19 => XenError::NoDevice,
            22 => XenError::Invalid,
            28 => XenError::NoSpace,
            38 => XenError::NotImplemented,
            95 => XenError::NotSupported,
            other => XenError::Other(other),
        }
    }

    /// The errno value.
    pub fn errno(self) -> i32 {
        match self {
            XenError::NotPermitted => 1,
            XenError::NoEntry => 2,
            XenError::NoSuchObject => 3,
            XenError::Interrupted => 4,
            XenError::Io => 5,
            XenError::TooBig => 7,
            XenError::Again => 11,
            XenError::NoMemory => 12,
            XenError::AccessDenied => 13,
            XenError::BadAddress => 14,
            XenError::Busy => 16,
            XenError::Exists => 17,
            XenError::NoDevice => 19,
            XenError::Invalid => 22,
            XenError::NoSpace => 28,
            XenError::NotImplemented => 38,
            XenError::NotSupported => 95,
            XenError::Other(errno) => errno,
        }
    }

    /// The C name of the error (`"EINVAL"`), or `"E?"` for unknown values.
    pub fn name(self) -> &'static str {
        match self {
            XenError::NotPermitted => "EPERM",
            XenError::NoEntry => "ENOENT",
            XenError::NoSuchObject => "ESRCH",
            XenError::Interrupted => "EINTR",
            XenError::Io => "EIO",
            XenError::TooBig => "E2BIG",
            XenError::Again => "EAGAIN",
            XenError::NoMemory => "ENOMEM",
            XenError::AccessDenied => "EACCES",
            XenError::BadAddress => "EFAULT",
            XenError::Busy => "EBUSY",
            XenError::Exists => "EEXIST",
            XenError::NoDevice => "ENODEV",
            XenError::Invalid => "EINVAL",
            XenError::NoSpace => "ENOSPC",
            XenError::NotImplemented => "ENOSYS",
            XenError::NotSupported => "EOPNOTSUPP",
            XenError::Other(_) => "E?",
        }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), -self.errno())
    }
}

/// Turns a hypercall result into `Ok(non-negative value)` or the error.
pub fn check(result: i64) -> Result<u64, XenError> {
    match XenError::from_result(result) {
        None => Ok(result.unsigned_abs()),
        Some(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn errno_round_trips_for_every_named_error() {
        for errno in 1..=200 {
            let error = XenError::from_errno(errno);
            assert_eq!(error.errno(), errno);
        }
    }

    #[test]
    fn results_decode_to_errors() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(0x4_0011), Ok(0x4_0011));
        assert_eq!(check(-22), Err(XenError::Invalid));
        assert_eq!(check(-1), Err(XenError::NotPermitted));
        assert_eq!(check(i64::MIN), Err(XenError::Other(i32::MAX)));
        assert_eq!(XenError::Again.to_string(), "EAGAIN (-11)");
    }
}
