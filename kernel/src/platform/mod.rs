//! The platform as the device tree describes it, parsed once at boot into one
//! [`Platform`] value that every other part of the kernel takes addresses from.
//!
//! Nodes used are those libxl (tools/libs/light/libxl_arm.c) and Xen's
//! dom0less builder generate: `memory`, the GIC `interrupt-controller`, the
//! Arm generic `timer`, `hypervisor` (Xen), the optional `sbsa-uart` (vpl011)
//! and `/chosen`.

pub mod fdt_check;
mod parse;
mod regions;

pub use parse::parse;
pub use regions::{Region, Regions};

use core::fmt;

/// Which GIC architecture the interrupt controller implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gic {
    /// GICv2: distributor and CPU interface.
    V2 {
        /// GICD registers.
        distributor: Region,
        /// GICC registers.
        cpu_interface: Region,
    },
    /// GICv3: distributor and redistributors (CPU interface in system registers).
    V3 {
        /// GICD registers.
        distributor: Region,
        /// GICR registers, one frame set per CPU.
        redistributor: Region,
    },
}

/// The trigger of an interrupt, from the low bits of the third specifier cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge, rising.
    EdgeRising,
    /// Edge, falling.
    EdgeFalling,
    /// Level, active high.
    LevelHigh,
    /// Level, active low.
    LevelLow,
    /// No trigger given (0) or a combination.
    Unspecified,
}

/// An interrupt as the GIC numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupt {
    /// GIC interrupt ID (PPIs 16-31, SPIs from 32).
    pub intid: u32,
    /// Trigger type.
    pub trigger: Trigger,
}

/// The Xen `hypervisor` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenNode<'dt> {
    /// Version from the compatible string `xen,xen-<version>` ("4.17").
    pub version: &'dt str,
    /// Where grant table frames are to be mapped (first `reg` entry).
    pub grant_table: Region,
    /// Extended regions: free guest-physical space for foreign mappings.
    pub extended_regions: Regions,
    /// The event channel upcall interrupt.
    pub evtchn_upcall: Interrupt,
}

/// The emulated UART (Xen's vpl011, `vuart = "sbsa_uart"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart<'dt> {
    /// First compatible string ("arm,sbsa-uart" or "arm,pl011").
    pub compatible: &'dt str,
    /// Register block.
    pub registers: Region,
    /// Its interrupt, when given.
    pub interrupt: Option<Interrupt>,
}

/// Everything the kernel needs to know about the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform<'dt> {
    /// RAM banks.
    pub memory: Regions,
    /// RAM that must not be used: `/memreserve/` entries and the initrd.
    pub reserved: Regions,
    /// The interrupt controller.
    pub gic: Gic,
    /// The virtual timer's interrupt (third interrupt of the `timer` node).
    pub virtual_timer: Interrupt,
    /// The Xen node.
    pub xen: XenNode<'dt>,
    /// The emulated UART, when the domain has one.
    pub uart: Option<Uart<'dt>>,
    /// `/chosen/bootargs`, empty when absent.
    pub bootargs: &'dt str,
}

/// Why the device tree could not be turned into a [`Platform`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The blob itself is malformed.
    Dtb(fdt_check::DtbError),
    /// A required node is missing (named by what it is for).
    MissingNode(&'static str),
    /// A required property of a node is missing.
    MissingProperty {
        /// The node.
        node: &'static str,
        /// The property.
        property: &'static str,
    },
    /// A property has a value that cannot be right.
    BadProperty {
        /// The node.
        node: &'static str,
        /// The property.
        property: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More regions than the kernel keeps.
    TooManyRegions(&'static str),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlatformError::Dtb(error) => write!(f, "{error}"),
            PlatformError::MissingNode(node) => write!(f, "device tree has no {node} node"),
            PlatformError::MissingProperty { node, property } => {
                write!(f, "device tree node {node} has no `{property}` property")
            }
            PlatformError::BadProperty {
                node,
                property,
                reason,
            } => write!(f, "device tree node {node}: `{property}` {reason}"),
            PlatformError::TooManyRegions(what) => {
                write!(
                    f,
                    "device tree lists more {what} regions than supported ({})",
                    Regions::CAPACITY
                )
            }
        }
    }
}

impl From<fdt_check::DtbError> for PlatformError {
    fn from(error: fdt_check::DtbError) -> Self {
        PlatformError::Dtb(error)
    }
}
