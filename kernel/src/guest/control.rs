//! The toolstack's control node: `control/shutdown` is watched, and the
//! request found there (`xl shutdown`, `xl reboot`) is acknowledged by
//! clearing the node and acted on by the main loop.

use super::store;
use core::sync::atomic::{AtomicBool, Ordering};
use drivers::xen::hypercall::ShutdownReason;
use drivers::xen::xenstore::client::{BatchOp, Error};

static CHANGED: AtomicBool = AtomicBool::new(false);

const SHUTDOWN_NODE: &str = "control/shutdown";

/// Announces the features and watches `control/shutdown`.
pub fn init() -> Result<(), Error> {
    store::with(|store| {
        let features = [
            BatchOp::Write("control/feature-poweroff", b"1"),
            BatchOp::Write("control/feature-reboot", b"1"),
        ];
        for written in store.batch(&features) {
            written?;
        }
        store
            .watch(
                SHUTDOWN_NODE,
                alloc::boxed::Box::new(|_| CHANGED.store(true, Ordering::Release)),
            )
            .map(|_| ())
    })
    .unwrap_or(Ok(()))
}

extern crate alloc;

/// The shutdown the toolstack asked for, if the node changed and holds one;
/// its line is printed here.
/// The node is cleared in a transaction, as the toolstack expects.
pub fn take_request() -> Option<ShutdownReason> {
    if !CHANGED.swap(false, Ordering::AcqRel) {
        return None;
    }
    let request = store::with(|store| {
        store.transaction(|transaction| {
            let value = match transaction.read_string(SHUTDOWN_NODE) {
                Ok(value) => value,
                Err(Error::Xenstore(drivers::xen::xenstore::wire::XsdError::NoEntry)) => {
                    return Ok(alloc::string::String::new())
                }
                Err(error) => return Err(error),
            };
            if !value.is_empty() {
                transaction.write(SHUTDOWN_NODE, b"")?;
            }
            Ok(value)
        })
    })?;
    match request {
        Ok(value) => match value.as_str() {
            "" => None,
            "poweroff" | "halt" => {
                crate::println!("vdispl-os: shutdown requested (poweroff)");
                Some(ShutdownReason::Poweroff)
            }
            "reboot" => {
                crate::println!("vdispl-os: shutdown requested (reboot)");
                Some(ShutdownReason::Reboot)
            }
            other => {
                log::warn!("control/shutdown = {other:?} is not supported; ignored");
                None
            }
        },
        Err(error) => {
            log::error!("reading control/shutdown: {error}");
            None
        }
    }
}
