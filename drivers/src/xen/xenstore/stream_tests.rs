//! The client over a byte stream (Dom0's `/dev/xen/xenbus`), against the fake
//! xenbus device: pieces of messages each way, watch events between replies,
//! error replies, a stream that ends or fails, and one message per write.

use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use super::client::{BatchOp, BatchReply, Client, Error};
use super::fake::{Corruption, FakeXenstored};
use super::fake_stream::FakeXenbusDevice;
use super::wire::{Fault, MessageType, Permission, WatchEvent, XsdError};

fn device() -> Client<FakeXenbusDevice> {
    Client::new(FakeXenbusDevice::new(FakeXenstored::with_domid(0)))
}

fn events(client: &mut Client<FakeXenbusDevice>) -> Vec<String> {
    core::iter::from_fn(|| client.take_event())
        .map(|WatchEvent { path, token }| format!("{path} {token}"))
        .collect()
}

#[test]
fn operations_work_in_pieces_of_any_size() {
    for (write_chunk, read_chunk) in [(None, None), (Some(5), Some(3)), (Some(1), Some(1))] {
        let mut client = device();
        client.transport_mut().write_chunk = write_chunk;
        client.transport_mut().read_chunk = read_chunk;
        client.write("/be/1/0/state", b"2").unwrap();
        client.write("/be/1/0/mode", b"1280x720").unwrap();
        assert_eq!(client.read("/be/1/0/mode").unwrap(), b"1280x720");
        assert_eq!(
            client.directory("/be/1/0").unwrap(),
            ["mode".to_string(), "state".to_string()]
        );
        client.rm("/be/1").unwrap();
        assert_eq!(
            client.read("/be/1/0/state"),
            Err(Error::Xenstore(XsdError::NoEntry))
        );
        assert_eq!(client.transport().dropped_bytes(), 0);
        // A payload longer than a read chunk and than the ring.
        let long = vec![b'x'; 3000];
        client.write("/long", &long).unwrap();
        assert_eq!(client.read("/long").unwrap(), long);
    }
}

#[test]
fn a_batch_writes_each_message_on_its_own() {
    let mut client = device();
    client.transport_mut().write_chunk = Some(7);
    let replies = client.batch(&[
        BatchOp::Write("/a", b"1"),
        BatchOp::Write("/b", b"2"),
        BatchOp::Read("/a"),
        BatchOp::Read("/missing"),
        BatchOp::Directory("/"),
    ]);
    assert_eq!(replies[0], Ok(BatchReply::Written));
    assert_eq!(replies[1], Ok(BatchReply::Written));
    assert_eq!(replies[2], Ok(BatchReply::Value(b"1".to_vec())));
    assert_eq!(replies[3], Err(Error::Xenstore(XsdError::NoEntry)));
    assert!(replies[4]
        .clone()
        .unwrap()
        .into_names()
        .unwrap()
        .contains(&"b".to_string()));
    // The device drops what a write carries past its message: nothing was.
    assert_eq!(client.transport().dropped_bytes(), 0);
    assert_eq!(client.transport_mut().daemon().requests().len(), 5);
}

#[test]
fn watch_events_between_replies_are_queued_in_order() {
    let mut client = device();
    client.transport_mut().read_chunk = Some(7);
    client.transport_mut().daemon().faults.events_before_reply = true;
    client.watch_token("/be", "be").unwrap();
    client.write("/be/1/state", b"2").unwrap();
    // An event xenstored sends on its own, between two requests.
    client.transport_mut().daemon().send_event("/be/x", "other");
    assert_eq!(client.read("/be/1/state").unwrap(), b"2");
    assert_eq!(
        events(&mut client),
        ["/be be", "/be/1/state be", "/be/x other",]
    );
    client.unwatch_token("/be", "be").unwrap();
    client.write("/be/2", b"").unwrap();
    assert_eq!(client.wait_for_events(client.now_ns() + 1_000_000), Ok(0));
    assert!(client.take_event().is_none());
}

#[test]
fn error_replies_fail_one_request_and_the_next_one_works() {
    let mut client = device();
    client.transport_mut().read_chunk = Some(2);
    client
        .transport_mut()
        .daemon()
        .fail_next(MessageType::Write, "EACCES");
    assert_eq!(
        client.write("/local/domain/3/x", b"1"),
        Err(Error::Xenstore(XsdError::AccessDenied))
    );
    client.write("/ok", b"1").unwrap();
    assert_eq!(client.read("/ok").unwrap(), b"1");
    assert_eq!(client.broken(), None);
}

#[test]
fn set_perms_goes_inside_a_transaction() {
    let mut client = device();
    let read3 = Permission::readable_by(3);
    client
        .transaction(|tx| {
            tx.write("/err/error", b"why")?;
            tx.set_perms("/err/error", &read3)
        })
        .unwrap();
    let daemon = client.transport_mut().daemon();
    let (header, payload) = daemon.requests()[2].clone();
    assert_eq!(header.msg_type, MessageType::SetPerms as u32);
    assert_ne!(header.tx_id, 0);
    assert_eq!(payload, b"/err/error\0n0\0r3\0");
    assert_eq!(daemon.get("/err/error"), Some(&b"why"[..]));
    assert_eq!(
        client.set_perms("/nowhere", &read3),
        Err(Error::Xenstore(XsdError::NoEntry))
    );
}

#[test]
fn a_closed_stream_gives_the_connection_up() {
    let mut client = device();
    client.set_request_timeout_ns(1_000_000);
    client.write("/a", b"1").unwrap();
    client.transport_mut().daemon().faults.silent = true;
    client.transport_mut().close();
    assert_eq!(
        client.read("/a"),
        Err(Error::Malformed {
            reason: Fault::StreamClosed
        })
    );
    assert_eq!(
        client.read("/a"),
        Err(Error::Broken {
            reason: Fault::StreamClosed
        })
    );
    assert_eq!(
        client.poll(),
        Err(Error::Broken {
            reason: Fault::StreamClosed
        })
    );
}

#[test]
fn an_os_error_names_its_errno() {
    let mut client = device();
    client.transport_mut().fail(5);
    let error = client.write("/a", b"1").unwrap_err();
    assert_eq!(
        error,
        Error::Malformed {
            reason: Fault::StreamFailed { errno: 5 }
        }
    );
    assert_eq!(
        error.to_string(),
        "malformed message from xenstored: the connection to xenstored failed (errno 5)"
    );
}

#[test]
fn a_reply_announcing_too_much_breaks_the_stream() {
    let mut client = device();
    client.transport_mut().read_chunk = Some(4);
    client
        .transport_mut()
        .daemon()
        .corrupt_next_reply(Corruption::Length(5000));
    assert_eq!(
        client.read("/"),
        Err(Error::Malformed {
            reason: Fault::PayloadTooLong { len: 5000 }
        })
    );
    assert!(matches!(
        client.write("/a", b"1"),
        Err(Error::Broken { .. })
    ));
}

#[test]
fn a_late_reply_after_a_timeout_is_dropped() {
    let mut client = device();
    client.set_request_timeout_ns(1_000_000);
    client.transport_mut().daemon().faults.reply_delay_ns = 5_000_000;
    assert!(matches!(client.read("/"), Err(Error::Timeout { .. })));
    client.transport_mut().daemon().faults.reply_delay_ns = 0;
    client.set_request_timeout_ns(50_000_000);
    client.write("/a", b"1").unwrap();
    assert_eq!(client.read("/a").unwrap(), b"1");
}
