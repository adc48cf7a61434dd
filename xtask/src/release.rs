//! The Xen releases the rig boots, each from Debian's arm64 packages of one suite: what to fetch,
//! where the files land once unpacked, and which scenarios `cargo xtask test` runs on it.
//!
//! Everything that differs between releases is data here; the code that fetches, assembles and
//! boots takes a [`Release`] and asks it.

use std::fmt;

/// A Xen release of the rig.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Release {
    /// Xen 4.17 from Debian 12 (bookworm), Dom0 kernel 6.1.
    Xen417,
    /// Xen 4.20 from Debian 13 (trixie), Dom0 kernel 6.12.
    Xen420,
}

/// The arm64 packages every release needs besides its own Xen packages: the tools' libraries
/// whose names do not carry the Xen version, busybox, and what the tools link against.
const COMMON_PACKAGES: &[&str] = &[
    "xen-utils-common",
    "xenstore-utils",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenstore4",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxentoolcore1",
    "libxenhypfs1",
    "libyajl2",
    "libc6",
    "libgcc-s1",
    "libncurses6",
    "libtinfo6",
    "zlib1g",
    "libuuid1",
    "libfdt1",
    "busybox-static",
];

/// The scenarios of the default set on Xen 4.20: boot, dom0less (with and without xenstore),
/// services, the display with its golden checks and recovery, and backend-allocated buffers
/// (be-alloc, through backend restarts), on both GICs where the 4.17 set has both, except the
/// display: on the emulated GICv2 board under 4.20 (Dom0 kernel 6.12) a
/// request on Dom0's frames share (virtio-9p) mostly never completes and no frame reaches the
/// host, whatever the guest does; `--xen 4.20 --scenario display-gicv2` still runs it.
const XEN_4_20_SCENARIOS: &[&str] = &[
    "boot-gicv2",
    "boot-gicv3",
    "dom0less",
    "dom0less-gicv2",
    "dom0less-xenstore",
    "dom0less-no-store",
    "crash-xl",
    "services-gicv2",
    "services-gicv3",
    "display-gicv3",
    "recovery-gicv3",
    "be-alloc-gicv3",
];

impl Release {
    /// Every release, oldest first.
    pub const ALL: [Release; 2] = [Release::Xen417, Release::Xen420];

    /// The release `cargo xtask run`, `bench`, `soak` and `dump-dtbs` use without `--xen`.
    pub const DEFAULT: Release = Release::Xen417;

    /// `major.minor`, as Xen prints it and Debian names its packages.
    pub fn version(self) -> &'static str {
        match self {
            Release::Xen417 => "4.17",
            Release::Xen420 => "4.20",
        }
    }

    /// The release named `major.minor`.
    pub fn from_version(version: &str) -> Option<Release> {
        Release::ALL
            .into_iter()
            .find(|release| release.version() == version)
    }

    /// The Debian suite whose packages the release comes from.
    pub fn suite(self) -> &'static str {
        match self {
            Release::Xen417 => "bookworm",
            Release::Xen420 => "trixie",
        }
    }

    /// The arm64 packages unpacked into the release's root (the Dom0 kernel is resolved from
    /// `linux-image-arm64` on top): Xen, the tools Dom0 runs and their libraries. The packages
    /// whose names carry the Xen version (the hypervisor, the tools, `libxenmisc`, which holds
    /// `libxenctrl.so.<version>`, `libxenlight.so.<version>` and the other libraries with a
    /// versioned soname) come first.
    pub fn packages(self) -> Vec<String> {
        let version = self.version();
        let mut packages = vec![
            format!("xen-hypervisor-{version}-arm64"),
            format!("xen-utils-{version}"),
            format!("libxenmisc{version}"),
        ];
        packages.extend(COMMON_PACKAGES.iter().map(|name| name.to_string()));
        packages
    }

    /// The hypervisor binary in the unpacked root.
    pub fn xen_binary(self) -> String {
        format!("boot/xen-{}-arm64", self.version())
    }

    /// The directory of the release's tools (`xl`, `xenstored`, ...) in the root and in Dom0.
    pub fn tools_dir(self) -> String {
        format!("usr/lib/xen-{}/bin", self.version())
    }

    /// Where the root keeps shared libraries, searched in this order. Bookworm keeps glibc in
    /// `/lib`, trixie in `/usr/lib` (merged `/usr`); bookworm's Xen packages also have a private
    /// library directory.
    pub fn library_dirs(self) -> Vec<String> {
        vec![
            "lib/aarch64-linux-gnu".to_string(),
            "usr/lib/aarch64-linux-gnu".to_string(),
            format!("usr/lib/xen-{}/lib/aarch64-linux-gnu", self.version()),
        ]
    }

    /// The scenarios `cargo xtask test` runs on this release without `--scenario`; `None` for
    /// the release that runs every scenario marked `default`.
    pub fn scenario_set(self) -> Option<&'static [&'static str]> {
        match self {
            Release::Xen417 => None,
            Release::Xen420 => Some(XEN_4_20_SCENARIOS),
        }
    }

    /// The name of the release's directory under `target/rig/` and the prefix of its scenario
    /// names in `cargo xtask test`'s output: `xen-4.17`.
    pub fn label(self) -> String {
        format!("xen-{}", self.version())
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Xen {}", self.version())
    }
}

