//! From the first line of Rust to the boot report: bring the platform up in
//! order, report what was found, power off.

use super::xen::{shutdown, Xen};
use super::{
    console, control, display, heap, irq, logger, mmu, panic, selftest, services, store, time,
};
use arch::mmu::MemoryKind;
use core::fmt::Write;
use drivers::irq::Trigger;
use drivers::uart::pl011::Registers as UartRegisters;
use drivers::xen::console::ConsoleInterface;
use drivers::xen::evtchn;
use drivers::xen::hypercall::{self, HvmParam, ShutdownReason};
use drivers::xen::xenstore::late::{self, STORE_PFN_LATE};
use kernel::platform::{self, fdt_check, Gic, Platform, Region};
use kernel::report::{BootReport, GrantFacts, RingParams, StoreFacts};
use kernel::scenes::SceneSpec;

extern crate alloc;

const PAGE: u64 = 4096;
/// Largest device tree accepted; libxl's are a few KiB.
const MAX_DTB_SIZE: usize = 2 << 20;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The image in memory, BSS and stack included.
fn image_region() -> Region {
    // Only the addresses of the linker symbols are taken, never their values.
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    Region::new(start, end - start)
}

fn page_region(base: u64, size: u64) -> Region {
    let start = base & !(PAGE - 1);
    let end = (base + size).div_ceil(PAGE) * PAGE;
    Region::new(start, end - start)
}

/// A ring page announced through an HVM parameter pair; `None` when the
/// domain has none (dom0less) or Xen refuses.
fn ring_params(pfn: HvmParam, evtchn: HvmParam) -> Option<RingParams> {
    let pfn = hypercall::hvm_get_param(&Xen, pfn)
        .ok()
        .filter(|&pfn| pfn != 0)?;
    let evtchn = hypercall::hvm_get_param(&Xen, evtchn).ok()?;
    Some(RingParams {
        pfn,
        evtchn: u32::try_from(evtchn).ok()?,
    })
}

/// The store's parameters at boot: its event channel and `HVM_PARAM_STORE_PFN`
/// as read then (the page to map at once when it names one). `None` when the
/// domain has no store.
#[derive(Clone, Copy)]
struct StoreParams {
    evtchn: u32,
    pfn: u64,
}

impl StoreParams {
    fn read() -> Option<Self> {
        let pfn = hypercall::hvm_get_param(&Xen, HvmParam::StorePfn)
            .ok()
            .filter(|&pfn| pfn != 0)?;
        let evtchn = hypercall::hvm_get_param(&Xen, HvmParam::StoreEvtchn).ok()?;
        Some(Self {
            evtchn: u32::try_from(evtchn).ok()?,
            pfn,
        })
    }

    /// The page to map at boot: a frame, unless the parameter says the page
    /// is yet to be allocated.
    fn page(self) -> Option<Region> {
        if self.pfn == STORE_PFN_LATE {
            return None;
        }
        store::page_address(self.pfn).map(|address| Region::new(address, PAGE))
    }
}

