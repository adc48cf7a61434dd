//! Device tree to [`Platform`]: walks the validated tree with the `fdt` crate
//! and decodes every property from its raw bytes, checking lengths and cell
//! counts, so that no value from the blob is trusted unchecked.

use super::fdt_check::{self, DtbError};
use super::{Gic, Interrupt, Platform, PlatformError, Region, Regions, Trigger, Uart, XenNode};
use fdt::node::FdtNode;
use fdt::Fdt;

/// Address and size cell counts that apply to a node's `reg`.
#[derive(Clone, Copy)]
struct Cells {
    address: usize,
    size: usize,
}

/// What the walk has found so far.
#[derive(Default)]
struct Found<'dt> {
    memory: Regions,
    reserved: Regions,
    gic: Option<Gic>,
    gic_interrupt_cells: Option<u32>,
    timer_interrupts: Option<&'dt [u8]>,
    xen: Option<(&'dt str, Regions, &'dt [u8])>,
    uart: Option<(&'dt str, Region, Option<&'dt [u8]>)>,
    bootargs: &'dt str,
}

const GIC_V3: &[&str] = &["arm,gic-v3"];
const GIC_V2: &[&str] = &[
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,gic-400",
    "arm,cortex-a7-gic",
];
const UARTS: &[&str] = &["arm,sbsa-uart", "arm,pl011"];

/// Parses a device tree blob into the platform description.
pub fn parse(blob: &[u8]) -> Result<Platform<'_>, PlatformError> {
    let checked = fdt_check::validate(blob)?;
    let fdt = Fdt::new(checked.bytes).map_err(|_| DtbError::BadMagic(0))?;
    let root = fdt
        .find_node("/")
        .ok_or(PlatformError::MissingNode("root"))?;
    let mut found = Found::default();
    for reservation in checked.reservations() {
        found
            .reserved
            .push(Region::new(reservation.address, reservation.size))
            .map_err(|_| PlatformError::TooManyRegions("reserved"))?;
    }
    let root_cells = child_cells(&root, "/")?;
    for child in root.children() {
        visit(&child, root_cells, &mut found)?;
    }
    finish(found)
}

fn visit<'dt>(
    node: &FdtNode<'_, 'dt>,
    cells: Cells,
    found: &mut Found<'dt>,
) -> Result<(), PlatformError> {
    let name = node.name;
    let compatible = string_list(node, "compatible");
    let is = |list: &[&str]| compatible.clone().any(|entry| list.contains(&entry));

    if name == "chosen" {
        return visit_chosen(node, found);
    }
    if string_list(node, "device_type").any(|kind| kind == "memory") {
        for region in regs(node, cells, "memory")? {
            found
                .memory
                .push(region?)
                .map_err(|_| PlatformError::TooManyRegions("memory"))?;
        }
    } else if is(GIC_V3) || is(GIC_V2) {
        if found.gic.is_none() {
            visit_gic(node, cells, is(GIC_V3), found)?;
        }
    } else if is(&["arm,armv8-timer", "arm,armv7-timer"]) {
        found.timer_interrupts = Some(property(node, "interrupts").ok_or(
            PlatformError::MissingProperty {
                node: "timer",
                property: "interrupts",
            },
        )?);
    } else if is(&["xen,xen"]) || name == "hypervisor" {
        visit_hypervisor(node, cells, compatible.clone(), found)?;
    } else if is(UARTS) {
        let better = found
            .uart
            .is_none_or(|(kind, _, _)| kind != UARTS[0] && is(&UARTS[..1]));
        if better {
            let registers =
                regs(node, cells, "uart")?
                    .next()
                    .ok_or(PlatformError::MissingProperty {
                        node: "uart",
                        property: "reg",
                    })??;
            let kind = compatible.clone().next().unwrap_or("");
            found.uart = Some((kind, registers, property(node, "interrupts")));
        }
    }

    // Children of simple buses use this node's cell counts.
    let inner = child_cells(node, "bus")?;
    for child in node.children() {
        visit(&child, inner, found)?;
    }
    Ok(())
}

