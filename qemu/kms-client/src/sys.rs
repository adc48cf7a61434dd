//! The client's only unsafe code: the DRM ioctls it uses (include/uapi/drm/drm.h and
//! drm_mode.h, Linux 6.1), the dumb buffer mapping, `mount`, `sync` and `reboot`, each wrapped
//! in a safe function. The structs mirror the uapi structs field for field; their sizes are
//! checked at compile time, and the request numbers are built from them as `DRM_IOWR` does.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::ptr::NonNull;

/// `struct drm_mode_card_res`.
#[repr(C)]
#[derive(Default)]
struct CardRes {
    fb_id_ptr: u64,
    crtc_id_ptr: u64,
    connector_id_ptr: u64,
    encoder_id_ptr: u64,
    count_fbs: u32,
    count_crtcs: u32,
    count_connectors: u32,
    count_encoders: u32,
    min_width: u32,
    max_width: u32,
    min_height: u32,
    max_height: u32,
}

/// `struct drm_mode_modeinfo`: a display mode, as GETCONNECTOR lists and SETCRTC takes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ModeInfo {
    /// Pixel clock in kHz.
    pub clock: u32,
    /// Visible width.
    pub hdisplay: u16,
    hsync_start: u16,
    hsync_end: u16,
    htotal: u16,
    hskew: u16,
    /// Visible height.
    pub vdisplay: u16,
    vsync_start: u16,
    vsync_end: u16,
    vtotal: u16,
    vscan: u16,
    vrefresh: u32,
    flags: u32,
    type_: u32,
    name: [u8; 32],
}

/// `struct drm_mode_crtc`.
#[repr(C)]
#[derive(Default)]
struct Crtc {
    set_connectors_ptr: u64,
    count_connectors: u32,
    crtc_id: u32,
    fb_id: u32,
    x: u32,
    y: u32,
    gamma_size: u32,
    mode_valid: u32,
    mode: ModeInfo,
}

/// `struct drm_mode_get_encoder`.
#[repr(C)]
#[derive(Default)]
struct GetEncoder {
    encoder_id: u32,
    encoder_type: u32,
    crtc_id: u32,
    possible_crtcs: u32,
    possible_clones: u32,
}

/// `struct drm_mode_get_connector`.
#[repr(C)]
#[derive(Default)]
struct GetConnector {
    encoders_ptr: u64,
    modes_ptr: u64,
    props_ptr: u64,
    prop_values_ptr: u64,
    count_modes: u32,
    count_props: u32,
    count_encoders: u32,
    encoder_id: u32,
    connector_id: u32,
    connector_type: u32,
    connector_type_id: u32,
    connection: u32,
    mm_width: u32,
    mm_height: u32,
    subpixel: u32,
    pad: u32,
}

/// `struct drm_mode_fb_cmd2`.
#[repr(C)]
#[derive(Default)]
struct FbCmd2 {
    fb_id: u32,
    width: u32,
    height: u32,
    pixel_format: u32,
    flags: u32,
    handles: [u32; 4],
    pitches: [u32; 4],
    offsets: [u32; 4],
    modifier: [u64; 4],
}

/// `struct drm_mode_crtc_page_flip`.
#[repr(C)]
#[derive(Default)]
struct PageFlip {
    crtc_id: u32,
    fb_id: u32,
    flags: u32,
    reserved: u32,
    user_data: u64,
}

/// `struct drm_mode_create_dumb`.
#[repr(C)]
#[derive(Default)]
struct CreateDumb {
    height: u32,
    width: u32,
    bpp: u32,
    flags: u32,
    handle: u32,
    pitch: u32,
    size: u64,
}

/// `struct drm_mode_map_dumb`.
#[repr(C)]
#[derive(Default)]
struct MapDumb {
    handle: u32,
    pad: u32,
    offset: u64,
}

/// `struct drm_mode_destroy_dumb`.
#[repr(C)]
#[derive(Default)]
struct DestroyDumb {
    handle: u32,
}

