//! The device's xenstore side: enumeration, configuration, version
//! negotiation, publishing the connectors' transport, and the state
//! handshake.

use super::failure::Gone;
use super::{VdisplError, MAX_CONNECTORS};
use crate::xen::displif::{field, negotiate_version, parse_resolution};
use crate::xen::gnttab::GrantRef;
use crate::xen::xenbus::{self, XenbusState};
use crate::xen::xenstore::client::{BatchOp, BatchReply, Client, Error as StoreError, Stream};
use crate::xen::xenstore::wire::{Fault, XsdError};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// Where the frontend's devices are listed (relative to the domain's home).
pub const DEVICES: &str = "device/vdispl";

/// One connector as the toolstack configured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// Its index (`<dev>/<index>`).
    pub index: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Its `unique-id`.
    pub unique_id: String,
    /// Why it cannot be driven (its `resolution`), if it cannot: its rings
    /// are published all the same, so that the device has the shape the
    /// backend reads, but no request goes on them.
    pub refused: Option<VdisplError>,
}

/// One vdispl device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// `device/vdispl/<id>`.
    pub path: String,
    /// The backend's directory.
    pub backend: String,
    /// The backend's domain.
    pub backend_id: u16,
    /// Whether the backend may allocate buffers.
    pub be_alloc: bool,
    /// Connectors, by index (at most [`MAX_CONNECTORS`]).
    pub connectors: Vec<ConnectorConfig>,
}

/// What a connector's transport publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectorTransport {
    /// Grant of the request ring page.
    pub req_ring_ref: GrantRef,
    /// Event channel of the request ring.
    pub req_port: u32,
    /// Grant of the event page.
    pub evt_ring_ref: GrantRef,
    /// Event channel of the event page.
    pub evt_port: u32,
}

fn store_error(node: &str) -> impl FnOnce(StoreError) -> VdisplError + '_ {
    move |error| VdisplError::Store {
        node: node.to_string(),
        error,
    }
}

fn read_optional<T: Stream>(
    client: &mut Client<T>,
    node: &str,
) -> Result<Option<String>, VdisplError> {
    match client.read_string(node) {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::Xenstore(XsdError::NoEntry)) => Ok(None),
        Err(error) => Err(store_error(node)(error)),
    }
}

/// The ids of the vdispl devices of this domain, in numeric order (none if
/// the directory is missing).
pub fn enumerate<T: Stream>(client: &mut Client<T>) -> Result<Vec<String>, VdisplError> {
    let mut ids = match client.directory(DEVICES) {
        Ok(ids) => ids,
        Err(StoreError::Xenstore(XsdError::NoEntry)) => Vec::new(),
        Err(error) => return Err(store_error(DEVICES)(error)),
    };
    ids.retain(|id| id.parse::<u32>().is_ok());
    // A handful of devices: an insertion sort by number is all it takes.
    let key = |id: &String| id.parse::<u32>().unwrap_or(u32::MAX);
    for end in 1..ids.len() {
        let mut at = end;
        while at > 0 && key(&ids[at - 1]) > key(&ids[at]) {
            ids.swap(at - 1, at);
            at -= 1;
        }
    }
    Ok(ids)
}

/// What stands in for a batch result that is not there (a batch returns one
/// per operation).
const NO_REPLY: StoreError = StoreError::Broken {
    reason: Fault::RequestCutShort,
};

/// A READ result from a batch: the value as text.
fn batch_string(node: &str, result: Result<BatchReply, StoreError>) -> Result<String, VdisplError> {
    let value = result
        .map_err(store_error(node))?
        .into_value()
        .unwrap_or_default();
    String::from_utf8(value).map_err(|_| store_error(node)(StoreError::NotUtf8))
}

/// A READ result from a batch of a node that may be missing.
fn batch_optional(
    node: &str,
    result: Result<BatchReply, StoreError>,
) -> Result<Option<String>, VdisplError> {
    match result {
        Err(StoreError::Xenstore(XsdError::NoEntry)) => Ok(None),
        result => batch_string(node, result).map(Some),
    }
}

