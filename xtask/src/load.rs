//! `--load N`: busy threads beside the rig, so that a scenario meets a host that is short of CPU
//! time, as on a shared CI machine.
//!
//! Each thread spins on arithmetic at normal priority until the [`Load`] is dropped; with as many
//! threads as cores, QEMU's vCPU threads get about half the time they would get on an idle host.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// Busy threads, stopped and joined on drop.
pub struct Load {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// Starts `threads` busy threads (none for 0) and says so.
    pub fn start(threads: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let handles = (0..threads)
            .map(|index| {
                let stop = stop.clone();
                let rounds = rounds.clone();
                thread::Builder::new()
                    .name(format!("load-{index}"))
                    .spawn(move || spin(&stop, &rounds))
                    .expect("cannot start a load thread")
            })
            .collect::<Vec<_>>();
        if threads > 0 {
            println!(
                "load: {threads} busy thread(s) beside the scenarios until the run ends \
                 (the host has {} CPUs)",
                thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
        Self {
            stop,
            rounds,
            threads: handles,
            started: Instant::now(),
        }
    }

    /// Rounds of work done so far by all threads (each round is 2^20 multiply-adds).
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

/// Spins until `stop`, counting rounds.
fn spin(stop: &AtomicBool, rounds: &AtomicU64) {
    let mut value: u64 = 1;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..(1 << 20) {
            value = std::hint::black_box(value.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        rounds.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        println!(
            "load: stopped after {:.0} s ({} rounds of busy work)",
            self.started.elapsed().as_secs_f64(),
            self.rounds()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Load;
    use std::time::{Duration, Instant};

    #[test]
    fn busy_threads_work_until_dropped() {
        let load = Load::start(1);
        let deadline = Instant::now() + Duration::from_secs(30);
        while load.rounds() == 0 {
            assert!(Instant::now() < deadline, "the load thread did no work");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(load);
        let idle = Load::start(0);
        assert_eq!(idle.rounds(), 0);
    }
}