fn visit_chosen<'dt>(node: &FdtNode<'_, 'dt>, found: &mut Found<'dt>) -> Result<(), PlatformError> {
    if let Some(value) = property(node, "bootargs") {
        found.bootargs = c_string(value).ok_or(PlatformError::BadProperty {
            node: "/chosen",
            property: "bootargs",
            reason: "is not a NUL-terminated UTF-8 string",
        })?;
    }
    let start = property(node, "linux,initrd-start");
    let end = property(node, "linux,initrd-end");
    if let (Some(start), Some(end)) = (start, end) {
        let bad = |property| PlatformError::BadProperty {
            node: "/chosen",
            property,
            reason: "is not a 32- or 64-bit number",
        };
        let start = number(start).ok_or(bad("linux,initrd-start"))?;
        let end = number(end).ok_or(bad("linux,initrd-end"))?;
        if end > start {
            found
                .reserved
                .push(Region::new(start, end - start))
                .map_err(|_| PlatformError::TooManyRegions("reserved"))?;
        }
    }
    Ok(())
}

fn visit_gic<'dt>(
    node: &FdtNode<'_, 'dt>,
    cells: Cells,
    v3: bool,
    found: &mut Found<'dt>,
) -> Result<(), PlatformError> {
    const NODE: &str = "interrupt-controller (GIC)";
    let mut reg = regs(node, cells, NODE)?;
    let missing = PlatformError::BadProperty {
        node: NODE,
        property: "reg",
        reason: "lists fewer than two regions",
    };
    let distributor = reg.next().ok_or(missing)??;
    let second = reg.next().ok_or(missing)??;
    found.gic = Some(if v3 {
        Gic::V3 {
            distributor,
            redistributor: second,
        }
    } else {
        Gic::V2 {
            distributor,
            cpu_interface: second,
        }
    });
    let interrupt_cells =
        property(node, "#interrupt-cells").ok_or(PlatformError::MissingProperty {
            node: NODE,
            property: "#interrupt-cells",
        })?;
    found.gic_interrupt_cells = Some(be32(interrupt_cells).ok_or(PlatformError::BadProperty {
        node: NODE,
        property: "#interrupt-cells",
        reason: "is not one cell",
    })?);
    Ok(())
}

fn visit_hypervisor<'dt>(
    node: &FdtNode<'_, 'dt>,
    cells: Cells,
    compatible: impl Iterator<Item = &'dt str>,
    found: &mut Found<'dt>,
) -> Result<(), PlatformError> {
    const NODE: &str = "/hypervisor";
    let mut version = None;
    for entry in compatible {
        if let Some(rest) = entry.strip_prefix("xen,xen-") {
            version = Some(rest);
        }
    }
    let version = version.ok_or(PlatformError::BadProperty {
        node: NODE,
        property: "compatible",
        reason: "has no \"xen,xen-<version>\" entry",
    })?;
    let mut regions = Regions::default();
    for region in regs(node, cells, NODE)? {
        regions
            .push(region?)
            .map_err(|_| PlatformError::TooManyRegions("hypervisor"))?;
    }
    if regions.is_empty() {
        return Err(PlatformError::MissingProperty {
            node: NODE,
            property: "reg",
        });
    }
    let interrupts = property(node, "interrupts").ok_or(PlatformError::MissingProperty {
        node: NODE,
        property: "interrupts",
    })?;
    found.xen = Some((version, regions, interrupts));
    Ok(())
}