/// Reads device `id`'s configuration: backend, `be-alloc` and connectors, in
/// one batch (a single xenstore round trip): the device's nodes, its
/// directory and the nodes of connectors 0 to [`MAX_CONNECTORS`] - 1.
/// displif.h numbers connectors contiguously from 0 (the backend walks
/// `<fe>/0..N` until one is missing): a device that lists a connector past
/// a missing one, or more than [`MAX_CONNECTORS`], is refused with an error
/// naming the node.
pub fn read_device<T: Stream>(
    client: &mut Client<T>,
    id: &str,
) -> Result<DeviceConfig, VdisplError> {
    let path = format!("{DEVICES}/{id}");
    let backend_node = format!("{path}/backend");
    let backend_id_node = format!("{path}/backend-id");
    let be_alloc_node = format!("{path}/{}", field::BE_ALLOC);
    let nodes: Vec<(String, String)> = (0..MAX_CONNECTORS as u32)
        .map(|index| {
            (
                format!("{path}/{index}/{}", field::RESOLUTION),
                format!("{path}/{index}/{}", field::UNIQUE_ID),
            )
        })
        .collect();
    let mut ops = vec![
        BatchOp::Read(&backend_node),
        BatchOp::Read(&backend_id_node),
        BatchOp::Read(&be_alloc_node),
        BatchOp::Directory(&path),
    ];
    for (resolution, unique_id) in &nodes {
        ops.push(BatchOp::Read(resolution));
        ops.push(BatchOp::Read(unique_id));
    }
    let mut replies = client.batch(&ops).into_iter();
    let mut next = || replies.next().unwrap_or(Err(NO_REPLY));
    let backend = batch_string(&backend_node, next())?;
    let backend_id_value = batch_string(&backend_id_node, next())?;
    let backend_id = backend_id_value
        .trim()
        .parse()
        .map_err(|_| VdisplError::BadNode {
            node: backend_id_node,
            value: backend_id_value.clone(),
        })?;
    // displif.h: "be-alloc": 0 or 1; a missing node is 0.
    let be_alloc = match batch_optional(&be_alloc_node, next())?.as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(value) => {
            return Err(VdisplError::BadNode {
                node: be_alloc_node,
                value: value.into(),
            })
        }
    };
    let listed: Vec<u32> = next()
        .map_err(store_error(&path))?
        .into_names()
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry.parse().ok())
        .collect();
    let count = listed.len() as u32;
    if let Some(&beyond) = listed.iter().filter(|&&index| index >= count).min() {
        // Numbered 0..count without gaps, every index is below count.
        let missing = (0..).find(|index| !listed.contains(index)).unwrap_or(0);
        return Err(VdisplError::ConnectorGap {
            device: path,
            missing,
            listed: beyond,
        });
    }
    if count as usize > MAX_CONNECTORS {
        return Err(VdisplError::TooManyConnectors { device: path });
    }
    let mut connectors = Vec::new();
    for (index, (resolution_node, unique_id_node)) in (0..count).zip(nodes) {
        let (resolution, unique_id) = (next(), next());
        let value = batch_string(&resolution_node, resolution)?;
        let unique_id = batch_optional(&unique_id_node, unique_id)?.unwrap_or_default();
        let (width, height, refused) = match parse_resolution(&value) {
            Ok((width, height)) => (width, height, None),
            Err(why) => (
                0,
                0,
                Some(VdisplError::BadResolution {
                    node: resolution_node,
                    value,
                    why,
                }),
            ),
        };
        connectors.push(ConnectorConfig {
            index,
            width,
            height,
            unique_id,
            refused,
        });
    }
    if connectors.is_empty() {
        return Err(VdisplError::NoConnectors(path));
    }
    // Not one to drive: the device is not driven, named by its first.
    if let Some(refused) = connectors
        .iter()
        .map(|connector| connector.refused.clone())
        .collect::<Option<Vec<_>>>()
    {
        return Err(refused
            .into_iter()
            .next()
            .unwrap_or(VdisplError::NoConnectors(path)));
    }
    Ok(DeviceConfig {
        path,
        backend,
        backend_id,
        be_alloc,
        connectors,
    })
}

/// The protocol version to use with this backend (from its `versions`; a
/// missing node means 1).
pub fn negotiate<T: Stream>(
    client: &mut Client<T>,
    device: &DeviceConfig,
) -> Result<u32, VdisplError> {
    let versions = read_optional(
        client,
        &format!("{}/{}", device.backend, field::BE_VERSIONS),
    )?;
    negotiate_version(versions.as_deref())
        .ok_or_else(|| VdisplError::NoCommonVersion(versions.unwrap_or_default()))
}

