//! The device's xenstore side: enumeration, configuration, version
//! negotiation, publishing the connectors' transport, and the state
//! handshake.

use super::{VdisplError, MAX_CONNECTORS};
use crate::xen::displif::{field, negotiate_version, parse_resolution};
use crate::xen::gnttab::GrantRef;
use crate::xen::xenbus::{self, XenbusState};
use crate::xen::xenstore::client::{Client, Error as StoreError, Transport};
use crate::xen::xenstore::wire::XsdError;
use alloc::format;
use alloc::string::{String, ToString};
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

fn read<T: Transport>(client: &mut Client<T>, node: &str) -> Result<String, VdisplError> {
    client.read_string(node).map_err(store_error(node))
}

fn read_optional<T: Transport>(
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
pub fn enumerate<T: Transport>(client: &mut Client<T>) -> Result<Vec<String>, VdisplError> {
    let mut ids = match client.directory(DEVICES) {
        Ok(ids) => ids,
        Err(StoreError::Xenstore(XsdError::NoEntry)) => Vec::new(),
        Err(error) => return Err(store_error(DEVICES)(error)),
    };
    ids.retain(|id| id.parse::<u32>().is_ok());
    ids.sort_by_key(|id| id.parse::<u32>().unwrap_or(u32::MAX));
    Ok(ids)
}

/// Reads device `id`'s configuration: backend, `be-alloc` and connectors.
pub fn read_device<T: Transport>(
    client: &mut Client<T>,
    id: &str,
) -> Result<DeviceConfig, VdisplError> {
    let path = format!("{DEVICES}/{id}");
    let backend = read(client, &format!("{path}/backend"))?;
    let backend_id_node = format!("{path}/backend-id");
    let backend_id_value = read(client, &backend_id_node)?;
    let backend_id = backend_id_value
        .trim()
        .parse()
        .map_err(|_| VdisplError::BadNode {
            node: backend_id_node,
            value: backend_id_value.clone(),
        })?;
    let be_alloc =
        read_optional(client, &format!("{path}/{}", field::BE_ALLOC))?.as_deref() == Some("1");
    let mut indexes: Vec<u32> = client
        .directory(&path)
        .map_err(store_error(&path))?
        .iter()
        .filter_map(|entry| entry.parse().ok())
        .collect();
    indexes.sort_unstable();
    if indexes.len() > MAX_CONNECTORS {
        log::warn!(
            "{path} has {} connectors; driving the first {MAX_CONNECTORS}",
            indexes.len()
        );
        indexes.truncate(MAX_CONNECTORS);
    }
    let mut connectors = Vec::new();
    for index in indexes {
        let node = format!("{path}/{index}/{}", field::RESOLUTION);
        let value = read(client, &node)?;
        let (width, height) =
            parse_resolution(&value).ok_or(VdisplError::BadNode { node, value })?;
        let unique_id = read_optional(client, &format!("{path}/{index}/{}", field::UNIQUE_ID))?
            .unwrap_or_default();
        connectors.push(ConnectorConfig {
            index,
            width,
            height,
            unique_id,
        });
    }
    if connectors.is_empty() {
        return Err(VdisplError::NoConnectors(path));
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
pub fn negotiate<T: Transport>(
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

/// Publishes `version` and every connector's ring references and event
/// channels in one transaction (retried on EAGAIN).
pub fn publish<T: Transport>(
    client: &mut Client<T>,
    device: &DeviceConfig,
    version: u32,
    transports: &[ConnectorTransport],
) -> Result<(), VdisplError> {
    let path = device.path.clone();
    client
        .transaction(|transaction| {
            transaction.write(
                &format!("{path}/{}", field::FE_VERSION),
                version.to_string().as_bytes(),
            )?;
            for (connector, transport) in device.connectors.iter().zip(transports) {
                let base = format!("{path}/{}", connector.index);
                for (name, value) in [
                    (field::REQ_RING_REF, transport.req_ring_ref),
                    (field::REQ_CHANNEL, transport.req_port),
                    (field::EVT_RING_REF, transport.evt_ring_ref),
                    (field::EVT_CHANNEL, transport.evt_port),
                ] {
                    transaction.write(&format!("{base}/{name}"), value.to_string().as_bytes())?;
                }
            }
            Ok(())
        })
        .map_err(store_error(&device.path))
}

/// Waits until the backend reaches InitWait. A backend already Connected to
/// a frontend that is (back at) Initialising is left over from an earlier
/// connection, or from a backend that died without closing: its rings are
/// not this frontend's, so the wait goes on until the backend (restarted,
/// or having closed the old connection) offers InitWait again.
pub fn wait_for_backend_ready<T: Transport>(
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
pub fn set_state<T: Transport>(
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
pub fn backend_gone<T: Transport>(client: &mut Client<T>, device: &DeviceConfig) -> Option<String> {
    let node = format!("{}/state", device.backend);
    match xenbus::read_state(client, &node) {
        Ok(XenbusState::Connected) => None,
        Ok(state) => Some(format!("the backend went to {state}")),
        Err(error) => Some(format!("the backend's state is unreadable: {error}")),
    }
}

/// After publishing: Initialised, wait for the backend's Connected, then
/// Connected.
pub fn complete_handshake<T: Transport>(
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
