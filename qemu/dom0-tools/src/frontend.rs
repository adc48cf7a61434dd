//! What the display backend reads from xenstore about a frontend: which device a watched
//! path belongs to, and the frontend's protocol version and connectors with their rings and
//! event channels (io/displif.h, "Frontend XenBus Nodes"; libxl writes `resolution` and
//! `unique-id` of each connector, the frontend the rest).

use drivers::xen::displif::{field, parse_resolution};
use std::collections::BTreeMap;
use std::fmt;

/// Where libxl creates the backend directories of Dom0's vdispl devices:
/// `<BACKEND_ROOT>/<frontend domid>/<device id>`.
pub const BACKEND_ROOT: &str = "/local/domain/0/backend/vdispl";

/// Protocol versions this backend speaks (its `versions` node).
pub const VERSIONS: &str = "1,2";

/// One vdispl device of one frontend domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceKey {
    /// The frontend's domain.
    pub domid: u32,
    /// The device id (`vdispl` index in the xl config).
    pub device: u32,
}

impl DeviceKey {
    /// The backend directory.
    pub fn backend_path(&self) -> String {
        format!("{BACKEND_ROOT}/{}/{}", self.domid, self.device)
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dom{} dev{}", self.domid, self.device)
    }
}

/// What a watch event under [`BACKEND_ROOT`] concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The root or a whole domain's directory: look at every device again.
    Everything,
    /// One device (its directory or a node below it).
    Device(DeviceKey),
    /// Not under the root.
    Elsewhere,
}

/// Which device a changed path belongs to.
pub fn scope_of(path: &str) -> Scope {
    let Some(rest) = path.strip_prefix(BACKEND_ROOT) else {
        return Scope::Elsewhere;
    };
    if rest.is_empty() {
        return Scope::Everything;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Scope::Elsewhere;
    };
    let mut parts = rest.split('/');
    let domid = parts.next().and_then(number);
    let device = parts.next().and_then(number);
    match (domid, device) {
        (Some(domid), Some(device)) => Scope::Device(DeviceKey { domid, device }),
        (Some(_), None) => Scope::Everything,
        _ => Scope::Elsewhere,
    }
}

/// A decimal number without sign or spaces.
pub fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Reads xenstore nodes; `None` for a node that does not exist.
pub trait NodeReader {
    /// The value of `path`, or `None`; the error says what failed.
    fn read_node(&mut self, path: &str) -> Result<Option<String>, String>;
}

impl NodeReader for BTreeMap<String, String> {
    fn read_node(&mut self, path: &str) -> Result<Option<String>, String> {
        Ok(self.get(path).cloned())
    }
}

/// One connector as the frontend set it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// Its index in the device.
    pub index: u32,
    /// `unique-id` (empty if absent).
    pub unique_id: String,
    /// Width from `resolution`.
    pub width: u32,
    /// Height from `resolution`.
    pub height: u32,
    /// `req-ring-ref`.
    pub req_ring_ref: u32,
    /// `req-event-channel` (the frontend's port).
    pub req_port: u32,
    /// `evt-ring-ref`.
    pub evt_ring_ref: u32,
    /// `evt-event-channel` (the frontend's port).
    pub evt_port: u32,
}

/// A frontend ready to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    /// The agreed protocol version: the frontend's `version`, 1 when it wrote none.
    pub version: u32,
    /// Connectors 0..N, as far as `<N>/resolution` exists.
    pub connectors: Vec<ConnectorConfig>,
}

/// At most this many connectors per device are read (a bound on what a frontend can make the
/// backend map).
pub const MAX_CONNECTORS: u32 = 16;

fn required(store: &mut impl NodeReader, path: &str) -> Result<String, String> {
    store
        .read_node(path)?
        .ok_or_else(|| format!("{path} is missing"))
}

fn required_number(store: &mut impl NodeReader, path: &str) -> Result<u32, String> {
    let value = required(store, path)?;
    number(value.trim()).ok_or_else(|| format!("{path} holds {value:?}, not a number"))
}

