//! The input frontend (io/kbdif.h): each `device/vkbd/<id>` of this domain
//! connected with the xenbus handshake, its events taken from the shared
//! page, checked against what the backend advertised, and handed on with
//! the display connector they belong to (`unique-id`, as xl.cfg's `vkb=`
//! writes it). Generic over the same [`Env`] as the display frontend, so
//! host tests drive it against a fake backend.
//!
//! The handshake, as Linux's xen-kbdfront does it: wait for the backend's
//! InitWait; read its features and limits; grant the page, open the event
//! channel, write `page-gref`, `page-ref`, `event-channel` and the requests
//! for absolute pointer and multi-touch events the backend offers; go
//! Initialised; wait for the backend's Connected; go Connected. Bad input
//! (an overrun ring, a garbled or out-of-range event) is named, at most
//! [`REPORTED_ERRORS`] times per device, and dropped: the device carries on.

use super::error::XenError;
use super::gnttab::{GrantError, GrantRef};
use super::kbdif::{self, field, DecodeError, EventError, InputEvent, Limits};
use super::ring::RingError;
use super::vdispl::env::Env;
use super::xenbus::{self, XenbusError, XenbusState};
use super::xenstore::client::Error as StoreError;
use super::xenstore::wire::XsdError;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use log::Level;

/// Where this domain's input devices are listed.
pub const DEVICES: &str = "device/vkbd";
/// How long each handshake step may wait for the backend.
pub const HANDSHAKE_TIMEOUT_NS: u64 = 10_000_000_000;
/// Errors named per device; later ones are only counted.
pub const REPORTED_ERRORS: u32 = 8;

/// What an input device's backend offers and where it belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputConfig {
    /// `device/vkbd/<id>`.
    pub path: String,
    /// The backend's directory.
    pub backend: String,
    /// The backend's domain.
    pub backend_id: u16,
    /// The display connector it belongs to (`unique-id`), if named.
    pub unique_id: Option<String>,
    /// `feature-abs-pointer`.
    pub abs_pointer: bool,
    /// `feature-multi-touch`.
    pub multi_touch: bool,
    /// The limits its events keep to.
    pub limits: Limits,
}

/// Why an input device could not be connected, or a piece of input was
/// dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputError {
    /// A xenstore operation failed.
    Store {
        /// The node.
        node: String,
        /// The error.
        error: StoreError,
    },
    /// A node holds something that cannot be right.
    BadNode {
        /// The node.
        node: String,
        /// Its value.
        value: String,
    },
    /// The backend's state wait failed (timeout, garbage, gone).
    Xenbus(XenbusError),
    /// The backend went Closing or Closed instead of connecting.
    Refused(XenbusState),
    /// No memory for the page.
    NoMemory,
    /// The page could not be granted.
    Grant(GrantError),
    /// No event channel to the backend.
    Channel(XenError),
    /// The ring's indexes cannot be right; the events in it were dropped.
    Ring {
        /// What is wrong.
        error: RingError,
        /// Events dropped.
        dropped: u32,
    },
    /// An event that cannot be decoded.
    Decode(DecodeError),
    /// An event outside what the backend advertised.
    Event(EventError),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Store { node, error } => write!(f, "xenstore {node}: {error}"),
            InputError::BadNode { node, value } => write!(f, "{node} holds {value:?}"),
            InputError::Xenbus(error) => write!(f, "{error}"),
            InputError::Refused(state) => {
                write!(f, "the backend went to {state} instead of connecting")
            }
            InputError::NoMemory => f.write_str("no memory for the input page"),
            InputError::Grant(error) => write!(f, "granting the input page: {error}"),
            InputError::Channel(error) => write!(f, "EVTCHNOP_alloc_unbound: {error}"),
            InputError::Ring { error, dropped } => {
                write!(f, "{error}; {dropped} events dropped")
            }
            InputError::Decode(error) => write!(f, "{error}; dropped"),
            InputError::Event(error) => write!(f, "{error}; dropped"),
        }
    }
}

fn store_error(node: &str) -> impl FnOnce(StoreError) -> InputError + '_ {
    move |error| InputError::Store {
        node: node.to_string(),
        error,
    }
}

/// The ids of this domain's input devices, in numeric order.
pub fn enumerate<E: Env>(env: &mut E) -> Result<Vec<String>, InputError> {
    let listed = env
        .with_store(|client| client.directory(DEVICES))
        .unwrap_or(Ok(Vec::new()));
    let mut ids = match listed {
        Ok(ids) => ids,
        Err(StoreError::Xenstore(XsdError::NoEntry)) => Vec::new(),
        Err(error) => return Err(store_error(DEVICES)(error)),
    };
    ids.retain(|id| id.parse::<u32>().is_ok());
    ids.sort_by_key(|id| id.parse::<u32>().unwrap_or(u32::MAX));
    Ok(ids)
}

