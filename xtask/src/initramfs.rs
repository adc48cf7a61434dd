//! The Dom0 initramfs of one Xen release: busybox, the Xen tools and their libraries, the Dom0
//! kernel's Xen modules, the guest Image (and the Linux peer's, when a scenario needs it), its xl
//! configs and the rig's init and scenario scripts from `qemu/`.
//!
//! Shared libraries are found by following each ELF's `DT_NEEDED` entries recursively through the
//! release's arm64 root. Kernel modules go in uncompressed: trixie's kernel ships them
//! xz-compressed (`.ko.xz`), which are unpacked once into `target/rig/xen-<version>/modules/`.
//! The archive (uncompressed newc, `cpio.rs`) is rewritten only when one of its inputs changed.

use crate::release::Release;
use crate::{cpio, modinfo, rig};
use anyhow::{bail, Context, Result};
use object::elf::{FileHeader64, DT_NEEDED};
use object::read::elf::FileHeader;
use object::Endianness;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::BufWriter;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the guest Image is installed in Dom0 (`kernel =` of `qemu/xl/vdispl-os.cfg`).
pub const GUEST_IMAGE: &str = "guest/vdispl-os.Image";

/// Kernel modules Dom0 loads, in this order (`qemu/dom0/init` inserts them).
const MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-privcmd",
    "xenfs",
    "xen-gntdev",
    "xen-gntalloc",
];

/// Kernel modules the frames share needs (virtio-mmio transport, 9p over virtio, the 9p file
/// system); their dependencies are added from the modules' own `.modinfo`, and the load order
/// goes to [`FRAMES_MODULES_LIST`] for `mount_frames` in `qemu/dom0/lib.sh`.
const FRAMES_MODULES: &[&str] = &["virtio_mmio", "9pnet_virtio", "9p"];

/// The file listing the frames share's modules in load order, one name per line.
pub const FRAMES_MODULES_LIST: &str = "etc/rig/9p-modules";

/// busybox applets linked into /bin (the rig's scripts use only these).
const APPLETS: &[&str] = &[
    "[", "awk", "base64", "basename", "cat", "chmod", "cp", "cttyhack", "cut", "date", "dd",
    "dirname", "dmesg", "echo", "env", "expr", "false", "find", "free", "grep", "halt", "head",
    "hexdump", "id", "insmod", "kill", "less", "ln", "ls", "lsmod", "mkdir", "mknod", "more",
    "mount", "mv", "od", "pidof", "poweroff", "printf", "ps", "readlink", "reboot", "rm", "rmmod",
    "sed", "seq", "setsid", "sh", "sleep", "sort", "stat", "stty", "sync", "tail", "tee", "test",
    "timeout", "touch", "tr", "true", "umount", "uname", "uniq", "usleep", "vi", "watch", "wc",
    "which", "xargs",
];

/// The dynamic loader named by every arm64 glibc program's PT_INTERP.
const DYNAMIC_LOADER: &str = "ld-linux-aarch64.so.1";

/// Libraries glibc loads with dlopen() (no DT_NEEDED names them): `xl` aborts without libgcc_s.
const DLOPENED: &[&str] = &["libgcc_s.so.1"];

/// What goes into the archive under one path.
#[derive(Hash)]
enum Node {
    Directory,
    File {
        source: PathBuf,
        perm: u32,
    },
    /// A file generated here.
    Contents {
        data: Vec<u8>,
        perm: u32,
    },
    Symlink(String),
}