/// Reads the frontend at `frontend` (its device directory): version and connectors.
pub fn read_frontend(
    store: &mut impl NodeReader,
    frontend: &str,
) -> Result<FrontendConfig, String> {
    let version_path = format!("{frontend}/{}", field::FE_VERSION);
    let version = match store.read_node(&version_path)? {
        None => 1,
        Some(value) => match number(value.trim()) {
            Some(version @ 1..=2) => version,
            _ => {
                return Err(format!(
                    "{version_path} asks for protocol version {value:?}; this backend offers {VERSIONS}"
                ))
            }
        },
    };
    let mut connectors = Vec::new();
    for index in 0..MAX_CONNECTORS {
        let base = format!("{frontend}/{index}");
        let resolution_path = format!("{base}/{}", field::RESOLUTION);
        let Some(resolution) = store.read_node(&resolution_path)? else {
            break;
        };
        let (width, height) = parse_resolution(&resolution)
            .map_err(|why| format!("{resolution_path} holds {resolution:?}, {why}"))?;
        connectors.push(ConnectorConfig {
            index,
            unique_id: store
                .read_node(&format!("{base}/{}", field::UNIQUE_ID))?
                .unwrap_or_default(),
            width,
            height,
            req_ring_ref: required_number(store, &format!("{base}/{}", field::REQ_RING_REF))?,
            req_port: required_number(store, &format!("{base}/{}", field::REQ_CHANNEL))?,
            evt_ring_ref: required_number(store, &format!("{base}/{}", field::EVT_RING_REF))?,
            evt_port: required_number(store, &format!("{base}/{}", field::EVT_CHANNEL))?,
        });
    }
    if connectors.is_empty() {
        return Err(format!(
            "{frontend}/0/{} is missing: the device has no connector",
            field::RESOLUTION
        ));
    }
    Ok(FrontendConfig {
        version,
        connectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_paths_name_their_device() {
        assert_eq!(scope_of(BACKEND_ROOT), Scope::Everything);
        assert_eq!(scope_of(&format!("{BACKEND_ROOT}/3")), Scope::Everything);
        let key = DeviceKey {
            domid: 3,
            device: 0,
        };
        assert_eq!(scope_of(&format!("{BACKEND_ROOT}/3/0")), Scope::Device(key));
        assert_eq!(
            scope_of(&format!("{BACKEND_ROOT}/3/0/state")),
            Scope::Device(key)
        );
        assert_eq!(
            scope_of("/local/domain/0/backend/vdisplay/3/0"),
            Scope::Elsewhere
        );
        assert_eq!(scope_of(&format!("{BACKEND_ROOT}/x/0")), Scope::Elsewhere);
        assert_eq!(
            scope_of("/local/domain/3/device/vdispl/0/state"),
            Scope::Elsewhere
        );
        assert_eq!(key.backend_path(), "/local/domain/0/backend/vdispl/3/0");
        assert_eq!(key.to_string(), "dom3 dev0");
    }

    fn frontend(version: Option<&str>) -> BTreeMap<String, String> {
        let mut nodes = BTreeMap::new();
        let base = "/local/domain/3/device/vdispl/0";
        if let Some(version) = version {
            nodes.insert(format!("{base}/version"), version.to_string());
        }
        for (index, (id, resolution)) in [("DP-1", "1280x720"), ("HDMI-A-1", "800x600")]
            .iter()
            .enumerate()
        {
            let n = index as u32;
            nodes.insert(format!("{base}/{n}/resolution"), resolution.to_string());
            nodes.insert(format!("{base}/{n}/unique-id"), id.to_string());
            nodes.insert(format!("{base}/{n}/req-ring-ref"), (10 + n).to_string());
            nodes.insert(
                format!("{base}/{n}/req-event-channel"),
                (20 + n).to_string(),
            );
            nodes.insert(format!("{base}/{n}/evt-ring-ref"), (30 + n).to_string());
            nodes.insert(
                format!("{base}/{n}/evt-event-channel"),
                (40 + n).to_string(),
            );
        }
        nodes
    }

    const BASE: &str = "/local/domain/3/device/vdispl/0";

    #[test]
    fn a_frontend_without_version_speaks_version_1() {
        let config = read_frontend(&mut frontend(None), BASE).unwrap();
        assert_eq!(config.version, 1);
        assert_eq!(
            config.connectors[1],
            ConnectorConfig {
                index: 1,
                unique_id: "HDMI-A-1".into(),
                width: 800,
                height: 600,
                req_ring_ref: 11,
                req_port: 21,
                evt_ring_ref: 31,
                evt_port: 41,
            }
        );
        assert_eq!(config.connectors.len(), 2);
        assert_eq!(
            read_frontend(&mut frontend(Some("2")), BASE)
                .unwrap()
                .version,
            2
        );
    }

    #[test]
    fn bad_frontends_are_named() {
        let error = read_frontend(&mut frontend(Some("3")), BASE).unwrap_err();
        assert_eq!(
            error,
            "/local/domain/3/device/vdispl/0/version asks for protocol version \"3\"; \
             this backend offers 1,2"
        );
        let mut nodes = frontend(None);
        nodes.remove(&format!("{BASE}/1/evt-event-channel"));
        assert_eq!(
            read_frontend(&mut nodes, BASE).unwrap_err(),
            "/local/domain/3/device/vdispl/0/1/evt-event-channel is missing"
        );
        let mut nodes = frontend(None);
        nodes.insert(format!("{BASE}/0/req-ring-ref"), "-1".into());
        assert_eq!(
            read_frontend(&mut nodes, BASE).unwrap_err(),
            "/local/domain/3/device/vdispl/0/0/req-ring-ref holds \"-1\", not a number"
        );
        let mut nodes = frontend(None);
        nodes.insert(format!("{BASE}/0/resolution"), "1280*720".into());
        assert!(read_frontend(&mut nodes, BASE)
            .unwrap_err()
            .ends_with("holds \"1280*720\", not <width>x<height>"));
        assert_eq!(
            read_frontend(&mut BTreeMap::new(), BASE).unwrap_err(),
            "/local/domain/3/device/vdispl/0/0/resolution is missing: the device has no connector"
        );
    }
}