fn read<E: Env>(env: &mut E, node: &str) -> Result<Option<String>, InputError> {
    match env.with_store(|client| client.read_string(node)) {
        None => Err(InputError::Store {
            node: node.to_string(),
            error: StoreError::Xenstore(XsdError::NoEntry),
        }),
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(StoreError::Xenstore(XsdError::NoEntry))) => Ok(None),
        Some(Err(error)) => Err(store_error(node)(error)),
    }
}

fn number<E: Env>(env: &mut E, node: &str) -> Result<u32, InputError> {
    match read(env, node)? {
        None => Ok(0),
        Some(value) => value.trim().parse().map_err(|_| InputError::BadNode {
            node: node.to_string(),
            value,
        }),
    }
}

fn write<E: Env>(env: &mut E, node: &str, value: &str) -> Result<(), InputError> {
    env.with_store(|client| client.write(node, value.as_bytes()))
        .unwrap_or(Err(StoreError::Xenstore(XsdError::NoEntry)))
        .map_err(store_error(node))
}

/// Reads device `id`'s backend and what the backend offers.
pub fn read_config<E: Env>(env: &mut E, id: &str) -> Result<InputConfig, InputError> {
    let path = format!("{DEVICES}/{id}");
    let backend_node = format!("{path}/backend");
    let backend = read(env, &backend_node)?.ok_or(InputError::BadNode {
        node: backend_node,
        value: String::new(),
    })?;
    let backend_id_node = format!("{path}/backend-id");
    let backend_id = match read(env, &backend_id_node)? {
        Some(value) => value.trim().parse().map_err(|_| InputError::BadNode {
            node: backend_id_node,
            value,
        })?,
        None => 0,
    };
    let flag = |env: &mut E, name: &str| number(env, &format!("{backend}/{name}")).map(|v| v == 1);
    let abs_pointer = flag(env, field::FEAT_ABS_POINTER)?;
    let multi_touch = flag(env, field::FEAT_MTOUCH)?;
    let value = |env: &mut E, name: &str| number(env, &format!("{backend}/{name}"));
    let limits = Limits {
        width: value(env, field::WIDTH)?,
        height: value(env, field::HEIGHT)?,
        mt_width: value(env, field::MT_WIDTH)?,
        mt_height: value(env, field::MT_HEIGHT)?,
        contacts: if multi_touch {
            value(env, field::MT_NUM_CONTACTS)?
        } else {
            0
        },
    };
    // libxl writes `unique-id` into the backend's directory; a frontend
    // node, if any, names it too.
    let unique_id = match read(env, &format!("{backend}/{}", field::UNIQUE_ID))? {
        Some(id) => Some(id),
        None => read(env, &format!("{path}/{}", field::UNIQUE_ID))?,
    }
    .map(|id| String::from(id.trim()))
    .filter(|id| !id.is_empty());
    Ok(InputConfig {
        path,
        backend,
        backend_id,
        unique_id,
        abs_pointer,
        multi_touch,
        limits,
    })
}

/// Waits until the backend's state satisfies `wanted`; Closing or Closed
/// end the wait at once.
fn await_backend<E: Env>(
    env: &mut E,
    config: &InputConfig,
    wanted: XenbusState,
) -> Result<(), InputError> {
    let node = format!("{}/state", config.backend);
    let mut refused = None;
    let waited = env
        .with_store(|client| {
            xenbus::wait_for_state(
                client,
                &node,
                |state| {
                    if matches!(state, XenbusState::Closing | XenbusState::Closed) {
                        refused = Some(state);
                    }
                    refused.is_some() || state == wanted
                },
                HANDSHAKE_TIMEOUT_NS,
            )
        })
        .unwrap_or(Err(XenbusError::Missing { node: node.clone() }));
    if let Some(state) = refused {
        return Err(InputError::Refused(state));
    }
    waited.map(drop).map_err(InputError::Xenbus)
}

/// A connected input device.
pub struct InputDevice<E: Env> {
    config: InputConfig,
    page: E::Input,
    gref: GrantRef,
    port: u32,
    /// Events handed on.
    pub events: u64,
    /// Bad input dropped.
    pub errors: u32,
}

