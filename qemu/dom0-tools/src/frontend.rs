//! What the display backend reads from xenstore about a frontend: which device a watched
//! path belongs to, and the frontend's protocol version and connectors with their rings and
//! event channels (io/displif.h, "Frontend XenBus Nodes"; libxl writes `resolution` and
//! `unique-id` of each connector, the frontend the rest), and what of it the backend refuses:
//! a whole device ([`DeviceRefusal`]) or one connector's `resolution` ([`ResolutionRefusal`]).

use drivers::xen::displif::{field, parse_resolution, ResolutionError};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
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
    scope_under(BACKEND_ROOT, path)
}

/// What a watch event at `path` concerns, for a backend whose devices are
/// `<root>/<frontend domid>/<device id>` (as [`scope_of`] for [`BACKEND_ROOT`]).
pub fn scope_under(root: &str, path: &str) -> Scope {
    let Some(rest) = path.strip_prefix(root) else {
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
    /// What a failed read reports.
    type Error: fmt::Display + fmt::Debug;

    /// The value of `path`, or `None`.
    fn read_node(&mut self, path: &str) -> Result<Option<String>, Self::Error>;

    /// The names of `path`'s children (`XS_DIRECTORY`); empty when it has none or does not
    /// exist.
    fn list_directory(&mut self, path: &str) -> Result<Vec<String>, Self::Error>;
}

impl NodeReader for BTreeMap<String, String> {
    type Error = Infallible;

    fn read_node(&mut self, path: &str) -> Result<Option<String>, Infallible> {
        Ok(self.get(path).cloned())
    }

    /// The children the keys below `path` imply, as xenstored creates a written node's parents.
    fn list_directory(&mut self, path: &str) -> Result<Vec<String>, Infallible> {
        let prefix = format!("{path}/");
        let names: BTreeSet<&str> = self
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, _)| key[prefix.len()..].split('/').next())
            .filter(|name| !name.is_empty())
            .collect();
        Ok(names.into_iter().map(String::from).collect())
    }
}

/// One connector as the frontend set it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// Its index in the device.
    pub index: u32,
    /// `unique-id` (empty if absent).
    pub unique_id: String,
    /// Width and height from `resolution`, or why this backend refuses the connector: a refused
    /// connector's rings are set up like any other's, and every request on its ring is answered
    /// -EINVAL.
    pub resolution: Result<(u32, u32), ResolutionRefusal>,
    /// `req-ring-ref`.
    pub req_ring_ref: u32,
    /// `req-event-channel` (the frontend's port).
    pub req_port: u32,
    /// `evt-ring-ref`.
    pub evt_ring_ref: u32,
    /// `evt-event-channel` (the frontend's port).
    pub evt_port: u32,
}

impl ConnectorConfig {
    /// Width and height, unless the connector is refused.
    pub fn mode(&self) -> Option<(u32, u32)> {
        self.resolution.as_ref().ok().copied()
    }
}

/// A connector's `resolution` that this backend refuses (io/displif.h: `<width>x<height>`;
/// this backend takes 1 to [`drivers::xen::displif::MAX_DIMENSION`] each way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolutionRefusal {
    /// The `resolution` node.
    pub path: String,
    /// What it holds.
    pub value: String,
    /// Why it is refused.
    pub reason: ResolutionError,
}

impl fmt::Display for ResolutionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} holds {} ({})",
            self.path,
            Quoted(&self.value),
            self.reason
        )
    }
}

/// A frontend ready to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    /// The agreed protocol version: the frontend's `version`, 1 when it wrote none.
    pub version: u32,
    /// Connectors 0..N, every one the frontend's directory lists.
    pub connectors: Vec<ConnectorConfig>,
}

impl FrontendConfig {
    /// The connectors refused for their `resolution`, with why.
    pub fn refused(&self) -> impl Iterator<Item = (u32, &ResolutionRefusal)> {
        self.connectors.iter().filter_map(|connector| {
            let refusal = connector.resolution.as_ref().err()?;
            Some((connector.index, refusal))
        })
    }
}

/// At most this many connectors per device are served (a bound on what a frontend can make the
/// backend map); a device that lists more is refused.
pub const MAX_CONNECTORS: u32 = 16;

/// A value shown in a message: quoted, escaped to printable ASCII (as xenstore values should
/// be), and cut after [`QUOTED_MAX`] characters, so that whatever a frontend writes makes one
/// short line.
struct Quoted<'a>(&'a str);

