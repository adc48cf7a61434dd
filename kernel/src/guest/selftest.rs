//! Self-tests of the Xen services against the real hypervisor, run when the
//! bootargs say `selftest=services`; each prints one `selftest: ` line that
//! the rig's scenarios check.

use super::services;
use super::time::{self, now_ns};
use super::xen::Xen;
use alloc::format;
use alloc::string::String;
use drivers::xen::evtchn;
use drivers::xen::hypercall::DOMID_SELF;

extern crate alloc;

const NS_PER_MS: u64 = 1_000_000;
/// How long a self-test waits for what should happen (an event, a watch, an
/// access ended) before it calls it lost: a hang limit, not a time target, and
/// generous, since a busy host can hold an emulated vCPU back for long.
pub const HANG_NS: u64 = 30_000 * NS_PER_MS;

/// Runs one self-test and prints its outcome; returns whether it passed.
pub fn report(name: &str, outcome: Result<String, String>) -> bool {
    match outcome {
        Ok(details) => {
            crate::println!("selftest: {name} ok ({details})");
            true
        }
        Err(reason) => {
            crate::println!("selftest: {name} FAILED: {reason}");
            false
        }
    }
}

/// Event channel loopback: a port allocated unbound to this domain, bound by
/// this domain, notified in both directions; also checks that a notification
/// taken before anyone waits for it is kept.
pub fn evtchn_loopback() -> Result<String, String> {
    let first = evtchn::alloc_unbound(&Xen, DOMID_SELF)
        .map_err(|error| format!("EVTCHNOP_alloc_unbound: {error}"))?;
    let second = match evtchn::bind_interdomain(&Xen, DOMID_SELF, first) {
        Ok(port) => port,
        Err(error) => {
            let _ = evtchn::close(&Xen, first);
            return Err(format!("EVTCHNOP_bind_interdomain: {error}"));
        }
    };
    let result = loopback_both_ways(first, second);
    for port in [second, first] {
        if let Err(error) = evtchn::close(&Xen, port) {
            return Err(format!("EVTCHNOP_close({port}): {error}"));
        }
        if let Some(events) = services::events() {
            events.forget(port);
        }
    }
    result
}

fn loopback_both_ways(first: u32, second: u32) -> Result<String, String> {
    for port in [first, second] {
        evtchn::unmask(&Xen, port).map_err(|error| format!("EVTCHNOP_unmask({port}): {error}"))?;
    }
    let start = now_ns();
    evtchn::send(&Xen, second).map_err(|error| format!("EVTCHNOP_send({second}): {error}"))?;
    // A hang limit, not a time target: the latency is a figure in the line.
    if !services::wait_for_port(first, start + HANG_NS) {
        return Err(format!(
            "port {first} did not fire within {} s of a send on port {second}",
            HANG_NS / (1000 * NS_PER_MS)
        ));
    }
    let latency_us = (now_ns() - start) / 1000;
    // The other way, with nobody waiting when the event arrives.
    evtchn::send(&Xen, first).map_err(|error| format!("EVTCHNOP_send({first}): {error}"))?;
    time::sleep_ns(10 * NS_PER_MS);
    let kept = services::events().is_some_and(|events| events.take(second));
    if !kept {
        return Err(format!(
            "an event on port {second} that arrived before the wait was lost"
        ));
    }
    Ok(format!(
        "ports {second} -> {first} in {latency_us} us, {first} -> {second} kept until taken"
    ))
}

/// Timer deadlines: none may be met early. How late each was met is a figure
/// in the line, not a check: the rig emulates the CPU, and a busy host can hold
/// a vCPU back for a long time (on hardware deadlines are met within
/// microseconds); a timer that never fires hangs the wait, which the rig's
/// deadline catches.
pub fn timer_deadlines() -> Result<String, String> {
    let deadlines_ms = [1u64, 2, 5, 10, 20, 50];
    let mut worst_late = 0;
    for &milliseconds in &deadlines_ms {
        let target = now_ns() + milliseconds * NS_PER_MS;
        time::wait_until(target, || false);
        let woke = now_ns();
        if woke < target {
            return Err(format!(
                "a {milliseconds} ms deadline returned {} ns early",
                target - woke
            ));
        }
        worst_late = worst_late.max(woke - target);
    }
    Ok(format!(
        "{} deadlines from {} to {} ms, none early, worst {} us late",
        deadlines_ms.len(),
        deadlines_ms[0],
        deadlines_ms[deadlines_ms.len() - 1],
        worst_late / 1000,
    ))
}

