//! The shared info page (xen/include/public/xen.h `struct shared_info`, Arm
//! layout): per-vCPU event state, the event channel bitmaps and the wall
//! clock. Xen writes it concurrently, so every field is read atomically.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Event channel words (`xen_ulong_t` is 64 bits on Arm).
pub const EVTCHN_WORDS: usize = 64;

/// `struct vcpu_info` (48 bytes on Arm).
#[repr(C)]
pub struct VcpuInfo {
    /// `evtchn_upcall_pending`.
    pub evtchn_upcall_pending: AtomicU8,
    /// `evtchn_upcall_mask` (unused on Arm).
    pub evtchn_upcall_mask: AtomicU8,
    _pad: [u8; 6],
    /// `evtchn_pending_sel`: which pending words to scan.
    pub evtchn_pending_sel: AtomicU64,
    /// `arch_vcpu_info` (empty on Arm) and `vcpu_time_info` (unused on Arm).
    _time: [u8; 32],
}

/// `struct shared_info` for Arm guests.
#[repr(C)]
pub struct SharedInfo {
    /// `vcpu_info[XEN_LEGACY_MAX_VCPUS]`, 1 on Arm.
    pub vcpu_info: [VcpuInfo; 1],
    /// `evtchn_pending`.
    pub evtchn_pending: [AtomicU64; EVTCHN_WORDS],
    /// `evtchn_mask`.
    pub evtchn_mask: [AtomicU64; EVTCHN_WORDS],
    /// `wc_version`: odd while Xen updates the wall clock.
    pub wc_version: AtomicU32,
    /// `wc_sec`: seconds since the epoch at boot of the domain (low 32 bits).
    pub wc_sec: AtomicU32,
    /// `wc_nsec`.
    pub wc_nsec: AtomicU32,
    /// `wc_sec_hi`: high 32 bits of the seconds.
    pub wc_sec_hi: AtomicU32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<VcpuInfo>() == 48);
    assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
    assert!(offset_of!(SharedInfo, evtchn_pending) == 48);
    assert!(offset_of!(SharedInfo, evtchn_mask) == 560);
    assert!(offset_of!(SharedInfo, wc_version) == 1072);
    assert!(offset_of!(SharedInfo, wc_sec) == 1076);
    assert!(offset_of!(SharedInfo, wc_nsec) == 1080);
    assert!(offset_of!(SharedInfo, wc_sec_hi) == 1084);
    assert!(size_of::<SharedInfo>() <= 4096);
};

/// How many times a torn wall-clock read is retried.
const WALLCLOCK_RETRIES: u32 = 100;

impl SharedInfo {
    /// The wall clock at the domain's time zero, `(seconds, nanoseconds)`
    /// since the epoch; `None` if Xen kept updating it while it was read.
    pub fn wallclock(&self) -> Option<(u64, u32)> {
        for _ in 0..WALLCLOCK_RETRIES {
            let before = self.wc_version.load(Ordering::Acquire);
            if before & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let low = self.wc_sec.load(Ordering::Relaxed);
            let high = self.wc_sec_hi.load(Ordering::Relaxed);
            let nanoseconds = self.wc_nsec.load(Ordering::Relaxed);
            core::sync::atomic::fence(Ordering::Acquire);
            if self.wc_version.load(Ordering::Relaxed) == before {
                return Some(((u64::from(high) << 32) | u64::from(low), nanoseconds));
            }
        }
        None
    }
}

/// Splits seconds since the epoch into `(year, month, day, hour, minute,
/// second)` in UTC (proleptic Gregorian calendar).
pub fn civil_time(seconds: u64) -> (u64, u32, u32, u32, u32, u32) {
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    // Howard Hinnant's days-from-civil inverse, shifted to start in March.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (
        year,
        month,
        day,
        (in_day / 3600) as u32,
        (in_day % 3600 / 60) as u32,
        (in_day % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn page() -> Box<SharedInfo> {
        // SAFETY: zero is a valid value for every atomic in the page.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    #[test]
    fn wallclock_reads_the_header_offsets() {
        let info = page();
        let base = core::ptr::from_ref(&*info).cast::<u8>() as *mut u8;
        // SAFETY: the offsets are inside the boxed page; plays Xen's writes.
        unsafe {
            base.add(1072).cast::<u32>().write(2);
            base.add(1076).cast::<u32>().write(0x6a0f_1234);
            base.add(1080).cast::<u32>().write(500);
            base.add(1084).cast::<u32>().write(1);
        }
        assert_eq!(info.wallclock(), Some((0x1_6a0f_1234, 500)));
    }

    #[test]
    fn wallclock_under_update_is_not_returned() {
        let info = page();
        info.wc_version.store(3, Ordering::Relaxed);
        assert_eq!(info.wallclock(), None);
    }

    #[test]
    fn civil_time_matches_known_dates() {
        assert_eq!(civil_time(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_time(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_time(1_795_250_096), (2026, 11, 21, 8, 34, 56));
    }
}
