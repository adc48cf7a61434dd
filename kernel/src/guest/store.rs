//! The guest's xenstore connection: the client from `drivers` over the store
//! ring page and event channel, woken by the event channel's interrupt; and,
//! for a domain whose store comes up after it starts (dom0less), the wait for
//! it (`drivers::xen::xenstore::late`).

use super::mmu;
use super::services;
use super::time;
use super::xen::Xen;
use arch::mmu::{MapError, MemoryKind};
use core::fmt;
use drivers::xen::error::XenError;
use drivers::xen::evtchn;
use drivers::xen::hypercall::{self, HvmParam};
use drivers::xen::xenstore::client::{Client, Transport};
use drivers::xen::xenstore::late::{self, Source};
use drivers::xen::xenstore::ring::XenstoreInterface;
use kernel::platform::Region;
use kernel::report::RingParams;

const PAGE: u64 = 4096;

/// The store ring and its event channel.
pub struct StoreTransport {
    interface: &'static XenstoreInterface,
    port: u32,
}

impl Transport for StoreTransport {
    fn interface(&self) -> &XenstoreInterface {
        self.interface
    }

    fn notify(&mut self) {
        if let Err(error) = evtchn::send(&Xen, self.port) {
            log::warn!(
                "xenstore: EVTCHNOP_send on port {} failed: {error}",
                self.port
            );
        }
    }

    fn wait(&mut self, deadline_ns: u64) {
        services::wait_for_port(self.port, deadline_ns);
    }

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }
}

/// The xenstore client of this guest.
pub type Store = Client<StoreTransport>;

static STORE: spin::Mutex<Option<Store>> = spin::Mutex::new(None);

/// Connects to xenstore through the ring page at `params.pfn` (already mapped
/// Normal memory) and its event channel.
pub fn init(params: RingParams) {
    // SAFETY: Xen gives the domain this page for xenstore for its whole life;
    // it is mapped Normal write-back and only accessed through atomics.
    let interface = unsafe { &*((params.pfn << 12) as *const XenstoreInterface) };
    *STORE.lock() = Some(Client::new(StoreTransport {
        interface,
        port: params.evtchn,
    }));
}

/// The store's event channel, when connected.
pub fn port() -> Option<u32> {
    STORE.lock().as_ref().map(|store| store.transport().port)
}

/// Runs `f` with the client; `None` when the domain has no xenstore.
pub fn with<R>(f: impl FnOnce(&mut Store) -> R) -> Option<R> {
    STORE.lock().as_mut().map(f)
}

/// Takes in what xenstored sent and runs the watch callbacks; call when the
/// store's event channel fired.
pub fn service() {
    with(|store| {
        if let Err(error) = store.poll() {
            log::error!("xenstore: {error}");
        }
        store.dispatch_watches();
    });
}

/// How long the guest waits for a store that comes up late, unless the
/// bootargs say `xenstore-wait=<seconds>`.
pub const DEFAULT_LATE_WAIT_SECONDS: u64 = 120;

/// Why the store's parameter or page could not be read.
pub enum SourceError {
    /// `HVMOP_get_param(HVM_PARAM_STORE_PFN)` failed.
    Param(XenError),
    /// The parameter names a frame beyond the address space.
    BadPfn(u64),
    /// The page could not be mapped.
    Map(u64, MapError),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Param(error) => {
                write!(f, "HVMOP_get_param(HVM_PARAM_STORE_PFN) failed: {error}")
            }
            SourceError::BadPfn(pfn) => {
                write!(
                    f,
                    "HVM_PARAM_STORE_PFN {pfn:#x} is beyond the address space"
                )
            }
            SourceError::Map(pfn, error) => {
                write!(f, "cannot map the store page at pfn {pfn:#x}: {error}")
            }
        }
    }
}

/// The store's parameter, page and event channel, as the late wait reads them.
pub struct LateSource {
    port: u32,
    mapped: Option<u64>,
}

impl LateSource {
    /// The store on event channel `port`; `mapped` is the page already mapped
    /// at boot, if any.
    pub fn new(port: u32, mapped: Option<u64>) -> Self {
        Self { port, mapped }
    }
}

/// The address of the page at `pfn`, if it fits the address space.
pub fn page_address(pfn: u64) -> Option<u64> {
    pfn.checked_mul(PAGE)
}

impl Source for LateSource {
    type Error = SourceError;

    fn store_pfn(&mut self) -> Result<u64, SourceError> {
        hypercall::hvm_get_param(&Xen, HvmParam::StorePfn).map_err(SourceError::Param)
    }

    fn connection(&mut self, pfn: u64) -> Result<u32, SourceError> {
        let address = page_address(pfn).ok_or(SourceError::BadPfn(pfn))?;
        if self.mapped != Some(pfn) {
            mmu::map(Region::new(address, PAGE), MemoryKind::Normal)
                .map_err(|error| SourceError::Map(pfn, error))?;
            self.mapped = Some(pfn);
        }
        // SAFETY: Xen (or the toolstack) gives the domain this page for
        // xenstore; it is mapped Normal just above and only accessed through
        // atomics.
        let interface = unsafe { &*(address as *const XenstoreInterface) };
        Ok(interface.connection())
    }

    fn wait_event(&mut self, deadline_ns: u64) -> bool {
        services::wait_for_port(self.port, deadline_ns)
    }

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }
}

/// Waits, at most `wait_seconds`, for a store that was not up at boot, saying
/// so on the console; connects the client when it comes. The store's ring,
/// or `None` (said in one line) when it never came.
pub fn connect_late(source: &mut LateSource, wait_seconds: u64) -> Option<RingParams> {
    let port = source.port;
    crate::println!(
        "xenstore: waiting up to {wait_seconds} s for the toolstack to bring the store up (event channel {port})"
    );
    match late::connect(source, wait_seconds.saturating_mul(time::NANOS_PER_SECOND)) {
        Ok(Some(connected)) => {
            crate::println!(
                "xenstore: the store came up after {} ms ({} events on channel {port}; pfn {:#x})",
                connected.waited_ns / 1_000_000,
                connected.events,
                connected.pfn
            );
            let params = RingParams {
                pfn: connected.pfn,
                evtchn: port,
            };
            init(params);
            Some(params)
        }
        Ok(None) => {
            crate::println!(
                "xenstore: the store went away (HVM_PARAM_STORE_PFN 0); going on without xenstore"
            );
            None
        }
        Err(error) => {
            crate::println!("xenstore: {error}; going on without xenstore");
            None
        }
    }
}