/// The archive's contents, sorted so that parents come before their children.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    fn directory(&mut self, path: &str) {
        let mut prefix = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.nodes.entry(prefix.clone()).or_insert(Node::Directory);
        }
    }

    fn add(&mut self, path: &str, node: Node) {
        let path = path.trim_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.directory(parent);
        }
        self.nodes.insert(path.to_string(), node);
    }

    /// Adds `source` (following symlinks) at `path`, keeping its permission bits.
    fn file(&mut self, path: &str, source: &Path) -> Result<()> {
        let meta =
            fs::metadata(source).with_context(|| format!("cannot read {}", source.display()))?;
        self.add(
            path,
            Node::File {
                source: source.to_path_buf(),
                perm: meta.permissions().mode() & 0o7777,
            },
        );
        Ok(())
    }

    /// Adds a file with explicit permission bits.
    fn file_with_mode(&mut self, path: &str, source: &Path, perm: u32) -> Result<()> {
        if !source.is_file() {
            bail!("{} is missing", source.display());
        }
        self.add(
            path,
            Node::File {
                source: source.to_path_buf(),
                perm,
            },
        );
        Ok(())
    }

    /// A cheap fingerprint of every input: paths, sizes and modification times.
    fn fingerprint(&self) -> Result<u64> {
        let mut hasher = DefaultHasher::new();
        for (path, node) in &self.nodes {
            path.hash(&mut hasher);
            node.hash(&mut hasher);
            if let Node::File { source, .. } = node {
                let meta = fs::metadata(source)
                    .with_context(|| format!("cannot read {}", source.display()))?;
                (meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher);
            }
        }
        Ok(hasher.finish())
    }

    fn write(&self, out: &Path) -> Result<u64> {
        let file =
            fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut archive = cpio::Writer::new(BufWriter::new(file));
        for (path, node) in &self.nodes {
            match node {
                Node::Directory => archive.directory(path, 0o755)?,
                Node::File { source, perm } => {
                    let data = fs::read(source)
                        .with_context(|| format!("cannot read {}", source.display()))?;
                    archive.file(path, *perm, &data)?;
                }
                Node::Contents { data, perm } => archive.file(path, *perm, data)?,
                Node::Symlink(target) => archive.symlink(path, target)?,
            }
        }
        archive.finish()?;
        Ok(fs::metadata(out)?.len())
    }
}

/// Inputs of the Dom0 initramfs besides the arm64 root.
pub struct Inputs<'a> {
    /// The Xen release whose root, tools and kernel go in.
    pub release: Release,
    /// The guest Image.
    pub guest_image: &'a Path,
    /// Dom0 programs to install in /usr/bin.
    pub dom0_binaries: &'a [PathBuf],
    /// The Linux peer's kernel (`linux_peer.rs`), when a linux-peer scenario is coming.
    pub linux_peer: Option<&'a Path>,
}

