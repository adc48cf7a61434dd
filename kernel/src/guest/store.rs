//! The guest's xenstore connection: the client from `drivers` over the store
//! ring page and event channel, woken by the event channel's interrupt.

use super::services;
use super::time;
use super::xen::Xen;
use drivers::xen::evtchn;
use drivers::xen::xenstore::client::{Client, Transport};
use drivers::xen::xenstore::ring::XenstoreInterface;
use kernel::report::RingParams;

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
