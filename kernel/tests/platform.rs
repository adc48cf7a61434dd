//! Device tree parsing against real guest DTBs dumped from libxl in the rig
//! (`cargo xtask dump-dtbs`), and against broken trees that must give named
//! errors, never a panic.

mod support;

use kernel::platform::fdt_check::DtbError;
use kernel::platform::{parse, Gic, Interrupt, PlatformError, Region, Trigger};
use support::{cells, guest_tree, strings, FdtBuilder};

const XL_GICV2: &[u8] = include_bytes!("fixtures/xl-gicv2.dtb");
const XL_GICV3: &[u8] = include_bytes!("fixtures/xl-gicv3.dtb");
/// The same guest's trees from Xen 4.20's libxl (`cargo xtask dump-dtbs --xen 4.20`).
const XL_4_20_GICV2: &[u8] = include_bytes!("fixtures/xl-4.20-gicv2.dtb");
const XL_4_20_GICV3: &[u8] = include_bytes!("fixtures/xl-4.20-gicv3.dtb");

fn level_low(intid: u32) -> Interrupt {
    Interrupt {
        intid,
        trigger: Trigger::LevelLow,
    }
}

// Expected values below are read from `dtc -I dtb -O dts` of the fixtures.

#[test]
fn xl_gicv3_tree_gives_the_whole_platform() {
    let platform = parse(XL_GICV3).expect("fixture parses");
    assert_eq!(
        platform.memory.as_slice(),
        &[Region::new(0x4000_0000, 0x200_0000)]
    );
    assert_eq!(
        platform.gic,
        Gic::V3 {
            distributor: Region::new(0x0300_1000, 0x1_0000),
            redistributor: Region::new(0x0302_0000, 0x100_0000),
        }
    );
    assert_eq!(platform.virtual_timer, level_low(27));
    assert_eq!(platform.xen.version, "4.17");
    assert_eq!(
        platform.xen.grant_table,
        Region::new(0x3800_0000, 0x100_0000)
    );
    assert_eq!(
        platform.xen.extended_regions.as_slice(),
        &[
            Region::new(0x4200_0000, 0xbe00_0000),
            Region::new(0x2_0000_0000, 0xfe_0000_0000)
        ]
    );
    assert_eq!(platform.xen.evtchn_upcall, level_low(31));
    let uart = platform.uart.expect("vpl011 node");
    assert_eq!(uart.compatible, "arm,sbsa-uart");
    assert_eq!(uart.registers, Region::new(0x2200_0000, 0x1000));
    assert_eq!(
        uart.interrupt,
        Some(Interrupt {
            intid: 32,
            trigger: Trigger::LevelHigh
        })
    );
    assert_eq!(platform.bootargs, "log=info");
    assert!(platform.reserved.is_empty());
}

#[test]
fn xl_gicv2_tree_gives_distributor_and_cpu_interface() {
    let platform = parse(XL_GICV2).expect("fixture parses");
    assert_eq!(
        platform.gic,
        Gic::V2 {
            distributor: Region::new(0x0300_1000, 0x1000),
            cpu_interface: Region::new(0x0300_2000, 0x2000),
        }
    );
    assert_eq!(platform.virtual_timer.intid, 27);
    assert_eq!(platform.xen.evtchn_upcall.intid, 31);
    assert_eq!(platform.memory.total_size(), 0x200_0000);
}

/// Xen 4.20's libxl lays the guest out as 4.17's does: the same memory, GIC, timer, grant
/// table, extended regions, event channel interrupt and vpl011; only the version in the
/// compatible strings differs.
#[test]
fn xen_4_20_trees_give_the_platform_of_4_17_with_its_version() {
    for (old, new) in [(XL_GICV2, XL_4_20_GICV2), (XL_GICV3, XL_4_20_GICV3)] {
        let old = parse(old).expect("4.17 fixture parses");
        let new = parse(new).expect("4.20 fixture parses");
        assert_eq!(old.xen.version, "4.17");
        assert_eq!(new.xen.version, "4.20");
        assert_eq!(new.memory.as_slice(), old.memory.as_slice());
        assert_eq!(new.gic, old.gic);
        assert_eq!(new.virtual_timer, old.virtual_timer);
        assert_eq!(new.xen.grant_table, old.xen.grant_table);
        assert_eq!(
            new.xen.extended_regions.as_slice(),
            old.xen.extended_regions.as_slice()
        );
        assert_eq!(new.xen.evtchn_upcall, old.xen.evtchn_upcall);
        assert_eq!(new.uart, old.uart);
        assert_eq!(new.bootargs, old.bootargs);
        assert_eq!(new.reserved.as_slice(), old.reserved.as_slice());
    }
    assert!(matches!(parse(XL_4_20_GICV3).unwrap().gic, Gic::V3 { .. }));
    assert!(matches!(parse(XL_4_20_GICV2).unwrap().gic, Gic::V2 { .. }));
}

