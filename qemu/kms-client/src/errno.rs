//! Errors as the client's failure lines name them: the errno's symbolic name and number, then
//! the C library's text (`EOPNOTSUPP (errno 95: Not supported)`), so that a line reads the same
//! whichever C library wrote the text.

use std::io;

/// The symbolic name of an errno the DRM calls can return (asm-generic/errno*.h, as on arm64
/// and x86-64), or `None` for another.
pub fn name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return None,
    })
}

/// `NAME (errno N: text)` for an OS error, the error's own text otherwise.
pub fn describe(error: &io::Error) -> String {
    let Some(errno) = error.raw_os_error() else {
        return error.to_string();
    };
    let text = error.to_string();
    let text = text
        .strip_suffix(&format!(" (os error {errno})"))
        .unwrap_or(&text);
    format!("{} (errno {errno}: {text})", name(errno).unwrap_or("errno"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_is_named_with_its_number() {
        let line = describe(&io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        assert!(line.starts_with("EOPNOTSUPP (errno 95: "), "{line}");
        assert!(line.ends_with(')') && !line.contains("os error"), "{line}");
        assert_eq!(
            describe(&io::Error::other("no connected connector")),
            "no connected connector"
        );
        assert!(describe(&io::Error::from_raw_os_error(4095)).starts_with("errno (errno 4095: "));
    }
}
