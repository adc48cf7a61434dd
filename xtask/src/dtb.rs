//! Device trees of the rig: the dom0less boot tree (QEMU's own `virt` tree plus a `xen,domain`
//! node, `docs/misc/arm/device-tree/booting.txt` in Xen) and `cargo xtask dump-dtbs`, which
//! brings the trees libxl builds for the guest out of Dom0 as test fixtures.

use crate::logmatch::Pattern;
use crate::qemu::{Console, Machine, GUEST_BESIDE_DOM0_ADDR, INITRD_ADDR, KERNEL_ADDR, XEN_ARGS};
use crate::release::{self, Release};
use crate::scenarios::{self, GuestOptions, Kind, Plan, Prepared};
use crate::{build, cmd, deps, image, rig};
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Options of `cargo xtask dump-dtbs`.
#[derive(clap::Args)]
pub struct DumpArgs {
    /// The Xen release whose libxl builds the trees: 4.17 (fixtures `xl-gicv<N>.dtb`) or 4.20
    /// (`xl-4.20-gicv<N>.dtb`).
    #[arg(long = "xen", value_name = "RELEASE", default_value = "4.17", value_parser = release::parse_release)]
    pub xen: Release,
    /// Use a placeholder guest (an Image header and `b .`) instead of building the real one: the
    /// tree is built by libxl at create time, so any valid Image gives the same result.
    #[arg(long)]
    pub placeholder_guest: bool,
    /// Where the fixtures go.
    #[arg(long, default_value = "kernel/tests/fixtures")]
    pub out_dir: PathBuf,
}

/// The guest's defaults, read from `qemu/xl/vdispl-os.cfg` so that dom0less boots the guest
/// with the same memory and bootargs as `xl create`.
pub fn xl_defaults() -> Result<(u32, String)> {
    let path = rig::qemu_dir().join("xl/vdispl-os.cfg");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let memory = xl_value(&text, "memory")
        .and_then(|value| value.parse().ok())
        .with_context(|| format!("no `memory = <MiB>` in {}", path.display()))?;
    let extra = xl_value(&text, "extra").unwrap_or_default();
    Ok((memory, extra))
}

/// The value of `key = value` or `key = "value"` in an xl config (comments ignored).
fn xl_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter_map(|line| line.split_once('='))
        .find(|(name, _)| name.trim() == key)
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
}

/// Dom0 beside a dom0less guest: the sizes of its kernel and initramfs (loaded at
/// [`KERNEL_ADDR`] and [`INITRD_ADDR`]) and its command line.
pub struct Dom0Modules<'a> {
    /// Bytes of the kernel Image.
    pub kernel_size: u64,
    /// Bytes of the initramfs.
    pub initramfs_size: u64,
    /// The kernel command line (no double quotes).
    pub args: &'a str,
}