/// The most characters of a value a message shows.
const QUOTED_MAX: usize = 40;

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, cut) = match self.0.char_indices().nth(QUOTED_MAX) {
            None => (self.0, false),
            Some((end, _)) => (&self.0[..end], true),
        };
        write!(f, "\"{}\"", shown.escape_default())?;
        if cut {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// Why this backend refuses a frontend's device as a whole: its nodes do not describe a device
/// it can serve. The device waits at InitWait until the frontend changes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceRefusal {
    /// `version` asks for a protocol version this backend does not offer.
    Version {
        /// The `version` node.
        path: String,
        /// What it holds.
        value: String,
    },
    /// A node the device needs is missing.
    Missing {
        /// The node.
        path: String,
    },
    /// A node that holds a number holds something else.
    NotANumber {
        /// The node.
        path: String,
        /// What it holds.
        value: String,
    },
    /// The directory lists no connector.
    NoConnector {
        /// Connector 0's `resolution` node.
        path: String,
    },
    /// A connector is missing below one that is listed (connector 0 included).
    Gap {
        /// The first connector missing.
        missing: String,
        /// The first connector listed after it.
        listed: String,
    },
    /// An entry of digits that is no connector index (a leading 0, or beyond `u32`).
    NotAnIndex {
        /// The entry.
        path: String,
    },
    /// More connectors than [`MAX_CONNECTORS`].
    TooMany {
        /// The frontend's device directory.
        path: String,
        /// How many it lists.
        count: usize,
    },
}

impl fmt::Display for DeviceRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRefusal::Version { path, value } => write!(
                f,
                "{path} asks for protocol version {}; this backend offers {VERSIONS}",
                Quoted(value)
            ),
            DeviceRefusal::Missing { path } => write!(f, "{path} is missing"),
            DeviceRefusal::NotANumber { path, value } => {
                write!(f, "{path} holds {}, not a number", Quoted(value))
            }
            DeviceRefusal::NoConnector { path } => {
                write!(f, "{path} is missing: the device has no connector")
            }
            DeviceRefusal::Gap { missing, listed } => write!(
                f,
                "{missing} is missing but {listed} is listed: displif.h numbers connectors \
                 from 0 without gaps"
            ),
            DeviceRefusal::NotAnIndex { path } => write!(
                f,
                "{path} is listed: not a connector index (displif.h numbers connectors 0, 1, \
                 2, ... in decimal)"
            ),
            DeviceRefusal::TooMany { path, count } => write!(
                f,
                "{path} lists {count} connectors; this backend serves at most {MAX_CONNECTORS}"
            ),
        }
    }
}

/// Why [`read_frontend`] gives no configuration: the nodes could not be read, or they are
/// refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontendError<E> {
    /// Reading a node failed.
    Store(E),
    /// The nodes describe no device this backend serves.
    Refused(DeviceRefusal),
}

impl<E: fmt::Display> fmt::Display for FrontendError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendError::Store(error) => error.fmt(f),
            FrontendError::Refused(refusal) => refusal.fmt(f),
        }
    }
}

impl<E> From<DeviceRefusal> for FrontendError<E> {
    fn from(refusal: DeviceRefusal) -> Self {
        FrontendError::Refused(refusal)
    }
}

fn read<S: NodeReader>(
    store: &mut S,
    path: &str,
) -> Result<Option<String>, FrontendError<S::Error>> {
    store.read_node(path).map_err(FrontendError::Store)
}

fn required<S: NodeReader>(store: &mut S, path: &str) -> Result<String, FrontendError<S::Error>> {
    read(store, path)?.ok_or_else(|| {
        DeviceRefusal::Missing {
            path: path.to_string(),
        }
        .into()
    })
}

fn required_number<S: NodeReader>(
    store: &mut S,
    path: &str,
) -> Result<u32, FrontendError<S::Error>> {
    let value = required(store, path)?;
    number(value.trim()).ok_or_else(|| {
        DeviceRefusal::NotANumber {
            path: path.to_string(),
            value,
        }
        .into()
    })
}