/// Rust entry point, called by `boot.s` with the MMU on (boot map), caches
/// enabled and a stack.
#[unsafe(no_mangle)]
extern "C" fn _start_rust(dtb_address: u64, _load_address: u64) -> ! {
    arch::exception::set_handler(panic::handle_exception);

    // The device tree's size, from its header (in the boot map's Normal
    // memory; boot.s mapped the gigabyte that holds it).
    // SAFETY: Xen places a device tree of at least a header at x0.
    let header = unsafe { core::slice::from_raw_parts(dtb_address as *const u8, 8) };
    let dtb_size = fdt_check::total_size(header).unwrap_or(0).min(MAX_DTB_SIZE);
    // SAFETY: the blob lies in guest RAM that nothing writes; its length is
    // bounded, and the parser validates every offset inside it.
    let dtb = unsafe { core::slice::from_raw_parts(dtb_address as *const u8, dtb_size.max(8)) };

    let image = image_region();
    let dtb_region = page_region(dtb_address, dtb.len() as u64);
    let pv_console = ring_params(HvmParam::ConsolePfn, HvmParam::ConsoleEvtchn);
    let xenstore = StoreParams::read();

    // First map: what is in use now plus the console page, so that a bad
    // device tree can still be reported.
    let mut early = [
        (image, MemoryKind::Normal),
        (dtb_region, MemoryKind::Normal),
        (Region::new(0, 0), MemoryKind::Normal),
    ];
    if let Some(params) = pv_console {
        early[2].0 = Region::new(params.pfn * PAGE, PAGE);
    }
    // SAFETY: the image (code, data, BSS, stack) and the device tree are
    // mapped Normal at their own addresses.
    if let Err(error) = unsafe { mmu::activate(&early) } {
        console::print(format_args!(
            "vdispl-os: cannot build the page tables: {error}\n"
        ));
        shutdown(ShutdownReason::Crash);
    }
    if let Some(params) = pv_console {
        // SAFETY: Xen provides the console page at this frame for the life of
        // the domain; it is mapped Normal just above, and it is only accessed
        // through atomics.
        let ring = unsafe { &*((params.pfn * PAGE) as *const ConsoleInterface) };
        console::attach_pv(ring, params.evtchn);
    }
    crate::println!("vdispl-os {}: booting", env!("CARGO_PKG_VERSION"));

    let platform = match platform::parse(dtb) {
        Ok(platform) => platform,
        Err(error) => {
            crate::println!("vdispl-os: cannot use the device tree at {dtb_address:#x}: {error}");
            shutdown(ShutdownReason::Crash);
        }
    };
    match bring_up(&platform, image, dtb_region, pv_console, xenstore) {
        Ok(ShutdownReason::Reboot) => {
            crate::println!("vdispl-os: rebooting");
            shutdown(ShutdownReason::Reboot)
        }
        Ok(_) => {
            crate::println!("vdispl-os: powering off");
            shutdown(ShutdownReason::Poweroff)
        }
        Err(error) => {
            crate::println!("vdispl-os: boot failed: {error}");
            shutdown(ShutdownReason::Crash)
        }
    }
}

