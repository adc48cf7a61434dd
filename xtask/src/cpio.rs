//! A writer for the cpio "newc" format, the one Linux unpacks as an initramfs
//! (Linux `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (`070701` then 13 fields of 8 hex digits), the name with
//! its NUL padded to a multiple of 4, then the data padded to a multiple of 4. The archive ends
//! with an entry named `TRAILER!!!`. Linux creates no parent directories: add them first.

use std::io::{self, Write};

/// File type bits of `mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc archive entry by entry.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
    /// The device number of the entry being written (only device nodes have one).
    rdev: (u32, u32),
}

impl<W: Write> Writer<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_inode: 1,
            rdev: (0, 0),
        }
    }

    /// Adds a directory with permission bits `perm` (e.g. 0o755).
    pub fn directory(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, &[])
    }

    /// Adds a regular file with permission bits `perm` and contents `data`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, data)
    }

    /// Adds a symbolic link `name` pointing to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, 1, target.as_bytes())
    }

    /// Adds a character device node `name` (major, minor), such as `dev/console` (5, 1), which
    /// the kernel opens for init before any file system is mounted on /dev.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.rdev = (major, minor);
        let result = self.entry(name, S_IFCHR | (perm & 0o7777), 1, &[]);
        self.rdev = (0, 0);
        result
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let inode = self.next_inode;
        self.next_inode += 1;
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name}: larger than 4 GiB")))?;
        self.header(name, inode, mode, nlink, size)?;
        self.write(data)?;
        self.pad()
    }

    fn header(
        &mut self,
        name: &str,
        inode: u32,
        mode: u32,
        nlink: u32,
        size: u32,
    ) -> io::Result<()> {
        let name_size = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let (rdev_major, rdev_minor) = self.rdev;
        let fields = [
            inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev_major, rdev_minor, name_size, 0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - (self.written % 4) as usize) % 4;
        self.write(&[0; 3][..padding])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut cpio = Writer::new(Vec::new());
        cpio.directory("bin", 0o755).unwrap();
        cpio.file("/bin/hello", 0o755, b"hello\n").unwrap();
        cpio.symlink("bin/sh", "hello").unwrap();
        cpio.directory("dev", 0o755).unwrap();
        cpio.char_device("dev/console", 0o600, 5, 1).unwrap();
        cpio.finish().unwrap()
    }

    #[test]
    fn layout_matches_newc() {
        let archive = sample();
        // First header: "070701", ino 1, mode 040755, nlink 2, namesize 4 ("bin\0").
        let first = std::str::from_utf8(&archive[..110]).unwrap();
        assert_eq!(
            first,
            "07070100000001000041ed00000000000000000000000200000000\
             00000000000000000000000000000000000000000000000400000000"
        );
        // 110 + 4 = 114, padded to 116; no data.
        assert_eq!(&archive[110..116], b"bin\0\0\0");
        let second = std::str::from_utf8(&archive[116..122]).unwrap();
        assert_eq!(second, "070701");
        assert_eq!(archive.len() % 4, 0);
        assert!(archive
            .windows(b"TRAILER!!!\0".len())
            .any(|w| w == b"TRAILER!!!\0"));
    }

    /// Cross-checks against GNU cpio when it is installed (`cargo xtask deps` installs it).
    #[test]
    fn gnu_cpio_lists_and_extracts_the_archive() {
        if Command::new("cpio").arg("--version").output().is_err() {
            eprintln!("cpio not installed: skipping the cross-check");
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-cpio-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("test.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("cpio")
                .args(args)
                .current_dir(&dir)
                .stdin(std::fs::File::open(&archive).unwrap())
                .stderr(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "cpio {args:?} failed");
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run(&["-t"]), "bin\nbin/hello\nbin/sh\ndev\ndev/console\n");
        let listing = run(&["-tv"]);
        assert!(
            listing.lines().any(|line| line.starts_with("crw-------")
                && line.contains("5,")
                && line.ends_with("dev/console")),
            "{listing}"
        );
        run(&["-id", "--no-absolute-filenames", "bin/*"]);
        assert_eq!(std::fs::read(dir.join("bin/hello")).unwrap(), b"hello\n");
        assert_eq!(
            std::fs::read_link(dir.join("bin/sh")).unwrap(),
            std::path::Path::new("hello")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