/// The backend's state and `versions` read together (one round trip): the
/// version to use if the backend is at InitWait already (it publishes
/// `versions` before it gets there), `None` if it is not.
pub fn ready_version<T: Stream>(
    client: &mut Client<T>,
    device: &DeviceConfig,
) -> Result<Option<u32>, VdisplError> {
    let state_node = format!("{}/state", device.backend);
    let versions_node = format!("{}/{}", device.backend, field::BE_VERSIONS);
    let mut replies = client
        .batch(&[BatchOp::Read(&state_node), BatchOp::Read(&versions_node)])
        .into_iter();
    let mut next = || replies.next().unwrap_or(Err(NO_REPLY));
    let state = batch_optional(&state_node, next())?;
    let versions = batch_optional(&versions_node, next())?;
    if state
        .as_deref()
        .map(|value| XenbusState::parse(value.as_bytes()))
        != Some(Some(XenbusState::InitWait))
    {
        return Ok(None);
    }
    negotiate_version(versions.as_deref())
        .map(Some)
        .ok_or_else(|| VdisplError::NoCommonVersion(versions.unwrap_or_default()))
}

/// Publishes `version` and every connector's ring references and event
/// channels in one transaction (retried on EAGAIN), the writes in one batch.
pub fn publish<T: Stream>(
    client: &mut Client<T>,
    device: &DeviceConfig,
    version: u32,
    transports: &[ConnectorTransport],
) -> Result<(), VdisplError> {
    let nodes = transport_nodes(device, version, transports);
    let ops: Vec<BatchOp<'_>> = nodes
        .iter()
        .map(|(node, value)| BatchOp::Write(node, value.as_bytes()))
        .collect();
    client
        .transaction(|transaction| {
            transaction
                .batch(&ops)
                .into_iter()
                .try_for_each(|written| written.map(drop))
        })
        .map_err(store_error(&device.path))
}

/// [`publish`], then the frontend's state set to `state`, in two round
/// trips: every node in one batch, then the state once they are all written.
/// No transaction is needed: the backend reads the nodes only once it sees
/// the state, and xenstored applies one connection's requests in order.
pub fn publish_with_state<T: Stream>(
    client: &mut Client<T>,
    device: &DeviceConfig,
    version: u32,
    transports: &[ConnectorTransport],
    state: XenbusState,
) -> Result<(), VdisplError> {
    let nodes = transport_nodes(device, version, transports);
    let ops: Vec<BatchOp<'_>> = nodes
        .iter()
        .map(|(node, value)| BatchOp::Write(node, value.as_bytes()))
        .collect();
    for (written, (node, _)) in client.batch(&ops).into_iter().zip(&nodes) {
        written.map_err(store_error(node))?;
    }
    set_state(client, device, state)
}

/// The nodes [`publish`] writes and their values.
fn transport_nodes(
    device: &DeviceConfig,
    version: u32,
    transports: &[ConnectorTransport],
) -> Vec<(String, String)> {
    let path = &device.path;
    let mut nodes = vec![(format!("{path}/{}", field::FE_VERSION), version.to_string())];
    for (connector, transport) in device.connectors.iter().zip(transports) {
        let base = format!("{path}/{}", connector.index);
        for (name, value) in [
            (field::REQ_RING_REF, transport.req_ring_ref),
            (field::REQ_CHANNEL, transport.req_port),
            (field::EVT_RING_REF, transport.evt_ring_ref),
            (field::EVT_CHANNEL, transport.evt_port),
        ] {
            nodes.push((format!("{base}/{name}"), value.to_string()));
        }
    }
    nodes
}

/// Waits until the backend reaches InitWait. A backend already Connected to
/// a frontend that is (back at) Initialising is left over from an earlier
/// connection, or from a backend that died without closing: its rings are
/// not this frontend's, so the wait goes on until the backend (restarted,
/// or having closed the old connection) offers InitWait again.
pub fn wait_for_backend_ready<T: Stream>(
    client: &mut Client<T>,
    device: &DeviceConfig,
    timeout_ns: u64,
) -> Result<XenbusState, VdisplError> {
    let node = format!("{}/state", device.backend);
    Ok(xenbus::wait_for_state(
        client,
        &node,
        |state| state == XenbusState::InitWait,
        timeout_ns,
    )?)
}