fn finish(found: Found<'_>) -> Result<Platform<'_>, PlatformError> {
    if found.memory.is_empty() {
        return Err(PlatformError::MissingNode("memory"));
    }
    let gic = found
        .gic
        .ok_or(PlatformError::MissingNode("interrupt-controller (GIC)"))?;
    let interrupt_cells = found.gic_interrupt_cells.unwrap_or(3);
    let (version, regions, upcall) = found.xen.ok_or(PlatformError::MissingNode("/hypervisor"))?;
    let timer = found
        .timer_interrupts
        .ok_or(PlatformError::MissingNode("timer"))?;
    let virtual_timer = interrupt(timer, 2, interrupt_cells, "timer")?;
    let evtchn_upcall = interrupt(upcall, 0, interrupt_cells, "/hypervisor")?;
    let mut extended_regions = Regions::default();
    for region in &regions.as_slice()[1..] {
        // Cannot fail: `regions` has the same capacity.
        let _ = extended_regions.push(*region);
    }
    let uart = match found.uart {
        Some((compatible, registers, interrupts)) => Some(Uart {
            compatible,
            registers,
            interrupt: match interrupts {
                Some(value) => Some(interrupt(value, 0, interrupt_cells, "uart")?),
                None => None,
            },
        }),
        None => None,
    };
    Ok(Platform {
        memory: found.memory,
        reserved: found.reserved,
        gic,
        virtual_timer,
        xen: XenNode {
            version,
            grant_table: regions.as_slice()[0],
            extended_regions,
            evtchn_upcall,
        },
        uart,
        bootargs: found.bootargs,
    })
}

fn property<'dt>(node: &FdtNode<'_, 'dt>, name: &str) -> Option<&'dt [u8]> {
    node.properties()
        .find(|candidate| candidate.name == name)
        .map(|found| found.value)
}

fn be32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn number(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => be32(bytes).map(u64::from),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

fn c_string(bytes: &[u8]) -> Option<&str> {
    let (last, text) = bytes.split_last()?;
    if *last != 0 {
        return None;
    }
    core::str::from_utf8(text).ok()
}

/// The entries of a string-list property; entries that are not UTF-8 are
/// skipped, a missing property yields nothing.
fn string_list<'dt>(node: &FdtNode<'_, 'dt>, name: &str) -> impl Iterator<Item = &'dt str> + Clone {
    property(node, name)
        .unwrap_or(&[])
        .split(|&byte| byte == 0)
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| core::str::from_utf8(entry).ok())
}

/// The cell counts a node sets for its children (spec defaults: 2 and 1).
fn child_cells(node: &FdtNode<'_, '_>, what: &'static str) -> Result<Cells, PlatformError> {
    let read = |property_name: &'static str, default: usize| match property(node, property_name) {
        None => Ok(default),
        Some(value) => match be32(value) {
            Some(count @ 0..=2) => Ok(count as usize),
            _ => Err(PlatformError::BadProperty {
                node: what,
                property: property_name,
                reason: "is not 0, 1 or 2 cells",
            }),
        },
    };
    Ok(Cells {
        address: read("#address-cells", 2)?,
        size: read("#size-cells", 1)?,
    })
}

fn read_cells(bytes: &[u8], count: usize) -> u64 {
    bytes.chunks_exact(4).take(count).fold(0, |value, cell| {
        (value << 32) | u64::from(be32(cell).unwrap_or(0))
    })
}

/// The `reg` entries of a node as regions, after checking the length.
fn regs<'dt>(
    node: &FdtNode<'_, 'dt>,
    cells: Cells,
    what: &'static str,
) -> Result<impl Iterator<Item = Result<Region, PlatformError>> + 'dt, PlatformError> {
    let value = property(node, "reg").ok_or(PlatformError::MissingProperty {
        node: what,
        property: "reg",
    })?;
    let entry = (cells.address + cells.size) * 4;
    if cells.address == 0 || entry == 0 || value.len() % entry != 0 {
        return Err(PlatformError::BadProperty {
            node: what,
            property: "reg",
            reason: "length is not a multiple of (#address-cells + #size-cells) cells",
        });
    }
    Ok(value.chunks_exact(entry).map(move |chunk| {
        let (address, size) = chunk.split_at(cells.address * 4);
        let region = Region::new(
            read_cells(address, cells.address),
            read_cells(size, cells.size),
        );
        if region.base.checked_add(region.size).is_none() {
            return Err(PlatformError::BadProperty {
                node: what,
                property: "reg",
                reason: "describes a region past the end of the address space",
            });
        }
        Ok(region)
    }))
}

/// Decodes interrupt specifier `index` of an `interrupts` value for the GIC
/// binding: `<type number flags>`, type 0 = SPI (ID 32 + number), 1 = PPI
/// (ID 16 + number).
fn interrupt(
    value: &[u8],
    index: usize,
    cells: u32,
    node: &'static str,
) -> Result<Interrupt, PlatformError> {
    let bad = |reason| PlatformError::BadProperty {
        node,
        property: "interrupts",
        reason,
    };
    if cells != 3 {
        return Err(bad("uses a GIC binding other than three cells"));
    }
    let specifier = value
        .chunks_exact(12)
        .nth(index)
        .ok_or(bad("has too few interrupt specifiers"))?;
    let kind = be32(&specifier[0..4]).unwrap_or(u32::MAX);
    let number = be32(&specifier[4..8]).unwrap_or(u32::MAX);
    let flags = be32(&specifier[8..12]).unwrap_or(0);
    let intid = match (kind, number) {
        (0, 0..=987) => number + 32,
        (1, 0..=15) => number + 16,
        _ => {
            return Err(bad(
                "names an interrupt that is neither a valid SPI nor PPI",
            ))
        }
    };
    let trigger = match flags & 0xf {
        1 => Trigger::EdgeRising,
        2 => Trigger::EdgeFalling,
        4 => Trigger::LevelHigh,
        8 => Trigger::LevelLow,
        _ => Trigger::Unspecified,
    };
    Ok(Interrupt { intid, trigger })
}
