//! The boot report: one fact per line, `report: <key> <value>`, ending with
//! `report: end`. Test scenarios read these lines from the serial console.

use crate::platform::{Gic, Platform, Region, Trigger};
use core::fmt;
use drivers::xen::shared_info::civil_time;
use drivers::xen::xenstore::late::State as StoreState;

/// A Xen event-channel-driven ring page, as its HVM parameters give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingParams {
    /// Guest frame number of the ring page.
    pub pfn: u64,
    /// Event channel port.
    pub evtchn: u32,
}

/// The facts the report prints.
pub struct BootReport<'a> {
    /// The parsed device tree.
    pub platform: &'a Platform<'a>,
    /// Xen's version from `XENVER_version`.
    pub xen_version: (u16, u16),
    /// Xen's extra version (`".7"`), possibly empty.
    pub xen_extraversion: &'a str,
    /// Frequency of the generic timer in Hz.
    pub counter_frequency: u64,
    /// The heap.
    pub heap: Region,
    /// Where the kernel image was loaded (base and size including BSS).
    pub image: Region,
    /// The PV console ring, when the domain has one.
    pub pv_console: Option<RingParams>,
    /// The xenstore ring, when the domain has one, as it was at boot.
    pub xenstore: Option<StoreFacts>,
    /// Where shared_info was mapped and the wall clock it gave, when mapped.
    pub shared_info: Option<SharedInfoFacts>,
    /// The grant table, when it could be set up.
    pub grants: Option<GrantFacts>,
}

/// The store's event channel and what the domain found at boot: a connected page, or a store
/// still to come (`drivers::xen::xenstore::late`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreFacts {
    /// `HVM_PARAM_STORE_EVTCHN`.
    pub evtchn: u32,
    /// The page's state.
    pub state: StoreState,
}

impl StoreFacts {
    /// A store connected at boot, as a domain the toolstack built finds it.
    pub fn connected(params: RingParams) -> Self {
        Self {
            evtchn: params.evtchn,
            state: StoreState::Connected { pfn: params.pfn },
        }
    }
}

/// How the grant table was set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantFacts {
    /// Frames mapped at start.
    pub frames: u32,
    /// Frames the table may grow to as references run out.
    pub limit_frames: u32,
    /// Frames Xen allows (`max_grant_frames`).
    pub max_frames: u32,
    /// References available to hand out.
    pub capacity: u32,
}

/// What mapping the shared info page showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfoFacts {
    /// Guest frame number where Xen placed the page.
    pub gpfn: u64,
    /// Wall clock (seconds since the epoch) at the domain's time zero, if
    /// Xen provides one.
    pub wallclock: Option<u64>,
}

fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::EdgeRising => "edge-rising",
        Trigger::EdgeFalling => "edge-falling",
        Trigger::LevelHigh => "level-high",
        Trigger::LevelLow => "level-low",
        Trigger::Unspecified => "unspecified",
    }
}

fn ring(f: &mut fmt::Formatter<'_>, name: &str, params: Option<RingParams>) -> fmt::Result {
    match params {
        Some(RingParams { pfn, evtchn }) => {
            writeln!(f, "report: {name} pfn {pfn:#x} evtchn {evtchn}")
        }
        None => writeln!(f, "report: {name} absent"),
    }
}

impl fmt::Display for BootReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let platform = self.platform;
        let (major, minor) = self.xen_version;
        writeln!(
            f,
            "report: xen-version {major}.{minor}{} (device tree: xen,xen-{})",
            self.xen_extraversion, platform.xen.version
        )?;
        match platform.gic {
            Gic::V2 {
                distributor,
                cpu_interface,
            } => writeln!(
                f,
                "report: gic v2 distributor {distributor} cpu-interface {cpu_interface}"
            )?,
            Gic::V3 {
                distributor,
                redistributor,
            } => writeln!(
                f,
                "report: gic v3 distributor {distributor} redistributor {redistributor}"
            )?,
        }
        let timer = platform.virtual_timer;
        writeln!(
            f,
            "report: timer virtual intid {} {} frequency {} Hz",
            timer.intid,
            trigger_name(timer.trigger),
            self.counter_frequency
        )?;
        let upcall = platform.xen.evtchn_upcall;
        writeln!(
            f,
            "report: evtchn-upcall intid {} {}",
            upcall.intid,
            trigger_name(upcall.trigger)
        )?;
        writeln!(f, "report: grant-table {}", platform.xen.grant_table)?;
        match self.grants {
            Some(grants) => writeln!(
                f,
                "report: grant-frames {} mapped, growing to {} (Xen allows {}), {} references",
                grants.frames, grants.limit_frames, grants.max_frames, grants.capacity
            )?,
            None => writeln!(f, "report: grant-frames unavailable")?,
        }
        for region in platform.xen.extended_regions.iter() {
            writeln!(f, "report: extended-region {region}")?;
        }
        for bank in platform.memory.iter() {
            writeln!(f, "report: memory {bank} ({} MiB)", bank.size >> 20)?;
        }
        for region in platform.reserved.iter() {
            writeln!(f, "report: reserved {region}")?;
        }
        writeln!(f, "report: image {}", self.image)?;
        writeln!(
            f,
            "report: heap {} ({} KiB)",
            self.heap,
            self.heap.size >> 10
        )?;
        if let Some(facts) = self.shared_info {
            write!(f, "report: shared-info gpfn {:#x}", facts.gpfn)?;
            match facts.wallclock {
                Some(seconds) => {
                    let (year, month, day, hour, minute, second) = civil_time(seconds);
                    writeln!(
                        f,
                        " wallclock {year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"
                    )?;
                }
                None => writeln!(f, " wallclock unavailable")?,
            }
        }
        ring(f, "console", self.pv_console)?;
        match self.xenstore {
            Some(StoreFacts {
                evtchn,
                state: StoreState::Connected { pfn },
            }) => ring(f, "xenstore", Some(RingParams { pfn, evtchn }))?,
            Some(StoreFacts {
                state: StoreState::Absent,
                ..
            })
            | None => ring(f, "xenstore", None)?,
            Some(StoreFacts { evtchn, state }) => {
                writeln!(f, "report: xenstore late evtchn {evtchn}: {state}")?
            }
        }
        match &platform.uart {
            Some(uart) => {
                write!(f, "report: uart {} {}", uart.compatible, uart.registers)?;
                match uart.interrupt {
                    Some(interrupt) => writeln!(f, " intid {}", interrupt.intid)?,
                    None => writeln!(f)?,
                }
            }
            None => writeln!(f, "report: uart absent")?,
        }
        writeln!(f, "report: bootargs {:?}", platform.bootargs)?;
        writeln!(f, "report: end")
    }
}