/// `--xen 4.17|4.20` (one release) or `--xen all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// One release.
    One(Release),
    /// Every release.
    All,
}

impl Choice {
    /// The releases chosen, oldest first.
    pub fn releases(self) -> Vec<Release> {
        match self {
            Choice::One(release) => vec![release],
            Choice::All => Release::ALL.to_vec(),
        }
    }
}

/// Parses `--xen`'s value.
pub fn parse_choice(value: &str) -> Result<Choice, String> {
    if value == "all" {
        return Ok(Choice::All);
    }
    Release::from_version(value)
        .map(Choice::One)
        .ok_or_else(|| format!("unknown Xen release `{value}`: {}, or all", known()))
}

/// Parses `--xen`'s value where only one release makes sense (`run`, `bench`, ...).
pub fn parse_release(value: &str) -> Result<Release, String> {
    Release::from_version(value)
        .ok_or_else(|| format!("unknown Xen release `{value}`: one of {}", known()))
}

fn known() -> String {
    Release::ALL
        .iter()
        .map(|release| release.version())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_package_names_follow_the_release() {
        let packages = Release::Xen420.packages();
        assert_eq!(
            &packages[..3],
            [
                "xen-hypervisor-4.20-arm64",
                "xen-utils-4.20",
                "libxenmisc4.20"
            ]
        );
        assert!(packages.contains(&"busybox-static".to_string()));
        assert!(!packages.iter().any(|name| name.contains("4.17")));
        let old = Release::Xen417.packages();
        assert_eq!(old[0], "xen-hypervisor-4.17-arm64");
        assert_eq!(old.len(), packages.len());
        assert_eq!(Release::Xen420.xen_binary(), "boot/xen-4.20-arm64");
        assert_eq!(Release::Xen417.tools_dir(), "usr/lib/xen-4.17/bin");
    }

    #[test]
    fn releases_parse_from_their_version() {
        assert_eq!(parse_choice("4.20"), Ok(Choice::One(Release::Xen420)));
        assert_eq!(parse_choice("all"), Ok(Choice::All));
        assert_eq!(Choice::All.releases(), Release::ALL);
        assert!(parse_choice("4.18").unwrap_err().contains("4.17, 4.20"));
        assert_eq!(parse_release("4.17"), Ok(Release::Xen417));
        assert!(parse_release("all").is_err());
        assert_eq!(Release::Xen420.to_string(), "Xen 4.20");
        assert_eq!(Release::Xen420.label(), "xen-4.20");
    }
}