// The uapi sizes (x86-64 and arm64 alike); the request numbers encode them.
const _: () = {
    assert!(size_of::<CardRes>() == 64);
    assert!(size_of::<ModeInfo>() == 68);
    assert!(size_of::<Crtc>() == 104);
    assert!(size_of::<GetEncoder>() == 20);
    assert!(size_of::<GetConnector>() == 80);
    assert!(size_of::<FbCmd2>() == 104);
    assert!(size_of::<PageFlip>() == 24);
    assert!(size_of::<CreateDumb>() == 32);
    assert!(size_of::<MapDumb>() == 16);
    assert!(size_of::<DestroyDumb>() == 4);
};

/// `DRM_IOWR(nr, T)`: read-write (3 << 30), the size, type 'd', the number.
const fn iowr<T>(nr: u32) -> u32 {
    (3 << 30) | ((size_of::<T>() as u32) << 16) | ((b'd' as u32) << 8) | nr
}

/// A DRM ioctl by its uapi name (for failure lines) and number.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// `DRM_IOCTL_MODE_...`.
    pub name: &'static str,
    number: u32,
}

/// `DRM_IOCTL_MODE_GETRESOURCES`.
pub const GETRESOURCES: Request = Request {
    name: "DRM_IOCTL_MODE_GETRESOURCES",
    number: iowr::<CardRes>(0xa0),
};
/// `DRM_IOCTL_MODE_SETCRTC`.
pub const SETCRTC: Request = Request {
    name: "DRM_IOCTL_MODE_SETCRTC",
    number: iowr::<Crtc>(0xa2),
};
/// `DRM_IOCTL_MODE_GETENCODER`.
pub const GETENCODER: Request = Request {
    name: "DRM_IOCTL_MODE_GETENCODER",
    number: iowr::<GetEncoder>(0xa6),
};
/// `DRM_IOCTL_MODE_GETCONNECTOR`.
pub const GETCONNECTOR: Request = Request {
    name: "DRM_IOCTL_MODE_GETCONNECTOR",
    number: iowr::<GetConnector>(0xa7),
};
/// `DRM_IOCTL_MODE_RMFB`.
pub const RMFB: Request = Request {
    name: "DRM_IOCTL_MODE_RMFB",
    number: iowr::<u32>(0xaf),
};
/// `DRM_IOCTL_MODE_PAGE_FLIP`.
pub const PAGE_FLIP: Request = Request {
    name: "DRM_IOCTL_MODE_PAGE_FLIP",
    number: iowr::<PageFlip>(0xb0),
};
/// `DRM_IOCTL_MODE_CREATE_DUMB`.
pub const CREATE_DUMB: Request = Request {
    name: "DRM_IOCTL_MODE_CREATE_DUMB",
    number: iowr::<CreateDumb>(0xb2),
};
/// `DRM_IOCTL_MODE_MAP_DUMB`.
pub const MAP_DUMB: Request = Request {
    name: "DRM_IOCTL_MODE_MAP_DUMB",
    number: iowr::<MapDumb>(0xb3),
};
/// `DRM_IOCTL_MODE_DESTROY_DUMB`.
pub const DESTROY_DUMB: Request = Request {
    name: "DRM_IOCTL_MODE_DESTROY_DUMB",
    number: iowr::<DestroyDumb>(0xb4),
};
/// `DRM_IOCTL_MODE_ADDFB2`.
pub const ADDFB2: Request = Request {
    name: "DRM_IOCTL_MODE_ADDFB2",
    number: iowr::<FbCmd2>(0xb8),
};

/// `DRM_MODE_PAGE_FLIP_EVENT`: send a DRM_EVENT_FLIP_COMPLETE when the flip is done.
const PAGE_FLIP_EVENT: u32 = 1;
/// `DRM_EVENT_FLIP_COMPLETE`.
const EVENT_FLIP_COMPLETE: u32 = 2;
/// `DRM_MODE_CONNECTED`.
pub const CONNECTED: u32 = 1;

/// A failed call: which, and the errno.
#[derive(Debug)]
pub struct CallError {
    /// The ioctl's or call's name.
    pub call: &'static str,
    /// What the kernel said.
    pub error: io::Error,
}