/// Assembles `target/rig/xen-<version>/dom0-initramfs.cpio` (if an input changed) and returns
/// its path.
pub fn build(inputs: &Inputs) -> Result<PathBuf> {
    let xen = inputs.release;
    let root = rig::root(xen);
    let release = rig::kernel_release(xen)?;
    let mut tree = Tree::default();
    for dir in [
        "dev", "proc", "sys", "run", "tmp", "var", "root", "sbin", "usr/sbin", "etc",
    ] {
        tree.directory(dir);
    }

    tree.file("bin/busybox", &rig::busybox(xen)?)?;
    for applet in APPLETS {
        tree.add(&format!("bin/{applet}"), Node::Symlink("busybox".into()));
    }

    let mut programs = Vec::new();
    let tools_dir = xen.tools_dir();
    for dir in [tools_dir.as_str(), "usr/bin"] {
        for entry in read_dir_sorted(&root.join(dir))? {
            let name = entry
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let is_tool = dir != "usr/bin" || name.starts_with("xenstore");
            // Only regular files: Debian's wrapper symlinks point outside what Dom0 needs.
            if is_tool && fs::symlink_metadata(&entry)?.file_type().is_file() {
                tree.file(&format!("{dir}/{name}"), &entry)?;
                programs.push(entry);
            }
        }
    }
    add_tree(&mut tree, &root, "etc/xen")?;

    let libraries = resolve_libraries(&root, &xen.library_dirs(), &programs)?;
    for (name, path) in &libraries {
        tree.file(&format!("lib/aarch64-linux-gnu/{name}"), path)?;
    }
    let loader = rig::find_in_root(
        xen,
        &[
            &format!("lib/{DYNAMIC_LOADER}"),
            &format!("usr/lib/{DYNAMIC_LOADER}"),
        ],
    )?;
    tree.file(&format!("lib/{DYNAMIC_LOADER}"), &loader)?;

    let modules = rig::modules_dir(xen)?;
    let mut files = BTreeMap::new();
    index_modules(&modules.join("kernel"), &mut files)?;
    let unpacked = rig::release_dir(xen).join("modules");
    for module in MODULES {
        let (_, found) = files.get(&modinfo::canonical(module)).with_context(|| {
            format!(
                "kernel module {module}.ko not found under {} (run `cargo xtask deps --refresh`)",
                modules.display()
            )
        })?;
        let found = uncompressed(found, &unpacked)?;
        tree.file(&format!("lib/modules/{release}/{module}.ko"), &found)?;
    }

    let frames_modules = frames_modules(&modules.join("kernel"), &mut files, &unpacked)?;
    let mut list = String::new();
    for (name, path) in &frames_modules {
        tree.file(&format!("lib/modules/{release}/{name}.ko"), path)?;
        list.push_str(name);
        list.push('\n');
    }
    tree.add(
        FRAMES_MODULES_LIST,
        Node::Contents {
            data: list.into_bytes(),
            perm: 0o644,
        },
    );

    tree.file_with_mode(GUEST_IMAGE, inputs.guest_image, 0o644)?;
    if let Some(image) = inputs.linux_peer {
        tree.file_with_mode(crate::linux_peer::DOM0_IMAGE, image, 0o644)?;
    }
    for binary in inputs.dom0_binaries {
        let name = binary.file_name().unwrap_or_default().to_string_lossy();
        tree.file_with_mode(&format!("usr/bin/{name}"), binary, 0o755)?;
    }

    let qemu = rig::qemu_dir();
    tree.file_with_mode("init", &qemu.join("dom0/init"), 0o755)?;
    tree.file_with_mode("rig/lib.sh", &qemu.join("dom0/lib.sh"), 0o644)?;
    for script in read_dir_sorted(&qemu.join("dom0/scenarios"))? {
        let name = script.file_name().unwrap_or_default().to_string_lossy();
        tree.file_with_mode(&format!("rig/scenarios/{name}"), &script, 0o755)?;
    }
    for script in read_dir_sorted(&qemu.join("dom0/input"))? {
        let name = script.file_name().unwrap_or_default().to_string_lossy();
        tree.file_with_mode(&format!("rig/input/{name}"), &script, 0o644)?;
    }
    for config in read_dir_sorted(&qemu.join("xl"))? {
        let name = config.file_name().unwrap_or_default().to_string_lossy();
        tree.file_with_mode(&format!("etc/xen/{name}"), &config, 0o644)?;
    }

    let out = rig::release_dir(xen).join("dom0-initramfs.cpio");
    let stamp = rig::release_dir(xen).join("dom0-initramfs.stamp");
    let fingerprint = format!("{:016x}\n", tree.fingerprint()?);
    if out.is_file() && fs::read_to_string(&stamp).is_ok_and(|old| old == fingerprint) {
        println!("initramfs: {} is up to date", out.display());
        return Ok(out);
    }
    let _ = fs::remove_file(&stamp);
    let size = tree.write(&out)?;
    fs::write(&stamp, fingerprint)?;
    println!(
        "initramfs: wrote {} ({} entries, {} libraries, {:.1} MiB)",
        out.display(),
        tree.nodes.len(),
        libraries.len(),
        size as f64 / (1 << 20) as f64
    );
    Ok(out)
}

/// Adds the directory `rel` of `root` recursively (regular files and relative symlinks).
fn add_tree(tree: &mut Tree, root: &Path, rel: &str) -> Result<()> {
    tree.directory(rel);
    for entry in read_dir_sorted(&root.join(rel))? {
        let name = entry.file_name().unwrap_or_default().to_string_lossy();
        let path = format!("{rel}/{name}");
        let kind = fs::symlink_metadata(&entry)?.file_type();
        if kind.is_dir() {
            add_tree(tree, root, &path)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&entry)?;
            tree.add(&path, Node::Symlink(target.to_string_lossy().into()));
        } else if kind.is_file() {
            tree.file(&path, &entry)?;
        }
    }
    Ok(())
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    Ok(entries)
}