/// Moves the frontend to `state`.
pub fn set_state<T: Stream>(
    client: &mut Client<T>,
    device: &DeviceConfig,
    state: XenbusState,
) -> Result<(), VdisplError> {
    Ok(xenbus::write_state(
        client,
        &format!("{}/state", device.path),
        state,
    )?)
}

/// Whether the backend left a connection (its state is no longer
/// Connected), and how, in words.
pub fn backend_gone<T: Stream>(client: &mut Client<T>, device: &DeviceConfig) -> Option<Gone> {
    let node = format!("{}/state", device.backend);
    match xenbus::read_state(client, &node) {
        Ok(XenbusState::Connected) => None,
        Ok(state) => Some(Gone::State(state)),
        Err(error) => Some(Gone::Unreadable(error)),
    }
}

/// After publishing: Initialised, wait for the backend's Connected, then
/// Connected.
pub fn complete_handshake<T: Stream>(
    client: &mut Client<T>,
    device: &DeviceConfig,
    timeout_ns: u64,
) -> Result<(), VdisplError> {
    set_state(client, device, XenbusState::Initialised)?;
    let node = format!("{}/state", device.backend);
    xenbus::wait_for_state(
        client,
        &node,
        |state| state == XenbusState::Connected,
        timeout_ns,
    )?;
    set_state(client, device, XenbusState::Connected)
}

#[cfg(test)]
mod tests {
    use super::super::tests::store_with_device;
    use super::*;
    use crate::xen::xenstore::wire::MessageType;

    const ROUND_TRIP_NS: u64 = 1_000_000;

    #[test]
    fn a_device_is_read_in_one_round_trip() {
        let mut client = store_with_device(Some("1,2"));
        client.transport_mut().faults.reply_delay_ns = ROUND_TRIP_NS;
        let start = client.now_ns();
        let device = read_device(&mut client, "0").unwrap();
        let took = client.now_ns() - start;
        assert!(
            (ROUND_TRIP_NS..2 * ROUND_TRIP_NS).contains(&took),
            "{took} ns"
        );
        assert_eq!(device.connectors.len(), 2);
        assert_eq!(device.connectors[0].unique_id, "DP-1");
        assert_eq!(
            (device.connectors[1].width, device.connectors[1].height),
            (800, 600)
        );
        // A connector without a unique-id reads as an empty one; a missing
        // backend node or resolution is named.
        client.transport_mut().remove("device/vdispl/0/1/unique-id");
        let device = read_device(&mut client, "0").unwrap();
        assert_eq!(device.connectors[1].unique_id, "");
        client
            .transport_mut()
            .remove("device/vdispl/0/1/resolution");
        client.transport_mut().set("device/vdispl/0/1/other", b"x");
        assert_eq!(
            read_device(&mut client, "0"),
            Err(VdisplError::Store {
                node: "device/vdispl/0/1/resolution".into(),
                error: StoreError::Xenstore(XsdError::NoEntry),
            })
        );
        client.transport_mut().remove("device/vdispl/0/backend");
        assert_eq!(
            read_device(&mut client, "0"),
            Err(VdisplError::Store {
                node: "device/vdispl/0/backend".into(),
                error: StoreError::Xenstore(XsdError::NoEntry),
            })
        );
    }

    #[test]
    fn connectors_are_numbered_from_0_without_gaps_up_to_the_limit() {
        let mut client = store_with_device(Some("1,2"));
        // A gap: connector 2 listed, 1 missing.
        client.transport_mut().remove("device/vdispl/0/1");
        client
            .transport_mut()
            .set("device/vdispl/0/2/resolution", b"320x200");
        let error = read_device(&mut client, "0").unwrap_err();
        assert_eq!(
            error,
            VdisplError::ConnectorGap {
                device: "device/vdispl/0".into(),
                missing: 1,
                listed: 2,
            }
        );
        assert_eq!(
            error.to_string(),
            "device/vdispl/0/1 is missing but device/vdispl/0/2 is listed: displif.h numbers \
             connectors from 0 without gaps"
        );
        // Filled: 0, 1, 2 are taken.
        client
            .transport_mut()
            .set("device/vdispl/0/1/resolution", b"640x480");
        let device = read_device(&mut client, "0").unwrap();
        let found: Vec<_> = device
            .connectors
            .iter()
            .map(|c| (c.index, c.width, c.unique_id.as_str()))
            .collect();
        assert_eq!(found, vec![(0, 1280, "DP-1"), (1, 640, ""), (2, 320, "")]);
        // Four is the limit; a fifth is named.
        client
            .transport_mut()
            .set("device/vdispl/0/3/resolution", b"320x200");
        assert_eq!(read_device(&mut client, "0").unwrap().connectors.len(), 4);
        client
            .transport_mut()
            .set("device/vdispl/0/4/resolution", b"320x200");
        let error = read_device(&mut client, "0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "device/vdispl/0/4: this frontend drives at most 4 connectors per device"
        );
    }

