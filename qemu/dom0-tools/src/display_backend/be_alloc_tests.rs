//! Host tests of the backend's be-alloc paths ([`crate::be_alloc`] through [`super::answer`]):
//! DBUF_CREATE with XENDISPL_DBUF_FLG_REQ_ALLOC allocates and lists the pages, a flip is
//! captured from them, and DBUF_DESTROY or the device's close lets go of them without taking
//! them from a frontend that still maps them.

use super::capture::copy_source;
use super::ring_service::answer;
use super::*;
use crate::be_alloc::Allocator;
use crate::frame_copy::copy_frame;
use crate::gntalloc::fake::FakeGntalloc;
use crate::grant_map::fake::FakeGntdev;
use drivers::xen::displif::{self, Request, Response};
use drivers::xen::displif::{
    read_directory_page, DbufCreate, DBUF_FLAG_REQ_ALLOC, FOURCC_XRGB8888,
};
use drivers::xen::vdispl::backend::EOPNOTSUPP;

const DOMID: u32 = 2;
const KEY: DeviceKey = DeviceKey {
    domid: DOMID,
    device: 0,
};
/// 64x48 XRGB8888: three pages.
const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
const PAGES: usize = 3;
const RING_REF: u32 = 8;
const EVENT_REF: u32 = 9;
const DIRECTORY_REF: u32 = 40;

struct Rig {
    gntdev: Arc<FakeGntdev>,
    gntalloc: Arc<FakeGntalloc>,
    grants: GrantMapper,
}

fn rig() -> Rig {
    let gntdev = Arc::new(FakeGntdev::default());
    let gntalloc = Arc::new(FakeGntalloc::default());
    let grants =
        GrantMapper::over(gntdev.clone()).with_allocator(Allocator::over(gntalloc.clone()));
    Rig {
        gntdev,
        gntalloc,
        grants,
    }
}

/// The frontend's ring, event page and (empty, one-page) directory, granted writable, and a
/// link for its one connector, switched on showing framebuffer 0xf0.
fn connect(rig: &Rig) -> Link {
    rig.gntdev.grant(DOMID, RING_REF, &[], false);
    rig.gntdev.grant(DOMID, EVENT_REF, &[], false);
    rig.gntdev.grant(DOMID, DIRECTORY_REF, &[], false);
    let config = ConnectorConfig {
        index: 0,
        unique_id: "DP-1".into(),
        resolution: Ok((WIDTH, HEIGHT)),
        req_ring_ref: RING_REF,
        req_port: 5,
        evt_ring_ref: EVENT_REF,
        evt_port: 6,
    };
    super::tests::link_showing_0xf0(&rig.grants, DOMID, config)
}

fn send(rig: &Rig, link: &mut Link, id: u16, request: Request) -> (Response, Option<u64>) {
    answer(
        KEY,
        0,
        &mut link.state,
        &rig.grants,
        &request.encode(id),
        &mut Summary::default(),
    )
}

fn create_request(flags: u32) -> Request {
    Request::DbufCreate(DbufCreate {
        dbuf_cookie: 0xd0,
        width: WIDTH,
        height: HEIGHT,
        bpp: 32,
        buffer_sz: displif::stride(WIDTH, 32) * HEIGHT,
        flags,
        gref_directory: DIRECTORY_REF,
        data_ofs: 0,
    })
}

/// DBUF_CREATE with REQ_ALLOC and FB_ATTACH; the references the directory lists after the
/// answer, as the frontend reads them.
fn create_and_attach(rig: &Rig, link: &mut Link) -> Vec<u32> {
    let (created, _) = send(rig, link, 1, create_request(DBUF_FLAG_REQ_ALLOC));
    assert_eq!(created.status, 0, "DBUF_CREATE with REQ_ALLOC");
    let attach = Request::FbAttach {
        dbuf_cookie: 0xd0,
        fb_cookie: 0xf0,
        width: WIDTH,
        height: HEIGHT,
        pixel_format: FOURCC_XRGB8888,
    };
    assert_eq!(send(rig, link, 2, attach).0.status, 0);
    let page = rig.gntdev.page(DOMID, DIRECTORY_REF).unwrap();
    let (next, refs) = read_directory_page(&page, PAGES);
    assert_eq!(next, 0);
    refs
}

/// The frontend maps the backend's pages and draws pixel `n` as `n | 0x5a << 24`.
fn frontend_draws(rig: &Rig, refs: &[u32]) {
    let pixels: Vec<u8> = (0..WIDTH * HEIGHT)
        .flat_map(|n| (n | 0x5a << 24).to_le_bytes())
        .collect();
    for (&gref, page) in refs.iter().zip(pixels.chunks(4096)) {
        rig.gntalloc.peer_map(DOMID as u16, gref).unwrap();
        rig.gntalloc.peer_write(gref, 0, page).unwrap();
    }
}