/// The frames share's modules with their dependencies, in load order: (file stem, path of the
/// uncompressed module). `files` is the index of [`index_modules`].
fn frames_modules(
    kernel_dir: &Path,
    files: &mut BTreeMap<String, (String, PathBuf)>,
    unpacked: &Path,
) -> Result<Vec<(String, PathBuf)>> {
    let order = modinfo::load_order(FRAMES_MODULES, |name| {
        let (_, path) = files
            .get(name)
            .with_context(|| format!("{name}.ko not found under {}", kernel_dir.display()))?;
        let path = uncompressed(path, unpacked)?;
        let data = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        modinfo::depends(&data).with_context(|| format!("cannot read {}", path.display()))
    })?;
    order
        .into_iter()
        .filter_map(|name| files.remove(&name))
        .map(|(stem, path)| Ok((stem, uncompressed(&path, unpacked)?)))
        .collect()
}

/// A module's stem without `.ko` or `.ko.xz`, if the file name is a module's.
fn module_stem(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".ko")
        .or_else(|| file_name.strip_suffix(".ko.xz"))
}

/// Every `.ko` or `.ko.xz` under `dir`: canonical module name -> (file stem, path).
fn index_modules(dir: &Path, files: &mut BTreeMap<String, (String, PathBuf)>) -> Result<()> {
    for entry in read_dir_sorted(dir)? {
        if entry.is_dir() {
            index_modules(&entry, files)?;
        } else if let Some(stem) = entry
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(module_stem)
        {
            let stem = stem.to_string();
            files.insert(modinfo::canonical(&stem), (stem, entry));
        }
    }
    Ok(())
}