/// The card's objects.
#[derive(Debug, Default)]
pub struct Resources {
    /// CRTC ids.
    pub crtcs: Vec<u32>,
    /// Connector ids, in the card's order.
    pub connectors: Vec<u32>,
}

/// A connector.
#[derive(Debug)]
pub struct Connector {
    /// `DRM_MODE_CONNECTED` (1), disconnected (2) or unknown (3).
    pub connection: u32,
    /// Its modes, preferred first.
    pub modes: Vec<ModeInfo>,
    /// Encoder ids.
    pub encoders: Vec<u32>,
}

/// A dumb buffer.
#[derive(Clone, Copy, Debug)]
pub struct Dumb {
    /// GEM handle.
    pub handle: u32,
    /// Bytes from one row to the next.
    pub pitch: u32,
    /// Bytes in all.
    pub size: u64,
}

/// An open DRM card.
pub struct Card {
    file: File,
}

/// Runs one ioctl whose argument is `arg`, retrying on EINTR and EAGAIN (as libdrm does).
fn ioctl<T>(file: &File, request: Request, arg: &mut T) -> Result<(), CallError> {
    debug_assert_eq!((request.number >> 16) & 0x3fff, size_of::<T>() as u32);
    loop {
        // SAFETY: `arg` is a live, exclusively borrowed `T` whose size is the one the request
        // number encodes (the `iowr::<T>` of each request; checked above in debug builds), so
        // the kernel reads and writes only inside it; any pointers inside `T` were set by the
        // caller to buffers that outlive this call (see each caller).
        let status = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                request.number as _,
                std::ptr::from_mut(arg),
            )
        };
        if status == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if !matches!(error.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
            return Err(CallError {
                call: request.name,
                error,
            });
        }
    }
}