/// A page granted to another domain for the grant self-test.
pub struct OfferedPage {
    /// The grant reference.
    pub gref: u32,
    /// The pattern seed it was filled with.
    pub seed: u32,
    page: alloc::boxed::Box<Page>,
}

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// Fills a fresh page with the shared test pattern and grants it read-only
/// to `domid`.
pub fn grant_offer(domid: u16, seed: u32) -> Result<OfferedPage, String> {
    let mut page = alloc::boxed::Box::new(Page([0; 4096]));
    drivers::test_pattern::fill(&mut page.0, seed);
    let frame = core::ptr::from_ref(&*page) as u64 >> 12;
    let gref = services::with_grants(|grants| grants.grant_access(domid, frame, true))
        .ok_or_else(|| String::from("no grant table"))?
        .map_err(|error| format!("{error}"))?;
    Ok(OfferedPage { gref, seed, page })
}

/// Ends the grant of `offered`, retrying for up to `timeout_ns` while the
/// peer still maps it; the page is freed only once access has ended.
pub fn grant_end(offered: OfferedPage, timeout_ns: u64) -> Result<String, String> {
    let deadline = now_ns() + timeout_ns;
    let mut refusals = 0u32;
    loop {
        match services::with_grants(|grants| grants.end_access(offered.gref)) {
            Some(Ok(())) => break,
            Some(Err(drivers::xen::gnttab::GrantError::InUse(_))) if now_ns() < deadline => {
                refusals += 1;
                time::sleep_ns(NS_PER_MS);
            }
            Some(Err(error)) => {
                // Leak the page: the peer may still map it.
                core::mem::forget(offered.page);
                return Err(format!("ending grant {}: {error}", offered.gref));
            }
            None => return Err(String::from("no grant table")),
        }
    }
    let in_use = services::with_grants(|grants| grants.in_use()).unwrap_or(0);
    drop(offered.page);
    Ok(format!(
        "grant {} (pattern seed {}) ended after {refusals} refusals while mapped, \
         {in_use} grants in use",
        offered.gref, offered.seed
    ))
}

/// Where the self-tests keep their xenstore nodes (relative to the domain's
/// home, `/local/domain/<domid>/`).
const TEST_DIR: &str = "data/vdispl-os-test";

fn store_error(what: &str, error: impl core::fmt::Display) -> String {
    format!("{what}: {error}")
}