impl<E: Env> InputDevice<E> {
    /// Connects device `id` (see the module documentation).
    pub fn connect(env: &mut E, id: &str) -> Result<Self, InputError> {
        let config = read_config(env, id)?;
        let state_node = format!("{}/state", config.path);
        write(
            env,
            &state_node,
            &(XenbusState::Initialising as u32).to_string(),
        )?;
        await_backend(env, &config, XenbusState::InitWait)?;
        // The features, read again now that the backend is ready.
        let config = read_config(env, id)?;
        let (page, frame) = env.input_page().ok_or(InputError::NoMemory)?;
        page.init();
        let gref = env
            .grant(config.backend_id, frame)
            .map_err(InputError::Grant)?;
        let port = match env.open_channel(config.backend_id) {
            Ok(port) => port,
            Err(error) => {
                let _ = env.end_grant(gref);
                return Err(InputError::Channel(error));
            }
        };
        let device = InputDevice {
            config,
            page,
            gref,
            port,
            events: 0,
            errors: 0,
        };
        match device.publish(env, frame) {
            Ok(()) => Ok(device),
            Err(error) => {
                device.release(env);
                Err(error)
            }
        }
    }

    fn publish(&self, env: &mut E, frame: u64) -> Result<(), InputError> {
        let path = &self.config.path;
        let requests = [
            (field::RING_GREF, self.gref.to_string()),
            // Older backends map the page by frame number.
            ("page-ref", frame.to_string()),
            (field::EVT_CHANNEL, self.port.to_string()),
            (
                field::REQ_ABS_POINTER,
                u8::from(self.config.abs_pointer).to_string(),
            ),
            (
                field::REQ_MTOUCH,
                u8::from(self.config.multi_touch).to_string(),
            ),
        ];
        for (name, value) in requests {
            write(env, &format!("{path}/{name}"), &value)?;
        }
        let state_node = format!("{path}/state");
        write(
            env,
            &state_node,
            &(XenbusState::Initialised as u32).to_string(),
        )?;
        await_backend(env, &self.config, XenbusState::Connected)?;
        write(
            env,
            &state_node,
            &(XenbusState::Connected as u32).to_string(),
        )
    }

    /// What the backend offered.
    pub fn config(&self) -> &InputConfig {
        &self.config
    }

    /// The event channel the backend signals.
    pub fn port(&self) -> u32 {
        self.port
    }

    fn report(&mut self, env: &mut E, error: InputError) {
        self.errors = self.errors.saturating_add(1);
        if self.errors <= REPORTED_ERRORS {
            let more = if self.errors == REPORTED_ERRORS {
                "; later input errors of this device are only counted"
            } else {
                ""
            };
            env.log(
                Level::Error,
                format_args!("input {}: {error}{more}", self.config.path),
            );
        }
    }

    /// Takes every event on the page: each good one goes to `take`, each
    /// bad one is named (up to [`REPORTED_ERRORS`]) and dropped.
    pub fn poll(&mut self, env: &mut E, mut take: impl FnMut(InputEvent)) {
        // At most a ring's worth per call; what the backend adds meanwhile
        // waits for the next.
        for _ in 0..kbdif::IN_RING_LEN {
            let raw = match self.page.take_event() {
                Ok(Some(raw)) => raw,
                Ok(None) => return,
                Err(error) => {
                    let dropped = self.page.skip_to_producer();
                    self.report(env, InputError::Ring { error, dropped });
                    return;
                }
            };
            match kbdif::decode(&raw) {
                Ok(Some(event)) => match self.config.limits.check(&event) {
                    Ok(()) => {
                        self.events += 1;
                        take(event);
                    }
                    Err(error) => self.report(env, InputError::Event(error)),
                },
                // kbdif.h: frontends ignore unknown events.
                Ok(None) => {}
                Err(error) => self.report(env, InputError::Decode(error)),
            }
        }
    }

    /// Closes the device: Closing, the backend's Closed (bounded), then the
    /// grant ended and the channel closed.
    pub fn disconnect(self, env: &mut E) {
        let state_node = format!("{}/state", self.config.path);
        let closing = (XenbusState::Closing as u32).to_string();
        if write(env, &state_node, &closing).is_ok() {
            let node = format!("{}/state", self.config.backend);
            let _ = env.with_store(|client| {
                xenbus::wait_for_state(
                    client,
                    &node,
                    |state| matches!(state, XenbusState::Closed | XenbusState::InitWait),
                    HANDSHAKE_TIMEOUT_NS,
                )
            });
        }
        let _ = write(env, &state_node, &(XenbusState::Closed as u32).to_string());
        self.release(env);
    }

