//! The `log` facade on the console: `[seconds.micros] LEVEL target: message`,
//! with time from the virtual counter since boot.

use core::sync::atomic::{AtomicU64, Ordering};
use log::{LevelFilter, Log, Metadata, Record};

struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;
static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Microseconds since [`init`].
pub fn uptime_micros() -> u64 {
    let frequency = arch::cpu::counter_frequency().max(1);
    let ticks = arch::cpu::counter().wrapping_sub(BOOT_COUNTER.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(frequency)) as u64
}

impl Log for ConsoleLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let micros = uptime_micros();
        crate::println!(
            "[{:5}.{:06}] {:5} {}: {}",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Installs the logger; `level` comes from the bootargs.
pub fn init(level: LevelFilter) {
    BOOT_COUNTER.store(arch::cpu::counter(), Ordering::Relaxed);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