/// The module at `path` as an uncompressed `.ko`: `path` itself, or for a `.ko.xz` its contents
/// unpacked with `xz` into `dir` (again only when the compressed file is newer).
pub fn uncompressed(path: &Path, dir: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let Some(stem) = name.strip_suffix(".ko.xz") else {
        return Ok(path.to_path_buf());
    };
    let out = dir.join(format!("{stem}.ko"));
    let modified = |file: &Path| fs::metadata(file).and_then(|meta| meta.modified()).ok();
    if out.is_file() && modified(&out) >= modified(path) {
        return Ok(out);
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let output = std::process::Command::new("xz")
        .args(["--decompress", "--stdout"])
        .arg(path)
        .output()
        .with_context(|| {
            format!(
                "cannot run xz to unpack {} (install xz-utils: `cargo xtask deps`)",
                path.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "`xz --decompress --stdout {}` failed ({}): {}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    fs::write(&out, &output.stdout).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

/// The `DT_NEEDED` names of an ELF file; empty for static programs and non-ELF files (scripts).
pub fn needed_libraries(data: &[u8]) -> Result<Vec<String>> {
    let Ok(header) = FileHeader64::<Endianness>::parse(data) else {
        return Ok(Vec::new());
    };
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let table = sections.dynamic_table(endian, data)?;
    let mut names = Vec::new();
    for entry in &table {
        if entry.tag == DT_NEEDED {
            names.push(String::from_utf8_lossy(table.string(entry)?).into_owned());
        }
    }
    Ok(names)
}

/// Follows `DT_NEEDED` from `programs` through the libraries of `root`; returns name -> file.
fn resolve_libraries(
    root: &Path,
    library_dirs: &[String],
    programs: &[PathBuf],
) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut queue: Vec<(String, PathBuf)> = DLOPENED
        .iter()
        .map(|name| (name.to_string(), PathBuf::from("(dlopen)")))
        .collect();
    for program in programs {
        let data =
            fs::read(program).with_context(|| format!("cannot read {}", program.display()))?;
        let needed = needed_libraries(&data).with_context(|| {
            format!(
                "cannot read the ELF dynamic section of {}",
                program.display()
            )
        })?;
        queue.extend(needed.into_iter().map(|name| (name, program.clone())));
    }
    while let Some((name, needed_by)) = queue.pop() {
        if name == DYNAMIC_LOADER || !seen.insert(name.clone()) {
            continue;
        }
        let Some(path) = library_dirs
            .iter()
            .map(|dir| root.join(dir).join(&name))
            .find(|path| path.exists())
        else {
            bail!(
                "shared library {name} (needed by {}) is not in the arm64 root {}: \
                 add its package to the release's packages in xtask/src/release.rs",
                needed_by.display(),
                root.display()
            );
        };
        let data = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for next in needed_libraries(&data)
            .with_context(|| format!("cannot read the ELF dynamic section of {}", path.display()))?
        {
            queue.push((next, path.clone()));
        }
        found.insert(name, path);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_before_children() {
        let mut tree = Tree::default();
        tree.add("usr/lib/xen-4.17/bin/xl", Node::Symlink("x".into()));
        tree.add("usr/lib-other", Node::Symlink("y".into()));
        let order: Vec<&str> = tree.nodes.keys().map(String::as_str).collect();
        assert_eq!(
            order,
            [
                "usr",
                "usr/lib",
                "usr/lib-other",
                "usr/lib/xen-4.17",
                "usr/lib/xen-4.17/bin",
                "usr/lib/xen-4.17/bin/xl"
            ]
        );
    }

    #[test]
    fn modules_are_found_compressed_or_not() {
        assert_eq!(module_stem("xen-evtchn.ko"), Some("xen-evtchn"));
        assert_eq!(module_stem("9p.ko.xz"), Some("9p"));
        assert_eq!(module_stem("modules.order"), None);
        assert_eq!(module_stem("netfs.ko.zst"), None);
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let kernel = dir.join("kernel");
        fs::create_dir_all(kernel.join("fs/9p")).unwrap();
        fs::create_dir_all(kernel.join("drivers/xen")).unwrap();
        fs::write(kernel.join("drivers/xen/xen-evtchn.ko"), b"plain").unwrap();
        let module = b"\x7fELF pretend module, xz-compressed as trixie ships it";
        let packed = std::process::Command::new("xz")
            .args(["--compress", "--stdout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(module)?;
                child.wait_with_output()
            })
            .expect("xz (xz-utils, installed by `cargo xtask deps`)");
        fs::write(kernel.join("fs/9p/9p.ko.xz"), &packed.stdout).unwrap();
        let mut files = BTreeMap::new();
        index_modules(&kernel, &mut files).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["9p", "xen_evtchn"]);
        let unpacked = dir.join("unpacked");
        let plain = uncompressed(&files["xen_evtchn"].1, &unpacked).unwrap();
        assert_eq!(plain, kernel.join("drivers/xen/xen-evtchn.ko"));
        let nine = uncompressed(&files["9p"].1, &unpacked).unwrap();
        assert_eq!(nine, unpacked.join("9p.ko"));
        assert_eq!(fs::read(&nine).unwrap(), module);
        // A broken archive is named, not used.
        fs::write(kernel.join("fs/9p/9p.ko.xz"), b"not xz").unwrap();
        fs::remove_file(&nine).unwrap();
        let error = uncompressed(&kernel.join("fs/9p/9p.ko.xz"), &unpacked).unwrap_err();
        assert!(error.to_string().contains("xz --decompress"), "{error:#}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_elf_files_need_nothing() {
        assert!(needed_libraries(b"#!/bin/sh\necho hi\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn host_executable_needs_libc() {
        // The test binary itself is a dynamically linked host ELF on Linux.
        let exe = std::env::current_exe().unwrap();
        let needed = needed_libraries(&fs::read(exe).unwrap()).unwrap();
        assert!(
            needed.iter().any(|n| n.starts_with("libc.so")),
            "{needed:?}"
        );
    }
}