/// How many connectors the frontend's directory lists (its entries of digits), checked as
/// [`read_frontend`] checks them: 0..N without gaps, N at most [`MAX_CONNECTORS`]. The toolstack
/// writes these entries when it creates the device, so the device's shape can be checked
/// before the frontend has published anything.
pub fn connector_count<S: NodeReader>(
    store: &mut S,
    frontend: &str,
) -> Result<u32, FrontendError<S::Error>> {
    let mut indices = BTreeSet::new();
    for name in store
        .list_directory(frontend)
        .map_err(FrontendError::Store)?
    {
        if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_digit()) {
            continue;
        }
        match number(&name) {
            Some(index) if index.to_string() == name => {
                indices.insert(index);
            }
            _ => {
                return Err(DeviceRefusal::NotAnIndex {
                    path: format!("{frontend}/{name}"),
                }
                .into())
            }
        }
    }
    if indices.is_empty() {
        return Err(DeviceRefusal::NoConnector {
            path: format!("{frontend}/0/{}", field::RESOLUTION),
        }
        .into());
    }
    for (expected, &index) in (0u32..).zip(&indices) {
        if index != expected {
            return Err(DeviceRefusal::Gap {
                missing: format!("{frontend}/{expected}"),
                listed: format!("{frontend}/{index}"),
            }
            .into());
        }
    }
    let count = indices.len();
    match u32::try_from(count) {
        Ok(count) if count <= MAX_CONNECTORS => Ok(count),
        _ => Err(DeviceRefusal::TooMany {
            path: frontend.to_string(),
            count,
        }
        .into()),
    }
}