fn bring_up(
    platform: &Platform<'_>,
    image: Region,
    dtb: Region,
    pv_console: Option<RingParams>,
    xenstore: Option<StoreParams>,
) -> Result<ShutdownReason, alloc_free::Error> {
    for bank in platform.memory.iter() {
        mmu::map(*bank, MemoryKind::Normal)
            .map_err(|error| alloc_free::Error::Map("RAM", error))?;
    }
    let (gic_a, gic_b) = match platform.gic {
        Gic::V2 {
            distributor,
            cpu_interface,
        } => (distributor, cpu_interface),
        Gic::V3 {
            distributor,
            redistributor,
        } => (distributor, redistributor),
    };
    for region in [gic_a, gic_b] {
        mmu::map(region, MemoryKind::Device)
            .map_err(|error| alloc_free::Error::Map("GIC", error))?;
    }
    if let Some(uart) = &platform.uart {
        mmu::map(uart.registers, MemoryKind::Device)
            .map_err(|error| alloc_free::Error::Map("UART", error))?;
        // SAFETY: the UART's registers are mapped Device-nGnRE just above and
        // nothing else drives them.
        let registers = unsafe { &*(uart.registers.base as *const UartRegisters) };
        console::attach_uart(registers);
    }
    if let Some(page) = xenstore.and_then(StoreParams::page) {
        mmu::map(page, MemoryKind::Normal)
            .map_err(|error| alloc_free::Error::Map("xenstore page", error))?;
    }

    let mut used = [
        image,
        dtb,
        Region::default(),
        Region::default(),
        Region::default(),
    ];
    for (slot, region) in used[2..].iter_mut().zip(platform.reserved.iter()) {
        *slot = *region;
    }
    let heap_region = kernel::memory::largest_free(platform.memory.as_slice(), &used)
        .ok_or(alloc_free::Error::NoHeap)?;
    // SAFETY: the range is RAM (mapped Normal above) that holds neither the
    // image, the device tree nor any reserved range.
    unsafe { heap::init(heap_region.base, heap_region.size) };
    logger::init(log_level(platform.bootargs));

    let shared_info = super::shared_info::map()?;
    time::init();
    irq::init(platform.gic).map_err(alloc_free::Error::Irq)?;
    irq::register(
        platform.virtual_timer.intid,
        Trigger::Level,
        time::handle_timer_interrupt,
    )
    .map_err(alloc_free::Error::Irq)?;
    let shared_info_page = super::shared_info::page().ok_or(alloc_free::Error::NoHeap)?;
    services::init_events(shared_info_page, platform.xen.evtchn_upcall)
        .map_err(alloc_free::Error::Irq)?;
    for port in [
        pv_console.map(|ring| ring.evtchn),
        xenstore.map(|store| store.evtchn),
    ]
    .into_iter()
    .flatten()
    {
        if let Err(error) = evtchn::unmask(&Xen, port) {
            log::warn!("cannot unmask event channel {port}: {error}");
        }
    }
    arch::cpu::unmask_irqs();
    if services::init_foreign_window(platform.xen.extended_regions.as_slice()).is_none() {
        log::info!("no extended region: buffers the backend allocates (be-alloc) cannot be mapped");
    }
    let grants = match services::init_grants(platform.xen.grant_table) {
        Ok(setup) => Some(GrantFacts {
            frames: setup.frames,
            limit_frames: setup.limit_frames,
            max_frames: setup.max_frames,
            capacity: setup.capacity,
        }),
        Err(error) => {
            log::error!("grant table unavailable: {error}");
            None
        }
    };
    // What the store looks like now: connected, or still to come (a domain
    // Xen built from the device tree, before the toolstack introduced it).
    let mut late_source = xenstore
        .map(|params| store::LateSource::new(params.evtchn, params.page().map(|_| params.pfn)));
    let store_facts = match (xenstore, late_source.as_mut()) {
        (Some(params), Some(source)) => match late::probe(source) {
            Ok(state) => Some(StoreFacts {
                evtchn: params.evtchn,
                state,
            }),
            Err(error) => {
                crate::println!("xenstore: {error}; going on without xenstore");
                None
            }
        },
        _ => None,
    };
    let (major, minor) = hypercall::xen_version(&Xen);
    let extra = hypercall::xen_extraversion(&Xen).unwrap_or([0; 16]);
    let extra_len = extra
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(extra.len());
    let extraversion = core::str::from_utf8(&extra[..extra_len]).unwrap_or("");
    let report = BootReport {
        platform,
        xen_version: (major, minor),
        xen_extraversion: extraversion,
        counter_frequency: arch::cpu::counter_frequency(),
        heap: heap_region,
        image,
        pv_console,
        xenstore: store_facts,
        shared_info: Some(shared_info),
        grants,
    };
    // Formatting into a heap string first proves the allocator works and
    // sends the report to the consoles in one piece.
    let mut text = alloc::string::String::new();
    let _ = write!(text, "{report}");
    console::print(format_args!("{text}"));
    log::info!(
        "heap in use {} bytes, {} translation tables, {} console bytes dropped, \
         {} interrupts without a handler",
        heap::used(),
        mmu::tables_used(),
        console::dropped_bytes(),
        irq::unhandled()
    );
    crash_if_asked(platform.bootargs);
    let xenstore = match (store_facts, late_source.as_mut()) {
        (
            Some(StoreFacts {
                evtchn,
                state: late::State::Connected { pfn },
            }),
            _,
        ) => {
            let params = RingParams { pfn, evtchn };
            store::init(params);
            Some(params)
        }
        (
            Some(StoreFacts {
                state: late::State::Waiting { .. },
                ..
            }),
            Some(source),
        ) => store::connect_late(source, late_wait_seconds(platform.bootargs)),
        _ => None,
    };
    if xenstore.is_some() {
        if let Err(error) = control::init() {
            log::error!("cannot watch control/shutdown: {error}");
        }
    }
    if bootarg(platform.bootargs, "selftest") != Some("services") {
        if xenstore.is_none() {
            return Ok(ShutdownReason::Poweroff);
        }
        let spec = SceneSpec::from_bootargs(platform.bootargs).unwrap_or_else(|error| {
            log::error!("bootargs: {error}; showing the default scenes");
            SceneSpec::default()
        });
        display::flip_lines_from_bootargs(platform.bootargs);
        let depths = display::depths_from_bootargs(platform.bootargs);
        let outcome = display::run(&spec, platform.bootargs, &depths);
        return Ok(outcome.shutdown.unwrap_or(ShutdownReason::Poweroff));
    }
    selftest::report("evtchn loopback", selftest::evtchn_loopback());
    selftest::report("timer", selftest::timer_deadlines());
    if xenstore.is_none() {
        let local = selftest::grant_offer(0, 1)
            .and_then(|offered| selftest::grant_end(offered, selftest::HANG_NS));
        selftest::report("grant table", local);
        return Ok(ShutdownReason::Poweroff);
    }
    selftest::report("xenstore", selftest::xenstore_round_trip());
    selftest::report("grant", selftest::grant_to_dom0());
    selftest::announce_ready();
    Ok(serve_until_shutdown())
}