#[test]
fn builder_tree_parses_like_libxl_output() {
    let blob = guest_tree(&[], &[]);
    let platform = parse(&blob).unwrap();
    assert_eq!(
        platform.memory.as_slice(),
        &[Region::new(0x4000_0000, 0x400_0000)]
    );
    assert_eq!(platform.bootargs, "scene=bars loglevel=debug");
    assert!(platform.xen.extended_regions.is_empty());
}

fn error_of(blob: &[u8]) -> PlatformError {
    parse(blob).expect_err("tree must be rejected")
}

#[test]
fn missing_nodes_are_named() {
    let cases = [
        ("hypervisor", "device tree has no /hypervisor node"),
        (
            "interrupt-controller@3001000",
            "device tree has no interrupt-controller (GIC) node",
        ),
        ("timer", "device tree has no timer node"),
        ("memory@40000000", "device tree has no memory node"),
    ];
    for (node, message) in cases {
        let error = error_of(&guest_tree(&[node], &[]));
        assert_eq!(error.to_string(), message, "without {node}");
    }
}

#[test]
fn missing_uart_is_not_an_error() {
    let blob = guest_tree(&["sbsa-pl011"], &[]);
    let platform = parse(&blob).unwrap();
    assert_eq!(platform.uart, None);
}

#[test]
fn bad_reg_sizes_are_rejected() {
    for node in [
        "hypervisor",
        "memory@40000000",
        "interrupt-controller@3001000",
    ] {
        let error = error_of(&guest_tree(
            &[],
            &[(node, "reg", cells(&[0, 0x3800_0000, 0]))],
        ));
        assert!(
            matches!(
                error,
                PlatformError::BadProperty {
                    property: "reg",
                    ..
                }
            ),
            "{node}: {error:?}"
        );
        assert!(
            error.to_string().contains("`reg` length is not a multiple"),
            "{error}"
        );
    }
    let one_region = cells(&[0, 0x0300_1000, 0, 0x1_0000]);
    let error = error_of(&guest_tree(
        &[],
        &[("interrupt-controller@3001000", "reg", one_region)],
    ));
    assert_eq!(
        error.to_string(),
        "device tree node interrupt-controller (GIC): `reg` lists fewer than two regions"
    );
    let wrapping = cells(&[0xffff_ffff, 0xffff_f000, 0, 0x2000]);
    let error = error_of(&guest_tree(&[], &[("hypervisor", "reg", wrapping)]));
    assert!(
        error
            .to_string()
            .contains("past the end of the address space"),
        "{error}"
    );
}

#[test]
fn hypervisor_node_needs_version_reg_and_interrupt() {
    let error = error_of(&guest_tree(
        &[],
        &[("hypervisor", "compatible", strings(&["xen,xen"]))],
    ));
    assert!(error.to_string().contains("xen,xen-<version>"), "{error}");
    let error = error_of(&guest_tree(&[], &[("hypervisor", "interrupts", vec![])]));
    assert_eq!(
        error,
        PlatformError::MissingProperty {
            node: "/hypervisor",
            property: "interrupts"
        }
    );
    let error = error_of(&guest_tree(&[], &[("hypervisor", "reg", vec![])]));
    assert_eq!(
        error.to_string(),
        "device tree node /hypervisor has no `reg` property"
    );
}

#[test]
fn bad_interrupt_specifiers_are_rejected() {
    let two = cells(&[1, 13, 0xf08, 1, 14, 0xf08]);
    let error = error_of(&guest_tree(&[], &[("timer", "interrupts", two)]));
    assert!(
        error.to_string().contains("too few interrupt specifiers"),
        "{error}"
    );
    let bad_ppi = cells(&[1, 16, 0xf08]);
    let error = error_of(&guest_tree(&[], &[("hypervisor", "interrupts", bad_ppi)]));
    assert!(
        error.to_string().contains("neither a valid SPI nor PPI"),
        "{error}"
    );
    let two_cells = cells(&[2]);
    let error = error_of(&guest_tree(
        &[],
        &[(
            "interrupt-controller@3001000",
            "#interrupt-cells",
            two_cells,
        )],
    ));
    assert!(
        error.to_string().contains("other than three cells"),
        "{error}"
    );
}