/// Xenstore round trip against the real xenstored: write, read, directory,
/// a watch (its first event and one for a change), a transaction, and rm.
pub fn xenstore_round_trip() -> Result<String, String> {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicU32, Ordering};
    super::store::with(|store| {
        let value_node = format!("{TEST_DIR}/value");
        store
            .write(&value_node, b"hello from vdispl-os")
            .map_err(|error| store_error("write", error))?;
        let read = store
            .read(&value_node)
            .map_err(|error| store_error("read", error))?;
        if read != b"hello from vdispl-os" {
            return Err(format!("read back {:?}", String::from_utf8_lossy(&read)));
        }
        let listing = store
            .directory(TEST_DIR)
            .map_err(|error| store_error("directory", error))?;
        if !listing.iter().any(|entry| entry == "value") {
            return Err(format!(
                "directory {TEST_DIR} lists {listing:?}, not \"value\""
            ));
        }

        let watched = format!("{TEST_DIR}/watched");
        let fired = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&fired);
        let handle = store
            .watch(
                &watched,
                alloc::boxed::Box::new(move |_| {
                    counter.fetch_add(1, Ordering::Relaxed);
                }),
            )
            .map_err(|error| store_error("watch", error))?;
        let deadline = now_ns() + HANG_NS;
        while fired.load(Ordering::Relaxed) < 1 && now_ns() < deadline {
            store
                .wait_for_watches(deadline)
                .map_err(|error| store_error("waiting for the first watch event", error))?;
        }
        store
            .write(&watched, b"1")
            .map_err(|error| store_error("write under the watch", error))?;
        while fired.load(Ordering::Relaxed) < 2 && now_ns() < deadline {
            store
                .wait_for_watches(deadline)
                .map_err(|error| store_error("waiting for the watch", error))?;
        }
        store
            .unwatch(handle)
            .map_err(|error| store_error("unwatch", error))?;
        let events = fired.load(Ordering::Relaxed);
        if events < 2 {
            return Err(format!(
                "the watch fired {events} times, expected at least 2"
            ));
        }

        let (first, second) = (format!("{TEST_DIR}/tx-a"), format!("{TEST_DIR}/tx-b"));
        store
            .transaction(|transaction| {
                transaction.write(&first, b"a")?;
                transaction.write(&second, b"b")
            })
            .map_err(|error| store_error("transaction", error))?;
        let both = (store.read(&first), store.read(&second));
        if both != (Ok(b"a".to_vec()), Ok(b"b".to_vec())) {
            return Err(String::from("the transaction's writes did not both land"));
        }
        store
            .rm(&value_node)
            .map_err(|error| store_error("rm", error))?;
        match store.read(&value_node) {
            Err(drivers::xen::xenstore::client::Error::Xenstore(
                drivers::xen::xenstore::wire::XsdError::NoEntry,
            )) => {}
            other => return Err(format!("read after rm gave {other:?}, expected ENOENT")),
        }
        Ok(format!(
            "write, read, directory, watch fired {events} times, transaction, rm then ENOENT"
        ))
    })
    .unwrap_or_else(|| Err(String::from("the domain has no xenstore")))
}

/// Waits until `node` exists, through a watch; returns its value.
fn wait_for_node(node: &str, timeout_ns: u64) -> Result<String, String> {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, Ordering};
    super::store::with(|store| {
        let changed = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&changed);
        let handle = store
            .watch(
                node,
                alloc::boxed::Box::new(move |_| flag.store(true, Ordering::Relaxed)),
            )
            .map_err(|error| store_error("watch", error))?;
        let deadline = now_ns() + timeout_ns;
        let result = loop {
            if changed.swap(false, Ordering::Relaxed) {
                if let Ok(value) = store.read_string(node) {
                    break Ok(value);
                }
            }
            if now_ns() >= deadline {
                break Err(format!(
                    "{node} did not appear within {} ms",
                    timeout_ns / NS_PER_MS
                ));
            }
            if let Err(error) = store.wait_for_watches(deadline) {
                break Err(store_error("waiting for a watch", error));
            }
        };
        let _ = store.unwatch(handle);
        result
    })
    .unwrap_or_else(|| Err(String::from("the domain has no xenstore")))
}

/// Grants a page to domain 0, publishes it for the rig's Dom0 checker, waits
/// for its verdict, then ends the grant.
pub fn grant_to_dom0() -> Result<String, String> {
    let seed = (now_ns() as u32) | 1;
    let offered = grant_offer(0, seed)?;
    crate::println!(
        "selftest: grant {} seed {} offered to domain 0",
        offered.gref,
        offered.seed
    );
    let published = super::store::with(|store| {
        store.write(
            &format!("{TEST_DIR}/grant"),
            format!("{} {}", offered.gref, offered.seed).as_bytes(),
        )
    });
    if let Some(Err(error)) = published {
        core::mem::forget(offered.page);
        return Err(store_error("publishing the grant", error));
    }
    let verdict = wait_for_node(&format!("{TEST_DIR}/grant-result"), HANG_NS);
    let ended = grant_end(offered, HANG_NS)?;
    log::info!("{ended}");
    match verdict?.as_str() {
        "ok" => Ok(String::from("domain 0 read it back, access ended")),
        other => Err(format!("domain 0 reported {other:?}; {ended}")),
    }
}

/// Tells the rig the guest is up and waiting.
pub fn announce_ready() {
    if let Some(Err(error)) =
        super::store::with(|store| store.write(&format!("{TEST_DIR}/state"), b"ready"))
    {
        log::error!("writing {TEST_DIR}/state: {error}");
    }
    crate::println!("vdispl-os: ready");
}