    #[test]
    fn a_backend_at_init_wait_gives_its_version_in_one_round_trip() {
        let mut client = store_with_device(Some("1,2"));
        let device = read_device(&mut client, "0").unwrap();
        client.transport_mut().faults.reply_delay_ns = ROUND_TRIP_NS;
        let start = client.now_ns();
        assert_eq!(ready_version(&mut client, &device), Ok(Some(2)));
        assert!(client.now_ns() - start < 2 * ROUND_TRIP_NS);
        let state = format!("{}/state", device.backend);
        let versions = format!("{}/versions", device.backend);
        client.transport_mut().set(&versions, b"3");
        assert_eq!(
            ready_version(&mut client, &device),
            Err(VdisplError::NoCommonVersion("3".into()))
        );
        client.transport_mut().remove(&versions);
        assert_eq!(ready_version(&mut client, &device), Ok(Some(1)));
        for not_ready in [&b"1"[..], b"4", b"6"] {
            client.transport_mut().set(&state, not_ready);
            assert_eq!(ready_version(&mut client, &device), Ok(None));
        }
        client.transport_mut().remove(&state);
        assert_eq!(ready_version(&mut client, &device), Ok(None));
    }

    #[test]
    fn publishing_with_the_state_takes_two_round_trips_the_state_last() {
        let mut client = store_with_device(Some("1,2"));
        let device = read_device(&mut client, "0").unwrap();
        let transports = [
            ConnectorTransport {
                req_ring_ref: 10,
                req_port: 5,
                evt_ring_ref: 11,
                evt_port: 6,
            },
            ConnectorTransport {
                req_ring_ref: 12,
                req_port: 7,
                evt_ring_ref: 13,
                evt_port: 8,
            },
        ];
        client.transport_mut().faults.reply_delay_ns = ROUND_TRIP_NS;
        let before = client.transport().requests().len();
        let start = client.now_ns();
        publish_with_state(
            &mut client,
            &device,
            2,
            &transports,
            XenbusState::Initialised,
        )
        .unwrap();
        let took = client.now_ns() - start;
        assert!(
            (2 * ROUND_TRIP_NS..3 * ROUND_TRIP_NS).contains(&took),
            "{took} ns"
        );
        let store = client.transport();
        let writes: Vec<String> = store.requests()[before..]
            .iter()
            .filter(|(header, _)| header.msg_type == MessageType::Write as u32)
            .map(|(_, payload)| {
                let end = payload
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(payload.len());
                String::from_utf8(payload[..end].to_vec()).unwrap()
            })
            .collect();
        // version, 4 nodes per connector, then the state.
        assert_eq!(writes.len(), 10);
        assert!(writes[9].ends_with("device/vdispl/0/state"), "{writes:?}");
        let get = |node: &str| String::from_utf8(store.get(node).unwrap().to_vec()).unwrap();
        assert_eq!(get("device/vdispl/0/version"), "2");
        assert_eq!(get("device/vdispl/0/1/evt-event-channel"), "8");
        assert_eq!(get("device/vdispl/0/state"), "3");
        assert_eq!(store.open_transactions(), 0);
        // A node that cannot be written is named, and the state stays.
        client.transport_mut().set("device/vdispl/0/state", b"1");
        client
            .transport_mut()
            .fail_next(MessageType::Write, "EACCES");
        let error = publish_with_state(
            &mut client,
            &device,
            2,
            &transports,
            XenbusState::Initialised,
        )
        .unwrap_err();
        assert!(
            matches!(&error, VdisplError::Store { node, .. } if node == "device/vdispl/0/version"),
            "{error:?}"
        );
        assert_eq!(
            client.transport().get("device/vdispl/0/state"),
            Some(&b"1"[..])
        );
    }
}