    fn release(self, env: &mut E) {
        env.close_channel(self.port);
        if env.end_grant(self.gref).is_err() {
            env.log(
                Level::Warn,
                format_args!(
                    "input {}: the backend still maps the input page; it stays allocated",
                    self.config.path
                ),
            );
            env.leak_input(self.page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::kbdif::{encode, Touch};
    use crate::xen::vdispl::fake_env::{FakeEnv, INPUT_BACKEND, INPUT_DEVICE};
    use std::vec;

    const MS: u64 = 1_000_000;

    fn env_with(nodes: &[(&str, &str)]) -> FakeEnv {
        let mut env = FakeEnv::new(&[("320x200", "DP-1")]);
        env.add_input(nodes);
        env
    }

    const TOUCHSCREEN: &[(&str, &str)] = &[
        ("feature-abs-pointer", "1"),
        ("feature-multi-touch", "1"),
        ("width", "1279"),
        ("height", "719"),
        ("multi-touch-width", "1279"),
        ("multi-touch-height", "719"),
        ("multi-touch-num-contacts", "2"),
        ("unique-id", "DP-1"),
    ];

    fn node(env: &mut FakeEnv, name: &str) -> Option<String> {
        env.world()
            .xenstored
            .get(&format!("{INPUT_DEVICE}/{name}"))
            .map(|value| String::from_utf8_lossy(value).into_owned())
    }

    /// Polls `device` while the fake world runs for `ms`.
    fn pump(env: &mut FakeEnv, device: &mut InputDevice<FakeEnv>, ms: u64) -> Vec<InputEvent> {
        let mut taken = Vec::new();
        let end = env.now_ns() + ms * MS;
        while env.now_ns() < end {
            let deadline = (env.now_ns() + MS).min(end);
            env.wait(&[device.port()], deadline);
            device.poll(env, |event| taken.push(event));
        }
        taken
    }

    fn script(env: &mut FakeEnv, events: &[InputEvent]) {
        let now = env.now_ns();
        for (index, event) in events.iter().enumerate() {
            let at = now + index as u64 * MS;
            env.world().input.script.push_back((at, encode(event)));
        }
    }

    #[test]
    fn the_handshake_requests_what_the_backend_offers_and_names_the_connector() {
        let mut env = env_with(TOUCHSCREEN);
        assert_eq!(enumerate(&mut env).unwrap(), ["0"]);
        let device = InputDevice::connect(&mut env, "0").unwrap();
        let config = device.config().clone();
        assert_eq!(config.unique_id.as_deref(), Some("DP-1"));
        assert_eq!(config.backend, INPUT_BACKEND);
        assert_eq!(
            config.limits,
            Limits {
                width: 1279,
                height: 719,
                mt_width: 1279,
                mt_height: 719,
                contacts: 2
            }
        );
        assert_eq!(node(&mut env, "request-abs-pointer").as_deref(), Some("1"));
        assert_eq!(node(&mut env, "request-multi-touch").as_deref(), Some("1"));
        assert_eq!(node(&mut env, "state").as_deref(), Some("4"));
        let port = node(&mut env, "event-channel").unwrap();
        assert_eq!(port, device.port().to_string());
        assert!(node(&mut env, "page-gref").is_some());
        assert_eq!(env.world().input.connections, 1);
        device.disconnect(&mut env);
        assert_eq!(env.grants_in_use(), 0);
        assert_eq!(env.open_channels(), 0);
        assert_eq!(node(&mut env, "state").as_deref(), Some("6"));
    }

    #[test]
    fn every_event_arrives_exactly_and_in_order() {
        let mut env = env_with(TOUCHSCREEN);
        let mut device = InputDevice::connect(&mut env, "0").unwrap();
        let mut sent = vec![
            InputEvent::Key {
                pressed: true,
                keycode: 28,
            },
            InputEvent::Key {
                pressed: false,
                keycode: 28,
            },
            InputEvent::Position {
                x: 640,
                y: 360,
                rel_z: 0,
            },
            InputEvent::Motion {
                rel_x: -3,
                rel_y: 4,
                rel_z: 1,
            },
        ];
        for contact in 0..2 {
            sent.extend([
                InputEvent::Touch {
                    contact,
                    touch: Touch::Down { x: 100, y: 200 },
                },
                InputEvent::Touch {
                    contact,
                    touch: Touch::Motion { x: 1279, y: 719 },
                },
                InputEvent::Touch {
                    contact,
                    touch: Touch::Sync,
                },
                InputEvent::Touch {
                    contact,
                    touch: Touch::Up,
                },
            ]);
        }
        // More than a ring's worth: the backend waits for room.
        for index in 0..120 {
            sent.push(InputEvent::Key {
                pressed: index % 2 == 0,
                keycode: 2 + index,
            });
        }
        script(&mut env, &sent);
        let taken = pump(&mut env, &mut device, 400);
        assert_eq!(taken, sent);
        assert_eq!(device.errors, 0);
        assert_eq!(device.events, sent.len() as u64);
        device.disconnect(&mut env);
    }

    #[test]
    fn hostile_input_is_named_dropped_and_the_device_carries_on() {
        let mut env = env_with(TOUCHSCREEN);
        let mut device = InputDevice::connect(&mut env, "0").unwrap();
        let good = InputEvent::Key {
            pressed: true,
            keycode: 30,
        };
        let mut unknown = [0u8; kbdif::EVENT_SIZE];
        unknown[0] = 0x42;
        let mut bad_pressed = encode(&good);
        bad_pressed[1] = 9;
        let raw = [
            encode(&InputEvent::Position {
                x: 1280,
                y: 0,
                rel_z: 0,
            }),
            encode(&InputEvent::Touch {
                contact: 5,
                touch: Touch::Down { x: 1, y: 1 },
            }),
            bad_pressed,
            unknown,
            encode(&good),
        ];
        let now = env.now_ns();
        for (index, event) in raw.iter().enumerate() {
            env.world()
                .input
                .script
                .push_back((now + index as u64 * MS, *event));
        }
        assert_eq!(pump(&mut env, &mut device, 50), [good]);
        let errors = env.logged(Level::Error);
        assert_eq!(
            errors,
            [
                "input device/vkbd/0: x 1280 is outside 0..=1279; dropped",
                "input device/vkbd/0: contact 5 is beyond the 2 contacts advertised; dropped",
                "input device/vkbd/0: key event with pressed = 9, neither 0 nor 1; dropped",
            ]
        );
        // An overrun: the producer index jumps a thousand past the ring.
        env.world().input.overrun_after = Some((6, 1000));
        script(&mut env, &[good, good]);
        let taken = pump(&mut env, &mut device, 50);
        assert!(taken.len() <= 1, "{taken:?}");
        assert!(env.logged(Level::Error)[3]
            .starts_with("input device/vkbd/0: in_prod 1006 is past the ring (consumer at 5)"));
        // And it goes on.
        script(&mut env, &[good]);
        assert_eq!(pump(&mut env, &mut device, 50), [good]);
        device.disconnect(&mut env);
        assert_eq!(env.grants_in_use(), 0);
    }

    #[test]
    fn a_flood_of_bad_input_is_named_eight_times_then_counted() {
        let mut env = env_with(TOUCHSCREEN);
        let mut device = InputDevice::connect(&mut env, "0").unwrap();
        let bad = InputEvent::Position {
            x: -1,
            y: 0,
            rel_z: 0,
        };
        script(&mut env, &[bad; 30]);
        assert!(pump(&mut env, &mut device, 100).is_empty());
        assert_eq!(device.errors, 30);
        let errors = env.logged(Level::Error);
        assert_eq!(errors.len(), REPORTED_ERRORS as usize);
        assert!(errors[7].ends_with("; later input errors of this device are only counted"));
        device.disconnect(&mut env);
    }

    #[test]
    fn without_features_nothing_is_requested_and_touches_are_refused() {
        let mut env = env_with(&[("unique-id", "HDMI-A-1")]);
        let mut device = InputDevice::connect(&mut env, "0").unwrap();
        assert_eq!(node(&mut env, "request-abs-pointer").as_deref(), Some("0"));
        assert_eq!(node(&mut env, "request-multi-touch").as_deref(), Some("0"));
        script(
            &mut env,
            &[InputEvent::Touch {
                contact: 0,
                touch: Touch::Sync,
            }],
        );
        assert!(pump(&mut env, &mut device, 20).is_empty());
        assert_eq!(
            env.logged(Level::Error),
            [
                "input device/vkbd/0: a multi-touch event, but multi-touch was not negotiated; \
              dropped"
            ]
        );
        device.disconnect(&mut env);
    }

    #[test]
    fn a_backend_that_closes_or_a_bad_node_is_named_and_nothing_is_kept() {
        let mut env = env_with(TOUCHSCREEN);
        env.world()
            .xenstored
            .set(&format!("{INPUT_BACKEND}/state"), b"6");
        assert_eq!(
            InputDevice::connect(&mut env, "0").err(),
            Some(InputError::Refused(XenbusState::Closed))
        );
        let mut env = env_with(&[("width", "wide")]);
        assert_eq!(
            InputDevice::connect(&mut env, "0")
                .err()
                .map(|e| e.to_string()),
            Some(format!("{INPUT_BACKEND}/width holds \"wide\""))
        );
        assert_eq!(env.grants_in_use(), 0);
        assert_eq!(env.open_channels(), 0);
    }
}
