//! The boot report's lines, which the rig scenarios match, for the GICv2 and
//! GICv3 guest trees libxl builds.

use drivers::xen::xenstore::late::State;
use kernel::platform::{parse, Region};
use kernel::report::{BootReport, GrantFacts, RingParams, SharedInfoFacts, StoreFacts};

fn report_for(dtb: &[u8], pv_console: Option<RingParams>) -> String {
    report_from(dtb, pv_console, (4, 17), ".7", None)
}

fn report_from(
    dtb: &[u8],
    pv_console: Option<RingParams>,
    xen_version: (u16, u16),
    xen_extraversion: &str,
    xenstore: Option<StoreFacts>,
) -> String {
    let platform = parse(dtb).unwrap();
    BootReport {
        platform: &platform,
        xen_version,
        xen_extraversion,
        counter_frequency: 62_500_000,
        heap: Region::new(0x4010_0000, 0x100_0000),
        image: Region::new(0x4000_0000, 0x4_2000),
        pv_console,
        xenstore,
        shared_info: Some(SharedInfoFacts {
            gpfn: 0x41ff0,
            wallclock: Some(1_795_250_096),
        }),
        grants: Some(GrantFacts {
            frames: 4,
            limit_frames: 64,
            max_frames: 64,
            capacity: 2040,
        }),
    }
    .to_string()
}

#[test]
fn gicv3_report_has_one_fact_per_line_and_ends_with_the_marker() {
    let text = report_for(
        include_bytes!("fixtures/xl-gicv3.dtb"),
        Some(RingParams {
            pfn: 0x39000,
            evtchn: 2,
        }),
    );
    let expected = [
        "report: xen-version 4.17.7 (device tree: xen,xen-4.17)",
        "report: gic v3 distributor 0x3001000+0x10000 redistributor 0x3020000+0x1000000",
        "report: timer virtual intid 27 level-low frequency 62500000 Hz",
        "report: evtchn-upcall intid 31 level-low",
        "report: grant-table 0x38000000+0x1000000",
        "report: grant-frames 4 mapped, growing to 64 (Xen allows 64), 2040 references",
        "report: extended-region 0x42000000+0xbe000000",
        "report: extended-region 0x200000000+0xfe00000000",
        "report: memory 0x40000000+0x2000000 (32 MiB)",
        "report: image 0x40000000+0x42000",
        "report: heap 0x40100000+0x1000000 (16384 KiB)",
        "report: shared-info gpfn 0x41ff0 wallclock 2026-11-21T08:34:56Z",
        "report: console pfn 0x39000 evtchn 2",
        "report: xenstore absent",
        "report: uart arm,sbsa-uart 0x22000000+0x1000 intid 32",
        "report: bootargs \"log=info\"",
        "report: end",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn gicv2_report_names_the_cpu_interface() {
    let text = report_for(include_bytes!("fixtures/xl-gicv2.dtb"), None);
    assert!(text
        .contains("report: gic v2 distributor 0x3001000+0x1000 cpu-interface 0x3002000+0x2000\n"));
    assert!(text.contains("report: console absent\n"));
}

#[test]
fn xen_4_20_report_names_its_version_twice() {
    // Debian's 4.20 build is a snapshot of the stable branch: XENVER_extraversion is ".5-pre".
    let text = report_from(
        include_bytes!("fixtures/xl-4.20-gicv3.dtb"),
        None,
        (4, 20),
        ".5-pre",
        None,
    );
    assert_eq!(
        text.lines().next(),
        Some("report: xen-version 4.20.5-pre (device tree: xen,xen-4.20)")
    );
    let old = report_for(include_bytes!("fixtures/xl-gicv3.dtb"), None);
    // Every other line is the same as on 4.17.
    assert_eq!(
        text.lines().skip(1).collect::<Vec<_>>(),
        old.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn a_store_still_to_come_is_reported_with_what_the_domain_saw() {
    let dtb = include_bytes!("fixtures/xl-4.20-gicv3.dtb");
    let xenstore_line = |facts| {
        report_from(dtb, None, (4, 21), ".0", Some(facts))
            .lines()
            .find(|line| line.starts_with("report: xenstore"))
            .map(str::to_string)
    };
    assert_eq!(
        xenstore_line(StoreFacts::connected(RingParams {
            pfn: 0x39001,
            evtchn: 1
        }))
        .as_deref(),
        Some("report: xenstore pfn 0x39001 evtchn 1")
    );
    assert_eq!(
        xenstore_line(StoreFacts {
            evtchn: 1,
            state: State::Waiting {
                pfn: Some(0x39001),
                connection: Some(1)
            }
        })
        .as_deref(),
        Some(
            "report: xenstore late evtchn 1: page at pfn 0x39001 not connected (XENSTORE_RECONNECT)"
        )
    );
    assert_eq!(
        xenstore_line(StoreFacts {
            evtchn: 3,
            state: State::Waiting {
                pfn: None,
                connection: None
            }
        })
        .as_deref(),
        Some("report: xenstore late evtchn 3: HVM_PARAM_STORE_PFN ~0, no page yet")
    );
    assert_eq!(
        xenstore_line(StoreFacts {
            evtchn: 0,
            state: State::Absent
        })
        .as_deref(),
        Some("report: xenstore absent")
    );
}