#[test]
fn truncated_blobs_are_errors_at_every_length() {
    for length in 0..XL_GICV3.len() {
        let error = error_of(&XL_GICV3[..length]);
        assert!(
            matches!(error, PlatformError::Dtb(DtbError::Truncated { .. })),
            "{length}: {error:?}"
        );
    }
    assert_eq!(
        error_of(&XL_GICV3[..100]).to_string(),
        format!(
            "device tree is truncated: 100 bytes present, {} needed",
            XL_GICV3.len()
        )
    );
}

#[test]
fn bad_magic_and_version_are_named() {
    let mut blob = XL_GICV3.to_vec();
    blob[0] = 0;
    assert_eq!(
        error_of(&blob).to_string(),
        "device tree magic is 0x000dfeed, expected 0xd00dfeed"
    );
    let mut blob = XL_GICV3.to_vec();
    blob[20..24].copy_from_slice(&15u32.to_be_bytes());
    assert_eq!(
        error_of(&blob),
        PlatformError::Dtb(DtbError::UnsupportedVersion(15))
    );
}

#[test]
fn malformed_structure_blocks_are_named() {
    let mut builder = FdtBuilder::default();
    builder.begin("").begin("hypervisor");
    let unbalanced = builder.build();
    assert!(
        error_of(&unbalanced)
            .to_string()
            .contains("FDT_END inside a node"),
        "{}",
        error_of(&unbalanced)
    );
    let mut blob = guest_tree(&[], &[]);
    // The first token after the header and the reservation map.
    let struct_offset = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    blob[struct_offset..struct_offset + 4].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(
        error_of(&blob),
        PlatformError::Dtb(DtbError::Structure {
            offset: 0,
            reason: "unknown token"
        })
    );
}

#[test]
fn every_single_byte_corruption_is_handled_without_panic() {
    for blob in [XL_GICV2, XL_GICV3] {
        for index in 0..blob.len() {
            for mask in [0xff, 0x01, 0x80] {
                let mut corrupted = blob.to_vec();
                corrupted[index] ^= mask;
                if let Err(error) = parse(&corrupted) {
                    assert!(!error.to_string().is_empty());
                }
            }
        }
    }
}

#[test]
fn reservations_and_initrd_are_kept_off_limits() {
    let mut builder = FdtBuilder::default();
    builder.reserve(0x4100_0000, 0x1000);
    builder.begin("");
    builder
        .prop("#address-cells", &cells(&[2]))
        .prop("#size-cells", &cells(&[2]));
    builder
        .begin("chosen")
        .prop("linux,initrd-start", &cells(&[0x4800_0000]))
        .prop("linux,initrd-end", &cells(&[0, 0x4810_0000]))
        .end();
    builder
        .begin("memory@40000000")
        .prop("device_type", &strings(&["memory"]))
        .prop("reg", &cells(&[0, 0x4000_0000, 0, 0x1000_0000]))
        .end();
    builder
        .begin("gic")
        .prop(
            "compatible",
            &strings(&["arm,cortex-a15-gic", "arm,cortex-a9-gic"]),
        )
        .prop("#interrupt-cells", &cells(&[3]))
        .prop(
            "reg",
            &cells(&[0, 0x0300_1000, 0, 0x1000, 0, 0x0300_2000, 0, 0x2000]),
        )
        .end();
    builder
        .begin("timer")
        .prop("compatible", &strings(&["arm,armv8-timer"]))
        .prop(
            "interrupts",
            &cells(&[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08]),
        )
        .end();
    builder
        .begin("hypervisor")
        .prop("compatible", &strings(&["xen,xen-4.19", "xen,xen"]))
        .prop("reg", &cells(&[0, 0x3800_0000, 0, 0x100_0000]))
        .prop("interrupts", &cells(&[1, 15, 0xf08]))
        .end();
    builder.end();
    let blob = builder.build();
    let platform = parse(&blob).unwrap();
    assert_eq!(
        platform.reserved.as_slice(),
        &[
            Region::new(0x4100_0000, 0x1000),
            Region::new(0x4800_0000, 0x10_0000)
        ]
    );
    assert_eq!(platform.xen.version, "4.19");
    assert!(matches!(platform.gic, Gic::V2 { .. }));
    assert_eq!(platform.bootargs, "");
}