impl Card {
    /// Opens the card read-write, non-blocking (events are read by polling).
    pub fn open(path: &str) -> io::Result<Card> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Card { file })
    }

    /// DRM_IOCTL_MODE_GETRESOURCES: the CRTC and connector ids.
    pub fn resources(&self) -> Result<Resources, CallError> {
        loop {
            let mut counts = CardRes::default();
            ioctl(&self.file, GETRESOURCES, &mut counts)?;
            let mut fbs = vec![0u32; counts.count_fbs as usize];
            let mut crtcs = vec![0u32; counts.count_crtcs as usize];
            let mut connectors = vec![0u32; counts.count_connectors as usize];
            let mut encoders = vec![0u32; counts.count_encoders as usize];
            // Each pointer is to a vector of exactly the count given, alive until the call
            // returns.
            let mut res = CardRes {
                fb_id_ptr: fbs.as_mut_ptr() as u64,
                crtc_id_ptr: crtcs.as_mut_ptr() as u64,
                connector_id_ptr: connectors.as_mut_ptr() as u64,
                encoder_id_ptr: encoders.as_mut_ptr() as u64,
                count_fbs: counts.count_fbs,
                count_crtcs: counts.count_crtcs,
                count_connectors: counts.count_connectors,
                count_encoders: counts.count_encoders,
                ..CardRes::default()
            };
            ioctl(&self.file, GETRESOURCES, &mut res)?;
            // Objects added between the calls: ask again (the kernel filled none beyond the
            // counts given).
            if res.count_fbs > counts.count_fbs
                || res.count_crtcs > counts.count_crtcs
                || res.count_connectors > counts.count_connectors
                || res.count_encoders > counts.count_encoders
            {
                continue;
            }
            crtcs.truncate(res.count_crtcs as usize);
            connectors.truncate(res.count_connectors as usize);
            return Ok(Resources { crtcs, connectors });
        }
    }

    /// DRM_IOCTL_MODE_GETCONNECTOR: the connector's state, modes and encoders (probing it).
    pub fn connector(&self, id: u32) -> Result<Connector, CallError> {
        loop {
            let mut counts = GetConnector {
                connector_id: id,
                ..GetConnector::default()
            };
            ioctl(&self.file, GETCONNECTOR, &mut counts)?;
            let mut modes = vec![ModeInfo::default(); counts.count_modes as usize];
            let mut encoders = vec![0u32; counts.count_encoders as usize];
            let mut props = vec![0u32; counts.count_props as usize];
            let mut values = vec![0u64; counts.count_props as usize];
            // Each pointer is to a vector of exactly the count given, alive until the call
            // returns.
            let mut connector = GetConnector {
                connector_id: id,
                modes_ptr: modes.as_mut_ptr() as u64,
                encoders_ptr: encoders.as_mut_ptr() as u64,
                props_ptr: props.as_mut_ptr() as u64,
                prop_values_ptr: values.as_mut_ptr() as u64,
                count_modes: counts.count_modes,
                count_encoders: counts.count_encoders,
                count_props: counts.count_props,
                ..GetConnector::default()
            };
            ioctl(&self.file, GETCONNECTOR, &mut connector)?;
            if connector.count_modes > counts.count_modes
                || connector.count_encoders > counts.count_encoders
                || connector.count_props > counts.count_props
            {
                continue;
            }
            modes.truncate(connector.count_modes as usize);
            encoders.truncate(connector.count_encoders as usize);
            return Ok(Connector {
                connection: connector.connection,
                modes,
                encoders,
            });
        }
    }

    /// DRM_IOCTL_MODE_GETENCODER: the bit mask of the CRTCs (by index) the encoder can drive.
    pub fn possible_crtcs(&self, encoder: u32) -> Result<u32, CallError> {
        let mut arg = GetEncoder {
            encoder_id: encoder,
            ..GetEncoder::default()
        };
        ioctl(&self.file, GETENCODER, &mut arg)?;
        Ok(arg.possible_crtcs)
    }

    /// DRM_IOCTL_MODE_CREATE_DUMB.
    pub fn create_dumb(&self, width: u32, height: u32, bpp: u32) -> Result<Dumb, CallError> {
        let mut arg = CreateDumb {
            width,
            height,
            bpp,
            ..CreateDumb::default()
        };
        ioctl(&self.file, CREATE_DUMB, &mut arg)?;
        Ok(Dumb {
            handle: arg.handle,
            pitch: arg.pitch,
            size: arg.size,
        })
    }

    /// DRM_IOCTL_MODE_MAP_DUMB, then mmap of the buffer (shared, read-write).
    pub fn map_dumb(&self, dumb: &Dumb) -> Result<Mapping, CallError> {
        let mut arg = MapDumb {
            handle: dumb.handle,
            ..MapDumb::default()
        };
        ioctl(&self.file, MAP_DUMB, &mut arg)?;
        let len = usize::try_from(dumb.size).map_err(|_| CallError {
            call: "mmap",
            error: io::Error::from_raw_os_error(libc::EOVERFLOW),
        })?;
        let offset = libc::off_t::try_from(arg.offset).map_err(|_| CallError {
            call: "mmap",
            error: io::Error::from_raw_os_error(libc::EOVERFLOW),
        })?;
        // SAFETY: a new shared mapping chosen by the kernel (no address given), so it
        // overlaps no memory Rust knows; the fd and offset are the card's and MAP_DUMB's.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                offset,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(CallError {
                call: "mmap",
                error: io::Error::last_os_error(),
            });
        }
        let address = NonNull::new(address.cast::<u8>()).ok_or(CallError {
            call: "mmap",
            error: io::Error::from_raw_os_error(libc::EFAULT),
        })?;
        Ok(Mapping { address, len })
    }

    /// DRM_IOCTL_MODE_DESTROY_DUMB.
    pub fn destroy_dumb(&self, handle: u32) -> Result<(), CallError> {
        ioctl(&self.file, DESTROY_DUMB, &mut DestroyDumb { handle })
    }

    /// DRM_IOCTL_MODE_ADDFB2 of a single-plane buffer; returns the framebuffer id.
    pub fn add_framebuffer(
        &self,
        width: u32,
        height: u32,
        fourcc: u32,
        dumb: &Dumb,
    ) -> Result<u32, CallError> {
        let mut arg = FbCmd2 {
            width,
            height,
            pixel_format: fourcc,
            handles: [dumb.handle, 0, 0, 0],
            pitches: [dumb.pitch, 0, 0, 0],
            ..FbCmd2::default()
        };
        ioctl(&self.file, ADDFB2, &mut arg)?;
        Ok(arg.fb_id)
    }

    /// DRM_IOCTL_MODE_RMFB.
    pub fn remove_framebuffer(&self, fb_id: u32) -> Result<(), CallError> {
        let mut id = fb_id;
        ioctl(&self.file, RMFB, &mut id)
    }

    /// DRM_IOCTL_MODE_SETCRTC: show `fb_id` on `crtc` driving `connector` in `mode`; with
    /// `None`, turn the CRTC off (no framebuffer, no connector, no mode).
    pub fn set_crtc(
        &self,
        crtc: u32,
        shown: Option<(u32, u32, &ModeInfo)>,
    ) -> Result<(), CallError> {
        let mut connectors = [0u32; 1];
        let mut arg = Crtc {
            crtc_id: crtc,
            ..Crtc::default()
        };
        if let Some((fb_id, connector, mode)) = shown {
            connectors[0] = connector;
            // One connector id, alive until the call returns.
            arg.set_connectors_ptr = connectors.as_mut_ptr() as u64;
            arg.count_connectors = 1;
            arg.fb_id = fb_id;
            arg.mode_valid = 1;
            arg.mode = *mode;
        }
        ioctl(&self.file, SETCRTC, &mut arg)
    }

    /// DRM_IOCTL_MODE_PAGE_FLIP with DRM_MODE_PAGE_FLIP_EVENT; the event carries `user_data`.
    pub fn page_flip(&self, crtc: u32, fb_id: u32, user_data: u64) -> Result<(), CallError> {
        let mut arg = PageFlip {
            crtc_id: crtc,
            fb_id,
            flags: PAGE_FLIP_EVENT,
            user_data,
            ..PageFlip::default()
        };
        ioctl(&self.file, PAGE_FLIP, &mut arg)
    }

    /// Reads the events waiting on the card (none if there are none) and returns the
    /// `user_data` of each DRM_EVENT_FLIP_COMPLETE (`struct drm_event_vblank`) among them.
    pub fn flip_events(&self) -> Result<Vec<u64>, CallError> {
        let mut buffer = [0u8; 1024];
        let read = match (&self.file).read(&mut buffer) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Vec::new()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(Vec::new()),
            Err(error) => {
                return Err(CallError {
                    call: "read (DRM events)",
                    error,
                })
            }
        };
        let mut flips = Vec::new();
        let mut rest = &buffer[..read];
        while rest.len() >= 8 {
            let word = |at: usize| {
                u32::from_ne_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]])
            };
            let (kind, length) = (word(0), word(4) as usize);
            if length < 8 || length > rest.len() {
                break;
            }
            if kind == EVENT_FLIP_COMPLETE && length >= 16 {
                let mut user_data = [0u8; 8];
                user_data.copy_from_slice(&rest[8..16]);
                flips.push(u64::from_ne_bytes(user_data));
            }
            rest = &rest[length..];
        }
        Ok(flips)
    }
}

/// A dumb buffer mapped into the client; unmapped when dropped.
pub struct Mapping {
    address: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// The buffer's bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `address` is the start of a live read-write mapping of `len` bytes that
        // this value owns (it is unmapped only on drop), and `&mut self` makes the slice the
        // only reference to it in this process.
        unsafe { std::slice::from_raw_parts_mut(self.address.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this value owns; no slice of it outlives `&mut self`.
        unsafe {
            libc::munmap(self.address.as_ptr().cast(), self.len);
        }
    }
}

/// mount(2) without flags or data.
pub fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    let strings = [source, target, fstype].map(CString::new);
    let [Ok(source), Ok(target), Ok(fstype)] = strings else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: three NUL-terminated strings that live across the call, no data pointer.
    let status = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Flushes the file systems, then powers the domain off (reboot(2), LINUX_REBOOT_CMD_POWER_OFF);
/// returns only if that failed.
pub fn power_off() -> io::Error {
    // SAFETY: sync() and reboot() take no pointers; power-off ends this process with the
    // domain, which is what /init wants once it is done.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    io::Error::last_os_error()
}