/// The main loop: sleeps until an event channel fires, lets xenstore take
/// its messages and run watches, until the toolstack asks for a shutdown.
fn serve_until_shutdown() -> ShutdownReason {
    loop {
        if let Some(reason) = control::take_request() {
            return reason;
        }
        let port = store::port();
        let events = services::events();
        time::wait_until(
            time::now_ns() + 10 * time::NANOS_PER_SECOND,
            || matches!((port, events), (Some(port), Some(events)) if events.is_fired(port)),
        );
        if let (Some(port), Some(events)) = (port, events) {
            events.take(port);
        }
        store::service();
    }
}

/// The value of `name=value` in the bootargs.
fn bootarg<'a>(bootargs: &'a str, name: &str) -> Option<&'a str> {
    bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

/// `crash=panic` or `crash=data-abort` in the bootargs exercises the panic
/// handler or the exception vectors, so tests can check what they print.
fn crash_if_asked(bootargs: &str) {
    match bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("crash="))
    {
        Some("panic") => panic!("crash requested by the bootargs"),
        Some("data-abort") => {
            // Nothing is mapped at the first gigabyte's 256 MiB mark.
            let unmapped = 0x1000_0000 as *const u64;
            // SAFETY: the read faults before it returns anything; the
            // exception handler reports it and shuts the domain down.
            let value = unsafe { unmapped.read_volatile() };
            log::error!("read {value:#x} from an address that should be unmapped");
        }
        Some(other) => log::warn!("crash={other} is not one of panic, data-abort; ignored"),
        None => {}
    }
}

/// `xenstore-wait=<seconds>` from the bootargs: how long to wait for a store
/// that was not up at boot.
fn late_wait_seconds(bootargs: &str) -> u64 {
    match bootarg(bootargs, "xenstore-wait").map(str::parse::<u64>) {
        Some(Ok(seconds)) => seconds,
        Some(Err(_)) => {
            log::warn!(
                "xenstore-wait= takes whole seconds; waiting {} s",
                store::DEFAULT_LATE_WAIT_SECONDS
            );
            store::DEFAULT_LATE_WAIT_SECONDS
        }
        None => store::DEFAULT_LATE_WAIT_SECONDS,
    }
}

/// `log=<off|error|warn|info|debug|trace>` from the bootargs; info by default.
fn log_level(bootargs: &str) -> log::LevelFilter {
    bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("log="))
        .and_then(|level| level.parse().ok())
        .unwrap_or(log::LevelFilter::Info)
}

pub mod alloc_free {
    //! Boot errors, printable without the heap.
    use core::fmt;

    pub enum Error {
        Map(&'static str, arch::mmu::MapError),
        NoHeap,
        OutOfMemory(&'static str),
        SharedInfo(drivers::xen::error::XenError),
        Irq(crate::guest::irq::IrqError),
    }

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Error::Map(what, error) => write!(f, "cannot map the {what}: {error}"),
                Error::NoHeap => write!(f, "no free RAM left for the heap"),
                Error::OutOfMemory(what) => write!(f, "out of memory allocating the {what}"),
                Error::Irq(error) => write!(f, "interrupts: {error}"),
                Error::SharedInfo(error) => {
                    write!(f, "XENMEM_add_to_physmap(shared_info) failed: {error}")
                }
            }
        }
    }
}