#[test]
fn a_backend_allocated_buffer_is_listed_drawn_into_flipped_captured_and_destroyed() {
    let rig = rig();
    let mut link = connect(&rig);
    let refs = create_and_attach(&rig, &mut link);
    // The pages are the allocator's, granted to the frontend; nothing of the frontend's is
    // mapped for the buffer (ring and event page only).
    assert_eq!(refs.len(), PAGES);
    assert_eq!(rig.gntalloc.alive(), PAGES);
    assert_eq!(rig.gntdev.mapped_pages(), 2);
    frontend_draws(&rig, &refs);
    let (flipped, shown) = send(&rig, &mut link, 3, Request::PageFlip { fb_cookie: 0xf0 });
    assert_eq!((flipped.status, shown), (0, Some(0xf0)));
    let (source, dbuf_cookie) = copy_source(KEY, 0, &link.state, 0xf0, 0).unwrap();
    assert_eq!(dbuf_cookie, 0xd0);
    let bytes = copy_frame(&source, &AtomicBool::new(false), |_| {}).unwrap();
    drop(source);
    let pixel = |n: usize| u32::from_le_bytes(bytes[4 * n..4 * n + 4].try_into().unwrap());
    assert_eq!(
        (pixel(0), pixel(1), pixel(3071)),
        (0x5a00_0000, 0x5a00_0001, 0x5a00_0bff)
    );
    // Linux's xen-drm-front unmaps before DBUF_DESTROY; the guest may do so after. Here the
    // frontend still maps the pages when the backend lets go: they stay the frontend's.
    let (destroyed, _) = send(
        &rig,
        &mut link,
        4,
        Request::DbufDestroy { dbuf_cookie: 0xd0 },
    );
    assert_eq!(destroyed.status, 0);
    assert!(link.state.buffers.is_empty());
    assert_eq!(rig.grants.allocator().unwrap().pages_held(), 0);
    assert_eq!(rig.gntalloc.mapped_regions(), 0);
    assert_eq!(rig.gntalloc.alive(), PAGES);
    for &gref in &refs {
        rig.gntalloc.peer_write(gref, 0, &[1]).unwrap();
        rig.gntalloc.peer_unmap(gref);
    }
    assert_eq!(rig.gntalloc.alive(), 0);
    unmap_link(KEY, link, None, &mut Summary::default());
    assert_eq!((rig.gntdev.recorded(), rig.gntdev.mapped_pages()), (0, 0));
}

#[test]
fn a_device_closed_with_backend_allocated_buffers_lets_go_of_them_and_waits_for_the_frontend() {
    let rig = rig();
    for cycle in 0..3 {
        let mut link = connect(&rig);
        let refs = create_and_attach(&rig, &mut link);
        frontend_draws(&rig, &refs);
        // The frontend goes away without DBUF_DESTROY (its backend was restarted, or it
        // crashed): the backend lets go of everything; the pages stay until it unmaps them.
        unmap_link(KEY, link, None, &mut Summary::default());
        assert_eq!(rig.grants.allocator().unwrap().pages_held(), 0);
        assert_eq!(rig.gntalloc.alive(), PAGES, "cycle {cycle}");
        for &gref in &refs {
            rig.gntalloc.peer_unmap(gref);
        }
        assert_eq!(rig.gntalloc.alive(), 0, "cycle {cycle}");
        assert_eq!((rig.gntdev.recorded(), rig.gntdev.mapped_pages()), (0, 0));
        for gref in [RING_REF, EVENT_REF, DIRECTORY_REF] {
            rig.gntdev.end(DOMID, gref).unwrap();
        }
    }
}

#[test]
fn a_refused_allocation_is_named_and_the_backend_carries_on() {
    // No room in the directory for the references: the chain names a page not granted.
    let rig = rig();
    let mut link = connect(&rig);
    let Request::DbufCreate(mut bad) = create_request(DBUF_FLAG_REQ_ALLOC) else {
        unreachable!("create_request is a DBUF_CREATE")
    };
    bad.gref_directory = 99;
    let (refused, _) = send(&rig, &mut link, 1, Request::DbufCreate(bad));
    assert_eq!(refused.status, drivers::xen::vdispl::backend::ENOMEM);
    assert_eq!(rig.gntalloc.alive(), 0);
    assert!(link.state.model.buffers.is_empty() && link.state.buffers.is_empty());
    // The next, good request is served.
    let refs = create_and_attach(&rig, &mut link);
    assert_eq!(refs.len(), PAGES);
    // Never mapped by the frontend: freed with the close.
    unmap_link(KEY, link, None, &mut Summary::default());
    assert_eq!(rig.gntalloc.alive(), 0);
    assert_eq!(rig.grants.allocator().unwrap().pages_held(), 0);
    // A backend without gntalloc says it does not offer them.
    let plain = Rig {
        grants: GrantMapper::over(rig.gntdev.clone()),
        ..rig
    };
    for gref in [RING_REF, EVENT_REF, DIRECTORY_REF] {
        plain.gntdev.end(DOMID, gref).unwrap();
    }
    let mut link = connect(&plain);
    let (refused, _) = send(&plain, &mut link, 1, create_request(DBUF_FLAG_REQ_ALLOC));
    assert_eq!(refused.status, EOPNOTSUPP);
    unmap_link(KEY, link, None, &mut Summary::default());
}