/// The `/chosen` fragment that adds Xen's command line and the guest as a dom0less domain;
/// with `dom0`, also Dom0's kernel and initramfs as boot modules, and the guest, loaded at
/// [`GUEST_BESIDE_DOM0_ADDR`], gets xenstore (`xen,enhanced = "enabled"`), which it finds only
/// once Dom0's `init-dom0less` has introduced it.
pub fn dom0less_fragment(
    guest_size: u64,
    memory_mib: u32,
    bootargs: &str,
    dom0: Option<&Dom0Modules>,
) -> String {
    let xen_args = XEN_ARGS
        .split_whitespace()
        .filter(|arg| dom0.is_some() || !arg.starts_with("dom0_mem="))
        .collect::<Vec<_>>()
        .join(" ");
    let (guest_addr, enhanced, dom0_modules) = match dom0 {
        None => (KERNEL_ADDR, "no-xenstore", String::new()),
        Some(dom0) => (
            GUEST_BESIDE_DOM0_ADDR,
            "enabled",
            format!(
                r#"
		module@{KERNEL_ADDR:x} {{
			compatible = "multiboot,kernel", "multiboot,module";
			reg = <0 {KERNEL_ADDR:#x} 0 {kernel_size:#x}>;
			bootargs = "{args}";
		}};
		module@{INITRD_ADDR:x} {{
			compatible = "multiboot,ramdisk", "multiboot,module";
			reg = <0 {INITRD_ADDR:#x} 0 {initramfs_size:#x}>;
		}};"#,
                kernel_size = dom0.kernel_size,
                initramfs_size = dom0.initramfs_size,
                args = dom0.args,
            ),
        ),
    };
    format!(
        r#"
/ {{
	chosen {{
		#address-cells = <2>;
		#size-cells = <2>;
		xen,xen-bootargs = "{xen_args}";{dom0_modules}
		domU1 {{
			compatible = "xen,domain";
			#address-cells = <2>;
			#size-cells = <2>;
			memory = <0 {memory_kib}>;
			cpus = <1>;
			vpl011;
			xen,enhanced = "{enhanced}";
			module@{guest_addr:x} {{
				compatible = "multiboot,kernel", "multiboot,module";
				reg = <0 {guest_addr:#x} 0 {guest_size:#x}>;
				bootargs = "{bootargs}";
			}};
		}};
	}};
}};
"#,
        memory_kib = u64::from(memory_mib) * 1024,
    )
}

/// Writes the dom0less device tree for `machine` and the guest (and Dom0 beside it, when
/// given), returns its path.
///
/// QEMU dumps its own tree with the exact options the boot uses (`Machine::args`), dtc turns it
/// into source, the fragment is appended and dtc compiles the result.
pub fn dom0less(
    machine: &Machine,
    guest_image: &Path,
    guest: &GuestOptions,
    dom0: Option<&Dom0Modules>,
) -> Result<PathBuf> {
    deps::require_host_tool("dtc", "device-tree-compiler")?;
    let (default_memory, default_bootargs) = xl_defaults()?;
    let memory = guest.memory_mib.unwrap_or(default_memory);
    let bootargs = guest.bootargs.clone().unwrap_or(default_bootargs);
    scenarios::check_bootargs(&bootargs)?;
    let size = fs::metadata(guest_image)
        .with_context(|| format!("cannot read {}", guest_image.display()))?
        .len();

    let dir = rig::dir().join("dom0less");
    fs::create_dir_all(&dir)?;
    let base = dir.join(format!("virt-gicv{}.dtb", machine.gic));
    // QEMU writes the tree and exits; its "dtb dumped" notice goes to stderr, kept quiet.
    let mut dump = Command::new("qemu-system-aarch64");
    dump.args(machine.args(&format!(",dumpdtb={}", base.display())));
    println!("$ {}", cmd::display(&dump));
    let out = dump
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot start qemu-system-aarch64 (install it with `cargo xtask deps`)")?;
    if !out.status.success() || !base.is_file() {
        bail!(
            "dumping QEMU's device tree failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut source = cmd::output(
        Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts"])
            .arg(&base),
    )?;
    if let Some(dom0) = dom0 {
        ensure!(
            !dom0.args.contains('"'),
            "Dom0's command line must not contain double quotes here: {}",
            dom0.args
        );
        ensure!(
            INITRD_ADDR + dom0.initramfs_size <= GUEST_BESIDE_DOM0_ADDR,
            "the Dom0 initramfs ({} bytes) does not fit below the guest at {GUEST_BESIDE_DOM0_ADDR:#x}",
            dom0.initramfs_size
        );
    }
    source.push_str(&dom0less_fragment(size, memory, &bootargs, dom0));
    let name = if dom0.is_some() {
        "dom0less-dom0"
    } else {
        "dom0less"
    };
    let dts = dir.join(format!("{name}-gicv{}.dts", machine.gic));
    let dtb = dir.join(format!("{name}-gicv{}.dtb", machine.gic));
    fs::write(&dts, source)?;
    cmd::run(
        Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&dts),
    )
    .context("compiling the dom0less device tree failed")?;
    Ok(dtb)
}

/// Runs `cargo xtask dump-dtbs`.
pub fn dump(args: &DumpArgs) -> Result<()> {
    deps::ensure(&[args.xen])?;
    let guest_image = if args.placeholder_guest {
        let path = rig::dir().join("placeholder.Image");
        fs::create_dir_all(rig::dir())?;
        fs::write(&path, image::placeholder())?;
        println!("dump-dtbs: placeholder guest {}", path.display());
        path
    } else {
        build::run()?.guest_image
    };
    let mut prepared = Prepared::with_image(&guest_image);
    prepared.add_initramfs(args.xen, &[])?;
    let out_dir = rig::workspace().join(&args.out_dir);
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    for gic in [2u8, 3] {
        let label = format!("dump-dtb-gicv{gic}");
        let plan = Plan {
            label: &label,
            release: args.xen,
            machine: Machine::new(gic),
            kind: Kind::Dom0 { script: "dump-dtb" },
            guest: GuestOptions::default(),
            expected: vec![Pattern::start("rig: dtb-end")],
            timeout: Duration::from_secs(180),
            console: Console::Quiet,
            frames: None,
        };
        let outcome = scenarios::boot(&plan, &prepared)?;
        let log = fs::read_to_string(&outcome.log)?;
        let dtb = extract_dtb(&log)
            .with_context(|| format!("no guest DTB in {}", outcome.log.display()))?;
        let path = out_dir.join(fixture_name(args.xen, gic));
        fs::write(&path, &dtb).with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "dump-dtbs: wrote {} ({} bytes, {:.1} s, log: {})",
            path.display(),
            dtb.len(),
            outcome.seconds,
            outcome.log.display()
        );
    }
    Ok(())
}

/// The file name of the fixture libxl of `release` built on GICv`gic`: `xl-gicv3.dtb` for the
/// default release, `xl-4.20-gicv3.dtb` for another.
pub fn fixture_name(release: Release, gic: u8) -> String {
    if release == Release::DEFAULT {
        format!("xl-gicv{gic}.dtb")
    } else {
        format!("xl-{}-gicv{gic}.dtb", release.version())
    }
}

/// The DTB printed in base64 between `rig: dtb-begin` and `rig: dtb-end`; lines that are not
/// base64 (Xen's own messages interleaved) are skipped. Checks the FDT header.
pub fn extract_dtb(log: &str) -> Result<Vec<u8>> {
    let mut lines = log.lines().map(|line| line.trim_end_matches('\r'));
    lines
        .by_ref()
        .find(|line| line.starts_with("rig: dtb-begin"))
        .context("no `rig: dtb-begin` line")?;
    let mut encoded = String::new();
    let mut ended = false;
    for line in lines {
        if line.starts_with("rig: dtb-end") {
            ended = true;
            break;
        }
        let is_base64 = !line.is_empty()
            && line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if is_base64 {
            encoded.push_str(line);
        }
    }
    ensure!(ended, "no `rig: dtb-end` line");
    let dtb = base64_decode(&encoded)?;
    ensure!(
        dtb.len() >= 8 && dtb[0..4] == [0xd0, 0x0d, 0xfe, 0xed],
        "the decoded data is not a flattened device tree (magic 0xd00dfeed)"
    );
    let total = u32::from_be_bytes([dtb[4], dtb[5], dtb[6], dtb[7]]) as usize;
    ensure!(
        total == dtb.len(),
        "the device tree header says {total} bytes, {} were decoded",
        dtb.len()
    );
    Ok(dtb)
}

/// Decodes standard base64 (RFC 4648, with padding).
fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let value = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("invalid base64 character {:?}", c as char),
        } as u32)
    };
    let bytes = text.as_bytes();
    ensure!(
        bytes.len().is_multiple_of(4),
        "base64 length {} is not a multiple of 4",
        bytes.len()
    );
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        ensure!(
            padding <= 2 && (padding == 0 || index + 1 == chunks),
            "invalid base64 padding"
        );
        let mut word = 0u32;
        for &c in &chunk[..4 - padding] {
            word = (word << 6) | value(c)?;
        }
        word <<= 6 * padding as u32;
        let decoded = [(word >> 16) as u8, (word >> 8) as u8, word as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Zm9").is_err());
        assert!(base64_decode("Zm9!").is_err());
        assert!(base64_decode("Zg==Zg==").is_err());
    }

    #[test]
    fn dtb_is_extracted_between_markers_skipping_xen_lines() {
        // An 8-byte "tree": magic d00dfeed, totalsize 8.
        let log = "noise\nrig: dtb-begin 8 bytes\r\n0A3+7QAA\n(XEN) d1: something\nAAg=\n\
                   rig: dtb-end\n";
        assert_eq!(
            extract_dtb(log).unwrap(),
            [0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, 8]
        );
    }

    #[test]
    fn truncated_dump_is_rejected() {
        let log = "rig: dtb-begin\n0A3+7QAAAAg=\n";
        assert!(extract_dtb(log)
            .unwrap_err()
            .to_string()
            .contains("dtb-end"));
    }

    #[test]
    fn xl_values_are_read_without_quotes_and_comments() {
        let cfg =
            "# memory = 1\nname = \"vdispl-os\"\nmemory = 32 # MiB\nextra = \"log=info a=b\"\n";
        assert_eq!(xl_value(cfg, "memory").as_deref(), Some("32"));
        assert_eq!(xl_value(cfg, "extra").as_deref(), Some("log=info a=b"));
        assert_eq!(xl_value(cfg, "vcpus"), None);
    }

    #[test]
    fn fragment_puts_dom0_beside_a_guest_with_xenstore() {
        let dom0 = Dom0Modules {
            kernel_size: 0x2400000,
            initramfs_size: 0x1a00000,
            args: "console=hvc0 rig.scenario=dom0less-xenstore",
        };
        let fragment = dom0less_fragment(0x1234, 32, "log=info", Some(&dom0));
        assert!(fragment.contains("dom0_mem=512M"), "{fragment}");
        assert!(
            fragment.contains("reg = <0 0x50000000 0 0x2400000>;\n\t\t\tbootargs = \"console=hvc0 rig.scenario=dom0less-xenstore\";"),
            "{fragment}"
        );
        assert!(
            fragment.contains("\"multiboot,ramdisk\", \"multiboot,module\";\n\t\t\treg = <0 0x58000000 0 0x1a00000>;"),
            "{fragment}"
        );
        assert!(fragment.contains("module@5c000000 {"), "{fragment}");
        assert!(
            fragment.contains("reg = <0 0x5c000000 0 0x1234>;"),
            "{fragment}"
        );
        assert!(
            fragment.contains("xen,enhanced = \"enabled\";"),
            "{fragment}"
        );
        assert!(!fragment.contains("no-xenstore"), "{fragment}");
    }

    #[test]
    fn fragment_describes_the_guest() {
        let fragment = dom0less_fragment(0x1234, 32, "log=info", None);
        assert!(fragment.contains("memory = <0 32768>;"), "{fragment}");
        assert!(
            fragment.contains("reg = <0 0x50000000 0 0x1234>;"),
            "{fragment}"
        );
        assert!(fragment.contains("bootargs = \"log=info\";"), "{fragment}");
        assert!(!fragment.contains("dom0_mem"), "{fragment}");
        assert!(fragment.contains("vpl011;"), "{fragment}");
    }
}
