//! Kernel module dependencies from the modules themselves: Debian's kernel package ships no
//! `modules.dep` (depmod writes it at install time), but every `.ko` names the modules it needs
//! in the `depends=` entry of its `.modinfo` section. [`load_order`] turns that into the order
//! `insmod` needs: each module after everything it depends on.

use anyhow::{bail, Context, Result};
use object::read::elf::{FileHeader, SectionHeader};
use object::{elf::FileHeader64, Endianness};
use std::collections::BTreeSet;

/// The `key=value` entries of a module's `.modinfo` section.
pub fn entries(ko: &[u8]) -> Result<Vec<String>> {
    let header = FileHeader64::<Endianness>::parse(ko).context("not a 64-bit ELF file")?;
    let endian = header.endian()?;
    let sections = header.sections(endian, ko)?;
    let Some((_, section)) = sections
        .iter()
        .enumerate()
        .find(|(_, section)| sections.section_name(endian, section) == Ok(b".modinfo".as_slice()))
    else {
        bail!("no .modinfo section");
    };
    let data = section.data(endian, ko)?;
    Ok(data
        .split(|&byte| byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect())
}

/// The modules a module depends on (its `depends=` entry; empty when it needs none).
pub fn depends(ko: &[u8]) -> Result<Vec<String>> {
    Ok(entries(ko)?
        .iter()
        .find_map(|entry| entry.strip_prefix("depends="))
        .map(|list| {
            list.split(',')
                .filter(|name| !name.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default())
}

/// A module's name as the kernel knows it: `-` and `_` are the same.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// `wanted` and everything they depend on, each after its dependencies. `depends_of` gives a
/// module's dependencies by name. A dependency cycle is an error.
pub fn load_order(
    wanted: &[&str],
    mut depends_of: impl FnMut(&str) -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for name in wanted {
        visit(
            &canonical(name),
            &mut depends_of,
            &mut Vec::new(),
            &mut done,
            &mut order,
        )?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    depends_of: &mut impl FnMut(&str) -> Result<Vec<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) -> Result<()> {
    if done.contains(name) {
        return Ok(());
    }
    if path.iter().any(|seen| seen == name) {
        bail!(
            "kernel modules depend on each other in a cycle: {} -> {name}",
            path.join(" -> ")
        );
    }
    path.push(name.to_string());
    for dependency in depends_of(name).with_context(|| format!("module {name}"))? {
        visit(&canonical(&dependency), depends_of, path, done, order)?;
    }
    path.pop();
    done.insert(name.to_string());
    order.push(name.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(name, deps)| {
                (
                    name.to_string(),
                    deps.iter().map(|dep| dep.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        // The 9p modules of Debian's 6.1 kernel.
        let modules = graph(&[
            ("9p", &["9pnet", "fscache", "netfs"]),
            ("fscache", &["netfs"]),
            ("netfs", &[]),
            ("9pnet", &[]),
            ("9pnet_virtio", &["9pnet"]),
            ("virtio_mmio", &[]),
        ]);
        let order = load_order(&["virtio_mmio", "9pnet_virtio", "9p"], |name| {
            modules
                .get(name)
                .cloned()
                .with_context(|| format!("{name} not found"))
        })
        .unwrap();
        assert_eq!(
            order,
            [
                "virtio_mmio",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "fscache",
                "9p"
            ]
        );
    }

    #[test]
    fn the_6_12_kernel_needs_netfs_without_fscache() {
        // Debian's 6.12 kernel (Xen 4.20's Dom0) folded fscache into netfs: 9p depends on
        // netfs alone, and no fscache module exists.
        let modules = graph(&[
            ("9p", &["9pnet", "netfs"]),
            ("netfs", &[]),
            ("9pnet", &[]),
            ("9pnet_virtio", &["9pnet"]),
            ("virtio_mmio", &[]),
        ]);
        let order = load_order(&["virtio_mmio", "9pnet_virtio", "9p"], |name| {
            modules
                .get(name)
                .cloned()
                .with_context(|| format!("{name} not found"))
        })
        .unwrap();
        assert_eq!(
            order,
            ["virtio_mmio", "9pnet", "9pnet_virtio", "netfs", "9p"]
        );
    }

    #[test]
    fn cycles_and_missing_modules_are_errors() {
        let cyclic = graph(&[("a", &["b"]), ("b", &["a"])]);
        let error = load_order(&["a"], |name| Ok(cyclic[name].clone())).unwrap_err();
        assert!(
            format!("{error:#}").contains("cycle: a -> b -> a"),
            "{error:#}"
        );
        let error = load_order(&["x-y"], |name| bail!("{name}.ko not found")).unwrap_err();
        assert_eq!(format!("{error:#}"), "module x_y: x_y.ko not found");
    }

    #[test]
    fn names_are_compared_with_dashes_as_underscores() {
        assert_eq!(canonical("xen-gntdev"), "xen_gntdev");
    }

    #[test]
    fn a_file_that_is_not_a_module_is_an_error() {
        assert!(depends(b"not an ELF").is_err());
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(depends(&exe).unwrap_err().to_string().contains(".modinfo"));
    }
}