/// Reads the frontend at `frontend` (its device directory): version and connectors. The
/// device is refused ([`FrontendError::Refused`]) when its version is not offered, its
/// directory does not list connectors 0..N (N at most [`MAX_CONNECTORS`]), or a listed
/// connector lacks `resolution` or a ring or channel node; a connector whose `resolution` is
/// refused ([`ResolutionRefusal`]) stays in the configuration, marked so.
pub fn read_frontend<S: NodeReader>(
    store: &mut S,
    frontend: &str,
) -> Result<FrontendConfig, FrontendError<S::Error>> {
    let version_path = format!("{frontend}/{}", field::FE_VERSION);
    let version = match read(store, &version_path)? {
        None => 1,
        Some(value) => match number(value.trim()) {
            Some(version @ 1..=2) => version,
            _ => {
                return Err(DeviceRefusal::Version {
                    path: version_path,
                    value,
                }
                .into())
            }
        },
    };
    let count = connector_count(store, frontend)?;
    let mut connectors = Vec::new();
    for index in 0..count {
        let base = format!("{frontend}/{index}");
        let resolution_path = format!("{base}/{}", field::RESOLUTION);
        let value = required(store, &resolution_path)?;
        let resolution = parse_resolution(&value).map_err(|reason| ResolutionRefusal {
            path: resolution_path,
            value,
            reason,
        });
        connectors.push(ConnectorConfig {
            index,
            unique_id: read(store, &format!("{base}/{}", field::UNIQUE_ID))?.unwrap_or_default(),
            resolution,
            req_ring_ref: required_number(store, &format!("{base}/{}", field::REQ_RING_REF))?,
            req_port: required_number(store, &format!("{base}/{}", field::REQ_CHANNEL))?,
            evt_ring_ref: required_number(store, &format!("{base}/{}", field::EVT_RING_REF))?,
            evt_port: required_number(store, &format!("{base}/{}", field::EVT_CHANNEL))?,
        });
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

    /// The device's configuration, or its refusal (reading the map never fails).
    fn read_config(
        nodes: &mut BTreeMap<String, String>,
    ) -> Result<FrontendConfig, FrontendError<Infallible>> {
        read_frontend(nodes, BASE)
    }

    fn refusal(nodes: &mut BTreeMap<String, String>) -> DeviceRefusal {
        match read_config(nodes) {
            Err(FrontendError::Refused(refusal)) => refusal,
            other => panic!("not refused: {other:?}"),
        }
    }

    /// Connector `n`'s nodes, as libxl and the frontend write them.
    fn add_connector(nodes: &mut BTreeMap<String, String>, n: u32, resolution: &str) {
        let base = format!("{BASE}/{n}");
        nodes.insert(format!("{base}/resolution"), resolution.to_string());
        nodes.insert(format!("{base}/unique-id"), format!("C-{n}"));
        for (node, value) in [
            ("req-ring-ref", 10 + n),
            ("req-event-channel", 20 + n),
            ("evt-ring-ref", 30 + n),
            ("evt-event-channel", 40 + n),
        ] {
            nodes.insert(format!("{base}/{node}"), value.to_string());
        }
    }

    #[test]
    fn the_map_reader_lists_the_children_its_keys_imply() {
        let mut nodes = frontend(Some("2"));
        nodes.insert(format!("{BASE}/0-x"), "1".into());
        nodes.insert(format!("{BASE}0/1/resolution"), "1x1".into());
        assert_eq!(
            nodes.list_directory(BASE),
            Ok(vec!["0".into(), "0-x".into(), "1".into(), "version".into()])
        );
        assert_eq!(
            nodes.list_directory(&format!("{BASE}/1")),
            Ok(vec![
                "evt-event-channel".into(),
                "evt-ring-ref".into(),
                "req-event-channel".into(),
                "req-ring-ref".into(),
                "resolution".into(),
                "unique-id".into(),
            ])
        );
        assert_eq!(nodes.list_directory("/local/domain/4"), Ok(vec![]));
    }

    #[test]
    fn a_frontend_without_version_speaks_version_1() {
        let config = read_config(&mut frontend(None)).unwrap();
        assert_eq!(config.version, 1);
        assert_eq!(
            config.connectors[1],
            ConnectorConfig {
                index: 1,
                unique_id: "HDMI-A-1".into(),
                resolution: Ok((800, 600)),
                req_ring_ref: 11,
                req_port: 21,
                evt_ring_ref: 31,
                evt_port: 41,
            }
        );
        assert_eq!(config.connectors.len(), 2);
        assert_eq!(config.refused().count(), 0);
        assert_eq!(read_config(&mut frontend(Some("2"))).unwrap().version, 2);
    }

    #[test]
    fn bad_frontends_are_named() {
        let mut nodes = frontend(Some("3"));
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/version asks for protocol version \"3\"; \
             this backend offers 1,2"
        );
        let mut nodes = frontend(None);
        nodes.remove(&format!("{BASE}/1/evt-event-channel"));
        assert_eq!(
            refusal(&mut nodes),
            DeviceRefusal::Missing {
                path: format!("{BASE}/1/evt-event-channel")
            }
        );
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/1/evt-event-channel is missing"
        );
        let mut nodes = frontend(None);
        nodes.insert(format!("{BASE}/0/req-ring-ref"), "-1".into());
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/0/req-ring-ref holds \"-1\", not a number"
        );
        // A listed connector without `resolution` is the device's fault, not the connector's.
        let mut nodes = frontend(None);
        nodes.remove(&format!("{BASE}/1/resolution"));
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/1/resolution is missing"
        );
        // Whatever a frontend writes makes a short line of printable ASCII.
        let mut nodes = frontend(None);
        nodes.insert(format!("{BASE}/0/req-ring-ref"), "\"r\u{e9}f\"".into());
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/0/req-ring-ref holds \"\\\"r\\u{e9}f\\\"\", not a \
             number"
        );
        let mut nodes = frontend(Some(&"9\n".repeat(100)));
        assert_eq!(
            refusal(&mut nodes).to_string(),
            format!(
                "{BASE}/version asks for protocol version \"{}\"... (200 bytes); this backend \
                 offers 1,2",
                "9\\n".repeat(20)
            )
        );
    }

    #[test]
    fn a_connector_with_a_bad_resolution_is_refused_on_its_own() {
        for (value, reason, said) in [
            ("1280*720", ResolutionError::NotWxH, "not <width>x<height>"),
            ("", ResolutionError::NotWxH, "not <width>x<height>"),
            ("0x0", ResolutionError::Zero, "a width or height of 0"),
            ("640x0", ResolutionError::Zero, "a width or height of 0"),
            ("8193x600", ResolutionError::TooLarge, "beyond 8192x8192"),
            (
                "99999999999x1",
                ResolutionError::TooLarge,
                "beyond 8192x8192",
            ),
        ] {
            let mut nodes = frontend(None);
            nodes.insert(format!("{BASE}/1/resolution"), value.into());
            let config = read_config(&mut nodes).unwrap();
            // Connector 0 is as it was; connector 1 keeps its rings and channels.
            assert_eq!(config.connectors[0].mode(), Some((1280, 720)));
            let refused = &config.connectors[1];
            assert_eq!(refused.mode(), None);
            assert_eq!(
                (refused.req_ring_ref, refused.req_port),
                (11, 21),
                "{value}"
            );
            assert_eq!((refused.evt_ring_ref, refused.evt_port), (31, 41));
            let refusal = ResolutionRefusal {
                path: format!("{BASE}/1/resolution"),
                value: value.into(),
                reason,
            };
            assert_eq!(refused.resolution, Err(refusal.clone()), "{value}");
            assert_eq!(
                refusal.to_string(),
                format!("{BASE}/1/resolution holds {value:?} ({said})")
            );
            let listed: Vec<(u32, &ResolutionRefusal)> = config.refused().collect();
            assert_eq!(listed, [(1, &refusal)]);
        }
        // The largest resolution taken.
        let mut nodes = frontend(None);
        nodes.insert(format!("{BASE}/0/resolution"), "8192x8192".into());
        assert_eq!(
            read_config(&mut nodes).unwrap().connectors[0].mode(),
            Some((8192, 8192))
        );
    }

    #[test]
    fn connectors_are_listed_from_0_without_gaps() {
        // A gap: connector 1 missing, 2 listed (it was silently dropped before).
        let mut nodes = frontend(None);
        nodes.retain(|path, _| !path.starts_with(&format!("{BASE}/1/")));
        add_connector(&mut nodes, 2, "640x480");
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/1 is missing but \
             /local/domain/3/device/vdispl/0/2 is listed: displif.h numbers connectors from 0 \
             without gaps"
        );
        // No connector 0.
        let mut nodes = frontend(None);
        nodes.retain(|path, _| !path.starts_with(&format!("{BASE}/0/")));
        assert_eq!(
            refusal(&mut nodes),
            DeviceRefusal::Gap {
                missing: format!("{BASE}/0"),
                listed: format!("{BASE}/1"),
            }
        );
        // No connector at all.
        let mut nodes = BTreeMap::new();
        nodes.insert(format!("{BASE}/state"), "3".into());
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/0/resolution is missing: the device has no \
             connector"
        );
        // An entry of digits that is not an index.
        let mut nodes = frontend(None);
        add_connector(&mut nodes, 2, "640x480");
        nodes.insert(format!("{BASE}/02/resolution"), "640x480".into());
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0/02 is listed: not a connector index (displif.h \
             numbers connectors 0, 1, 2, ... in decimal)"
        );
        // Other entries are no connectors.
        let mut nodes = frontend(Some("1"));
        nodes.insert(format!("{BASE}/state"), "3".into());
        nodes.insert(format!("{BASE}/be-alloc"), "0".into());
        assert_eq!(read_config(&mut nodes).unwrap().connectors.len(), 2);
        // The shape alone, from what the toolstack writes, before the frontend published.
        let mut nodes: BTreeMap<String, String> = frontend(None)
            .into_iter()
            .filter(|(path, _)| path.ends_with("/resolution"))
            .collect();
        assert_eq!(connector_count(&mut nodes, BASE), Ok(2));
        nodes.remove(&format!("{BASE}/0/resolution"));
        assert_eq!(
            connector_count(&mut nodes, BASE),
            Err(FrontendError::Refused(DeviceRefusal::Gap {
                missing: format!("{BASE}/0"),
                listed: format!("{BASE}/1"),
            }))
        );
    }

    #[test]
    fn more_connectors_than_the_backend_serves_are_refused() {
        let mut nodes = BTreeMap::new();
        for n in 0..MAX_CONNECTORS {
            add_connector(&mut nodes, n, "64x48");
        }
        let config = read_config(&mut nodes).unwrap();
        assert_eq!(config.connectors.len(), MAX_CONNECTORS as usize);
        assert_eq!(config.connectors[15].unique_id, "C-15");
        add_connector(&mut nodes, MAX_CONNECTORS, "64x48");
        assert_eq!(
            refusal(&mut nodes),
            DeviceRefusal::TooMany {
                path: BASE.into(),
                count: 17
            }
        );
        assert_eq!(
            refusal(&mut nodes).to_string(),
            "/local/domain/3/device/vdispl/0 lists 17 connectors; this backend serves at most 16"
        );
    }

    /// A reader whose reads fail, as a xenstore connection can.
    struct Failing;

    impl NodeReader for Failing {
        type Error = String;

        fn read_node(&mut self, path: &str) -> Result<Option<String>, String> {
            Err(format!("xenstore READ {path}: the connection was closed"))
        }

        fn list_directory(&mut self, path: &str) -> Result<Vec<String>, String> {
            Err(format!(
                "xenstore DIRECTORY {path}: the connection was closed"
            ))
        }
    }

    #[test]
    fn a_failed_read_is_no_refusal() {
        let error = read_frontend(&mut Failing, BASE).unwrap_err();
        assert_eq!(
            error,
            FrontendError::Store(format!(
                "xenstore READ {BASE}/version: the connection was closed"
            ))
        );
    }
}
