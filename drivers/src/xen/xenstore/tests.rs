//! The client against the fake xenstored: operations, watches, transactions,
//! streaming, and every error path (error replies, malformed replies, broken
//! framing, timeouts).

use core::sync::atomic::Ordering;
use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex};
use std::vec;
use std::vec::Vec;

use super::client::{Client, Error, Transport, WatchCallback, MAX_QUEUED_EVENTS};
use super::fake::{Corruption, FakeXenstored};
use super::ring::{IndexError, RingName, XENSTORE_ERROR_COMM};
use super::wire::{Fault, Header, MessageType, XsdError, XENSTORE_PAYLOAD_MAX};

fn client() -> Client<FakeXenstored> {
    Client::new(FakeXenstored::new())
}

/// A callback that records the paths it is called with.
fn recorder() -> (Arc<Mutex<Vec<String>>>, WatchCallback) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let callback = Box::new(move |path: &str| sink.lock().unwrap().push(path.to_string()));
    (seen, callback)
}

fn taken(seen: &Mutex<Vec<String>>) -> Vec<String> {
    core::mem::take(&mut *seen.lock().unwrap())
}

/// Lets the fake run one step, then takes in what it sent and runs callbacks.
fn deliver(client: &mut Client<FakeXenstored>) -> usize {
    client.transport_mut().step();
    client.poll().unwrap();
    client.dispatch_watches()
}

fn request_types(client: &Client<FakeXenstored>) -> Vec<MessageType> {
    client
        .transport()
        .requests()
        .iter()
        .map(|(header, _)| MessageType::try_from(header.msg_type).unwrap())
        .collect()
}

#[test]
fn read_write_mkdir_rm_directory_round_trip() {
    let mut client = client();
    client.write("/a/b", b"hello").unwrap();
    assert_eq!(client.read("/a/b").unwrap(), b"hello");
    assert_eq!(client.read_string("/a/b").unwrap(), "hello");
    client.mkdir("/a/c/d").unwrap();
    assert_eq!(client.read("/a/c").unwrap(), b"");
    assert_eq!(client.directory("/a").unwrap(), vec!["b", "c"]);
    assert_eq!(client.directory("/a/c/d").unwrap(), Vec::<String>::new());
    client.rm("/a/c").unwrap();
    assert_eq!(client.directory("/a").unwrap(), vec!["b"]);
    assert_eq!(
        client.read("/a/c/d"),
        Err(Error::Xenstore(XsdError::NoEntry))
    );
    // Removing a missing node is fine while its parent exists.
    client.rm("/a/c").unwrap();
    assert_eq!(
        client.rm("/nowhere/x"),
        Err(Error::Xenstore(XsdError::NoEntry))
    );
    assert_eq!(client.get_domain_path(7).unwrap(), "/local/domain/7");
    assert!(client.broken().is_none());
}

#[test]
fn relative_paths_are_sent_as_they_are() {
    let mut client = client();
    client.write("data/x", b"1").unwrap();
    let (_, payload) = client.transport().requests()[0].clone();
    assert_eq!(payload, b"data/x\x001");
    assert_eq!(
        client.transport().get("/local/domain/1/data/x"),
        Some(&b"1"[..])
    );
    assert_eq!(client.read("/local/domain/1/data/x").unwrap(), b"1");
}

#[test]
fn requests_carry_fresh_nonzero_ids_and_exact_payloads() {
    let mut client = client();
    client.write("k", b"v").unwrap();
    client.read("k").unwrap();
    let requests = client.transport().requests();
    assert_eq!(
        requests[0],
        (
            Header {
                msg_type: 11,
                req_id: 1,
                tx_id: 0,
                len: 3
            },
            b"k\0v".to_vec()
        )
    );
    assert_eq!(
        requests[1].0,
        Header {
            msg_type: 2,
            req_id: 2,
            tx_id: 0,
            len: 2
        }
    );
}

#[test]
fn read_string_refuses_non_utf8() {
    let mut client = client();
    client.write("/bin", b"\xff\xfe").unwrap();
    assert_eq!(client.read("/bin").unwrap(), b"\xff\xfe");
    assert_eq!(client.read_string("/bin"), Err(Error::NotUtf8));
}

#[test]
fn error_replies_map_to_typed_errors() {
    let mut client = client();
    client.write("/k", b"v").unwrap();
    for (name, error) in [
        ("EACCES", XsdError::AccessDenied),
        ("EINVAL", XsdError::Invalid),
        ("E2BIG", XsdError::TooBig),
        ("EQUOTA", XsdError::Quota),
        ("ESOMETHING", XsdError::Other("ESOMETHING".to_string())),
    ] {
        client.transport_mut().fail_next(MessageType::Read, name);
        assert_eq!(client.read("/k"), Err(Error::Xenstore(error)));
    }
    assert_eq!(client.read("/k").unwrap(), b"v");
    assert_eq!(
        Error::Xenstore(XsdError::NoEntry).to_string(),
        "xenstored replied ENOENT"
    );
}

#[test]
fn oversized_requests_are_refused_before_sending() {
    let mut client = client();
    let value = vec![b'x'; XENSTORE_PAYLOAD_MAX];
    assert_eq!(
        client.write("/k", &value),
        Err(Error::PayloadTooLarge {
            len: XENSTORE_PAYLOAD_MAX + 3
        })
    );
    assert_eq!(client.read("/a\0b"), Err(Error::NulInArgument));
    assert!(client.transport().requests().is_empty());
    assert_eq!(client.transport().notifications(), 0);
    // Nothing was sent, so the connection is fine.
    client.write("/k", b"small").unwrap();
}

#[test]
fn the_largest_payload_streams_through_the_small_rings() {
    let mut client = client();
    // "/k\0" + value = exactly XENSTORE_PAYLOAD_MAX: four ring-fulls each way.
    let value: Vec<u8> = (0..XENSTORE_PAYLOAD_MAX - 3).map(|i| i as u8).collect();
    client.write("/k", &value).unwrap();
    assert_eq!(client.transport().get("/k"), Some(&value[..]));
    assert_eq!(client.read("/k").unwrap(), value);
    assert!(client.transport().notifications() >= 5);
}

#[test]
fn replies_split_into_many_small_writes_reassemble() {
    let mut client = client();
    let value = vec![b'v'; 2000];
    client.write("/big", &value).unwrap();
    client.transport_mut().faults.response_chunk = Some(3);
    assert_eq!(client.read("/big").unwrap(), value);
    client.write("/big/child", b"").unwrap();
    assert_eq!(client.directory("/big").unwrap(), vec!["child"]);
    client.transport_mut().faults.response_chunk = Some(1);
    assert_eq!(client.read_string("/big/child").unwrap(), "");
}

#[test]
fn indexes_wrapping_around_u32_are_handled() {
    let mut client = client();
    client.transport_mut().set_indexes(u32::MAX - 100);
    let value = vec![b'w'; 3000];
    client.write("/w", &value).unwrap();
    assert_eq!(client.read("/w").unwrap(), value);
}

#[test]
fn a_new_watch_fires_at_once_and_then_on_changes_below_it() {
    let mut client = client();
    let (seen, callback) = recorder();
    let handle = client.watch("device/vdispl/0", callback).unwrap();
    assert_eq!(handle.path(), "device/vdispl/0");
    assert_eq!(
        client.transport().watches(),
        vec![("device/vdispl/0".to_string(), handle.token().to_string())]
    );
    deliver(&mut client);
    assert_eq!(taken(&seen), vec!["device/vdispl/0"]);

    // Another domain writes below it: the event path is relative, like the watch.
    client
        .transport_mut()
        .set("/local/domain/1/device/vdispl/0/state", b"2");
    assert_eq!(deliver(&mut client), 1);
    assert_eq!(taken(&seen), vec!["device/vdispl/0/state"]);

    // The client's own write fires it too; a write elsewhere does not.
    client.write("device/vdispl/0/x", b"1").unwrap();
    client.write("device/other", b"1").unwrap();
    deliver(&mut client);
    assert_eq!(taken(&seen), vec!["device/vdispl/0/x"]);

    // Removing a parent fires with the watched path.
    client.rm("device").unwrap();
    deliver(&mut client);
    assert_eq!(taken(&seen), vec!["device/vdispl/0"]);

    client.unwatch(handle).unwrap();
    assert!(client.transport().watches().is_empty());
    client.transport_mut().set("device/vdispl/0/state", b"4");
    assert_eq!(deliver(&mut client), 0);
    assert!(taken(&seen).is_empty());
}

#[test]
fn events_arriving_before_replies_are_queued_not_lost() {
    let mut client = client();
    client.transport_mut().faults.events_before_reply = true;
    let (seen, callback) = recorder();
    // The first event comes before the WATCH reply.
    let _handle = client.watch("/w", callback).unwrap();
    // The write's event comes before its reply; a spurious event for an
    // unknown token and one for the watch come before the read's reply.
    client.write("/w/a", b"1").unwrap();
    client.transport_mut().send_event("/x", "not-ours");
    client.transport_mut().send_event("/w/b", "vdispl-os/1");
    assert_eq!(client.read("/w/a").unwrap(), b"1");
    assert!(
        taken(&seen).is_empty(),
        "callbacks run only when dispatched"
    );
    assert_eq!(client.poll().unwrap(), 4);
    assert_eq!(client.dispatch_watches(), 3);
    assert_eq!(taken(&seen), vec!["/w", "/w/a", "/w/b"]);
}

#[test]
fn identical_pending_events_coalesce_and_the_queue_is_bounded() {
    let mut client = client();
    let (seen, callback) = recorder();
    let handle = client.watch("/q", callback).unwrap();
    for _ in 0..3 {
        client.transport_mut().send_event("/q", handle.token());
    }
    deliver(&mut client);
    assert_eq!(taken(&seen), vec!["/q"]);
    for index in 0..MAX_QUEUED_EVENTS + 50 {
        client
            .transport_mut()
            .send_event(&std::format!("/q/{index}"), handle.token());
    }
    let mut queued = 0;
    for _ in 0..100 {
        client.transport_mut().step();
        queued = client.poll().unwrap();
    }
    assert_eq!(queued, MAX_QUEUED_EVENTS);
    assert_eq!(client.dispatch_watches(), MAX_QUEUED_EVENTS);
    // The oldest were dropped.
    assert_eq!(taken(&seen)[0], "/q/50");
}

#[test]
fn a_refused_watch_leaves_no_callback_behind() {
    let mut client = client();
    client
        .transport_mut()
        .fail_next(MessageType::Watch, "EACCES");
    let (seen, callback) = recorder();
    assert_eq!(
        client.watch("/secret", callback).err(),
        Some(Error::Xenstore(XsdError::AccessDenied))
    );
    client.transport_mut().send_event("/secret", "vdispl-os/1");
    assert_eq!(deliver(&mut client), 0);
    assert!(taken(&seen).is_empty());
}

#[test]
fn a_malformed_watch_event_is_dropped_and_the_stream_goes_on() {
    let mut client = client();
    let (seen, callback) = recorder();
    let _handle = client.watch("/m", callback).unwrap();
    deliver(&mut client);
    taken(&seen);
    let header = Header {
        msg_type: MessageType::WatchEvent as u32,
        req_id: 0,
        tx_id: 0,
        len: 5,
    };
    let mut raw = header.to_bytes().to_vec();
    raw.extend_from_slice(b"/m\0t1"); // token not terminated
    client.transport_mut().send_raw(&raw);
    assert_eq!(deliver(&mut client), 0);
    client.write("/m/x", b"1").unwrap();
    assert_eq!(deliver(&mut client), 1);
    assert_eq!(taken(&seen), vec!["/m/x"]);
}

#[test]
fn a_transaction_commits_its_writes() {
    let mut client = client();
    client.write("/t/old", b"1").unwrap();
    let value = client
        .transaction(|tx| {
            let old = tx.read("/t/old")?;
            tx.write("/t/new", &old)?;
            tx.mkdir("/t/dir")?;
            tx.rm("/t/old")?;
            tx.directory("/t")
        })
        .unwrap();
    assert_eq!(value, vec!["dir", "new"]);
    assert_eq!(client.transport().get("/t/new"), Some(&b"1"[..]));
    assert_eq!(client.transport().get("/t/old"), None);
    assert_eq!(client.transport().open_transactions(), 0);
    // Operations inside carry the transaction id; start and end are as
    // docs/misc/xenstore.txt describes.
    let requests = client.transport().requests();
    let start = &requests[1];
    assert_eq!((start.0.msg_type, start.0.tx_id), (6, 0));
    assert_eq!(start.1, b"\0");
    assert!(requests[2..7].iter().all(|(header, _)| header.tx_id == 1));
    let end = &requests[7];
    assert_eq!(
        (end.0.msg_type, end.0.tx_id, &end.1[..]),
        (7, 1, &b"T\0"[..])
    );
}

#[test]
fn a_transaction_is_retried_on_eagain() {
    let mut client = client();
    client.transport_mut().faults.eagain_commits = 2;
    let mut runs = 0;
    client
        .transaction(|tx| {
            runs += 1;
            tx.write("/r", std::format!("{runs}").as_bytes())
        })
        .unwrap();
    assert_eq!(runs, 3);
    assert_eq!(client.transport().get("/r"), Some(&b"3"[..]));
    let starts = request_types(&client)
        .into_iter()
        .filter(|t| *t == MessageType::TransactionStart)
        .count();
    assert_eq!(starts, 3);
}

#[test]
fn eagain_from_an_operation_inside_retries_too() {
    let mut client = client();
    client
        .transport_mut()
        .fail_next(MessageType::Write, "EAGAIN");
    let mut runs = 0;
    client
        .transaction(|tx| {
            runs += 1;
            tx.write("/r", b"x")
        })
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(client.transport().open_transactions(), 0);
}

#[test]
fn a_transaction_gives_up_after_the_configured_attempts() {
    let mut client = client();
    client.set_transaction_attempts(3);
    client.transport_mut().faults.eagain_commits = 100;
    let result = client.transaction(|tx| tx.write("/r", b"x"));
    assert_eq!(result, Err(Error::TransactionConflict { attempts: 3 }));
    assert_eq!(
        result.unwrap_err().to_string(),
        "transaction still conflicting (EAGAIN) after 3 attempts"
    );
    assert_eq!(client.transport().get("/r"), None);
    assert_eq!(client.transport().open_transactions(), 0);
}

#[test]
fn a_failing_body_aborts_the_transaction() {
    let mut client = client();
    let result = client.transaction(|tx| {
        tx.write("/partial", b"1")?;
        tx.read("/missing")
    });
    assert_eq!(result, Err(Error::Xenstore(XsdError::NoEntry)));
    assert_eq!(client.transport().get("/partial"), None);
    assert_eq!(client.transport().open_transactions(), 0);
    let (header, payload) = client.transport().requests().last().unwrap().clone();
    assert_eq!((header.msg_type, &payload[..]), (7, &b"F\0"[..]));
}

#[test]
fn manual_transactions_commit_or_abort() {
    let mut client = client();
    let id = client.transaction_start().unwrap();
    client.in_transaction(id).write("/m", b"1").unwrap();
    assert_eq!(client.transport().get("/m"), None);
    assert_eq!(client.in_transaction(id).read("/m").unwrap(), b"1");
    client.transaction_end(id, false).unwrap();
    assert_eq!(client.transport().get("/m"), None);

    let id = client.transaction_start().unwrap();
    client.in_transaction(id).write("/m", b"2").unwrap();
    // A write outside the transaction makes its commit conflict.
    client.write("/elsewhere", b"x").unwrap();
    assert_eq!(
        client.transaction_end(id, true),
        Err(Error::Xenstore(XsdError::Again))
    );
    assert_eq!(
        client.transaction_end(id, true),
        Err(Error::Xenstore(XsdError::NoEntry))
    );
}

#[test]
fn an_over_long_reply_breaks_the_connection_for_good() {
    let mut client = client();
    client.write("/k", b"v").unwrap();
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::Length(5000));
    let reason = Fault::PayloadTooLong { len: 5000 };
    assert_eq!(client.read("/k"), Err(Error::Malformed { reason }));
    assert_eq!(client.broken(), Some(reason));
    assert_eq!(client.read("/k"), Err(Error::Broken { reason }));
    assert_eq!(client.poll(), Err(Error::Broken { reason }));
    assert_eq!(
        client.write("/k", b"w").unwrap_err().to_string(),
        "xenstore connection given up after: message announces 5000 payload bytes, more than 4096"
    );
}

#[test]
fn an_unknown_reply_type_breaks_the_connection() {
    let mut client = client();
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::Type(99));
    let reason = Fault::UnknownType { raw: 99 };
    assert_eq!(client.mkdir("/d"), Err(Error::Malformed { reason }));
    assert_eq!(client.mkdir("/d"), Err(Error::Broken { reason }));
}

#[test]
fn a_response_producer_past_the_ring_breaks_the_connection() {
    let mut client = client();
    client.write("/k", b"v").unwrap();
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::ProducerPastRing);
    let Err(Error::Malformed {
        reason: Fault::RingIndexes(IndexError { ring, .. }),
    }) = client.read("/k")
    else {
        panic!("expected a ring index fault");
    };
    assert_eq!(ring, RingName::Response);
    assert!(matches!(client.read("/k"), Err(Error::Broken { .. })));
}

#[test]
fn a_reply_with_an_unexpected_request_id_is_an_error_but_not_fatal() {
    let mut client = client();
    client.write("/k", b"v").unwrap();
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::RequestId(77));
    assert_eq!(
        client.read("/k"),
        Err(Error::Malformed {
            reason: Fault::UnexpectedRequestId {
                expected: Some(2),
                got: 77
            }
        })
    );
    assert!(client.broken().is_none());
    assert_eq!(client.read("/k").unwrap(), b"v");
}

#[test]
fn a_reply_of_the_wrong_type_is_an_error() {
    let mut client = client();
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::ReplyType(MessageType::Read));
    assert_eq!(
        client.write("/k", b"v"),
        Err(Error::Malformed {
            reason: Fault::UnexpectedReplyType {
                expected: MessageType::Write,
                got: MessageType::Read
            }
        })
    );
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::ReplyType(MessageType::Invalid));
    assert!(matches!(client.read("/k"), Err(Error::Malformed { .. })));
    assert_eq!(client.read("/k").unwrap(), b"v");
}

#[test]
fn malformed_payloads_are_errors() {
    let mut client = client();
    client.mkdir("/d").unwrap();
    type Call = fn(&mut Client<FakeXenstored>) -> Error;
    let cases: [(&[u8], Call); 5] = [
        (b"a\0b", |c| c.directory("/d").unwrap_err()),
        (b"x\0", |c| c.transaction_start().unwrap_err()),
        (b"OK", |c| c.write("/d", b"").unwrap_err()),
        (b"/p", |c| c.get_domain_path(1).unwrap_err()),
        (b"", |c| c.rm("/d/x").unwrap_err()),
    ];
    for (payload, call) in cases {
        client
            .transport_mut()
            .corrupt_next_reply(Corruption::Payload(payload.to_vec()));
        assert!(
            matches!(
                call(&mut client),
                Error::Malformed {
                    reason: Fault::BadPayload { .. }
                }
            ),
            "{payload:?}"
        );
    }
    // An ERROR reply without its terminator.
    client
        .transport_mut()
        .fail_next(MessageType::Read, "ENOENT");
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::Payload(b"ENOENT".to_vec()));
    assert!(matches!(
        client.read("/d"),
        Err(Error::Malformed {
            reason: Fault::BadPayload { .. }
        })
    ));
    assert!(client.broken().is_none());
    assert_eq!(client.directory("/").unwrap(), vec!["d", "local"]);
}

#[test]
fn a_server_that_never_answers_times_out_without_spinning() {
    let mut client = client();
    client.transport_mut().faults.silent = true;
    assert_eq!(
        client.read("/k"),
        Err(Error::Timeout {
            request: MessageType::Read,
            waited_ms: 5000
        })
    );
    assert!(client.now_ns() >= 5_000_000_000);
    assert!(
        client.transport().waits() <= 3,
        "{}",
        client.transport().waits()
    );
    assert_eq!(
        client.read("/k").unwrap_err().to_string(),
        "no reply to READ within 5000 ms"
    );
    assert!(client.broken().is_none());
}

#[test]
fn the_request_timeout_is_configurable() {
    let mut client = client();
    client.set_request_timeout_ns(2_000_000);
    client.transport_mut().faults.silent = true;
    let start = client.now_ns();
    assert!(matches!(
        client.write("/k", b"v"),
        Err(Error::Timeout { waited_ms: 2, .. })
    ));
    assert_eq!(client.now_ns() - start, 2_000_000);
}

#[test]
fn a_late_reply_to_a_timed_out_request_is_dropped() {
    let mut client = client();
    client.write("/k", b"v").unwrap();
    client.transport_mut().faults.reply_delay_ns = 6_000_000_000;
    assert!(matches!(client.read("/k"), Err(Error::Timeout { .. })));
    client.transport_mut().faults.reply_delay_ns = 0;
    client.write("/k", b"w").unwrap();
    assert_eq!(client.read("/k").unwrap(), b"w");
    // Also when the late reply turns up in a poll.
    client.transport_mut().faults.reply_delay_ns = 6_000_000_000;
    assert!(matches!(client.read("/k"), Err(Error::Timeout { .. })));
    let deadline = client.now_ns() + 2_000_000_000;
    let page = client.transport().page();
    let produced = page.rsp_prod.load(Ordering::Relaxed);
    client.transport_mut().wait(deadline);
    let page = client.transport().page();
    assert!(
        page.rsp_prod.load(Ordering::Relaxed) > produced,
        "the late reply came"
    );
    assert_eq!(client.poll(), Ok(0));
    client.transport_mut().faults.reply_delay_ns = 0;
    assert_eq!(client.read("/k").unwrap(), b"w");
}

#[test]
fn an_unsolicited_reply_is_an_error_in_poll() {
    let mut client = client();
    let header = Header {
        msg_type: MessageType::Read as u32,
        req_id: 42,
        tx_id: 0,
        len: 0,
    };
    client.transport_mut().send_raw(&header.to_bytes());
    client.transport_mut().step();
    assert_eq!(
        client.poll(),
        Err(Error::Malformed {
            reason: Fault::UnexpectedRequestId {
                expected: None,
                got: 42
            }
        })
    );
    assert!(client.broken().is_none());
    client.write("/k", b"v").unwrap();
}

#[test]
fn a_request_larger_than_the_free_space_waits_for_room() {
    let mut client = client();
    // Leave most of the request ring full of an unread request.
    client.transport_mut().faults.stalled = true;
    client.set_request_timeout_ns(1_000_000);
    assert!(matches!(
        client.write("/a", &[b'a'; 900]),
        Err(Error::Timeout { .. })
    ));
    assert!(client.broken().is_none(), "the request went in whole");
    client.transport_mut().faults.stalled = false;
    client.set_request_timeout_ns(5_000_000_000);
    // 900 + 16 bytes pending: this one cannot go in at once.
    client.write("/b", &[b'b'; 900]).unwrap();
    assert_eq!(client.transport().get("/a").map(<[u8]>::len), Some(900));
    assert_eq!(client.transport().get("/b").map(<[u8]>::len), Some(900));
}

#[test]
fn a_request_cut_short_by_a_timeout_breaks_the_connection() {
    let mut client = client();
    client.transport_mut().faults.stalled = true;
    assert!(matches!(
        client.write("/k", &[b'x'; 3000]),
        Err(Error::Timeout {
            request: MessageType::Write,
            ..
        })
    ));
    let reason = Fault::RequestCutShort;
    assert_eq!(client.broken(), Some(reason));
    assert_eq!(client.read("/k"), Err(Error::Broken { reason }));
}

#[test]
fn a_server_reported_error_ends_the_connection() {
    let mut client = client();
    client.write("/k", b"v").unwrap();
    client.transport_mut().set_server_error(XENSTORE_ERROR_COMM);
    let reason = Fault::ServerError { code: 1 };
    assert_eq!(client.read("/k"), Err(Error::Broken { reason }));
    // Also when it happens while a reply is awaited: no need to time out.
    let mut client = self::client();
    client.transport_mut().faults.silent = true;
    client
        .transport_mut()
        .set_server_error_at(1_000_000_000, XENSTORE_ERROR_COMM);
    assert_eq!(client.read("/k"), Err(Error::Broken { reason }));
    assert_eq!(client.now_ns(), 1_000_000_000);
}

#[test]
fn wait_for_watches_blocks_until_an_event_or_the_deadline() {
    let mut client = client();
    let (seen, callback) = recorder();
    let _handle = client.watch("/e", callback).unwrap();
    assert_eq!(client.wait_for_watches(client.now_ns()).unwrap(), 1);
    taken(&seen);
    client.transport_mut().set_at(1_000_000_000, "/e/x", b"1");
    let waits = client.transport().waits();
    assert_eq!(client.wait_for_watches(u64::MAX).unwrap(), 1);
    assert_eq!(taken(&seen), vec!["/e/x"]);
    assert_eq!(client.now_ns(), 1_000_000_000);
    assert_eq!(client.transport().waits() - waits, 1);
    let deadline = client.now_ns() + 500;
    assert_eq!(client.wait_for_watches(deadline).unwrap(), 0);
    assert_eq!(client.now_ns(), deadline);
}

#[test]
fn a_request_consumer_past_the_producer_breaks_the_connection() {
    let mut client = client();
    client
        .transport()
        .page()
        .req_cons
        .store(5000, Ordering::Release);
    let Err(Error::Malformed {
        reason: Fault::RingIndexes(IndexError { ring, .. }),
    }) = client.write("/k", b"v")
    else {
        panic!("expected a ring index fault");
    };
    assert_eq!(ring, RingName::Request);
    assert_eq!(
        client.transport().page().req_prod.load(Ordering::Relaxed),
        0
    );
    assert!(matches!(client.read("/k"), Err(Error::Broken { .. })));
}

#[test]
fn a_batch_gives_each_operation_its_result_in_one_round_trip() {
    use super::client::{BatchOp, BatchReply};
    const DELAY: u64 = 1_000_000;
    let mut client = client();
    client.write("/d/a", b"1").unwrap();
    client.transport_mut().faults.reply_delay_ns = DELAY;
    // One by one: a round trip each.
    let start = client.now_ns();
    assert_eq!(client.read("/d/a").unwrap(), b"1");
    client.write("/d/b", b"2").unwrap();
    assert_eq!(client.directory("/d").unwrap(), vec!["a", "b"]);
    assert!(client.now_ns() - start >= 3 * DELAY);
    // As a batch: one round trip for all, each result in order, a failing
    // operation (the missing node) not stopping the others.
    let start = client.now_ns();
    let results = client.batch(&[
        BatchOp::Read("/d/a"),
        BatchOp::Write("/d/c", b"3"),
        BatchOp::Read("/d/missing"),
        BatchOp::Directory("/d"),
        BatchOp::Read("/d/c"),
    ]);
    let took = client.now_ns() - start;
    assert!(took < 2 * DELAY, "{took} ns");
    assert_eq!(
        results,
        vec![
            Ok(BatchReply::Value(b"1".to_vec())),
            Ok(BatchReply::Written),
            Err(Error::Xenstore(XsdError::NoEntry)),
            Ok(BatchReply::Names(vec![
                "a".to_string(),
                "b".to_string(),
                "c".to_string()
            ])),
            Ok(BatchReply::Value(b"3".to_vec())),
        ]
    );
    assert_eq!(
        request_types(&client)[4..],
        [
            MessageType::Read,
            MessageType::Write,
            MessageType::Read,
            MessageType::Directory,
            MessageType::Read
        ]
    );
    let reply = results[0].clone().unwrap();
    assert_eq!(reply.clone().into_value(), Some(b"1".to_vec()));
    assert_eq!(reply.into_names(), None);
    assert!(client.broken().is_none());
    assert_eq!(client.batch(&[]), vec![]);
}

#[test]
fn a_batch_larger_than_the_ring_goes_in_parts() {
    use super::client::{BatchOp, BatchReply};
    let mut client = client();
    let value = [b'x'; 300];
    let paths: Vec<String> = (0..12).map(|n| std::format!("/big/{n}")).collect();
    let writes: Vec<BatchOp<'_>> = paths
        .iter()
        .map(|path| BatchOp::Write(path, &value))
        .collect();
    let results = client.batch(&writes);
    assert!(results.iter().all(|r| *r == Ok(BatchReply::Written)));
    for path in &paths {
        assert_eq!(client.read(path).unwrap(), value);
    }
    // One request too large to send fails alone.
    let huge = vec![b'y'; XENSTORE_PAYLOAD_MAX + 1];
    let results = client.batch(&[BatchOp::Write("/big/0", &huge), BatchOp::Read("/big/1")]);
    assert!(matches!(results[0], Err(Error::PayloadTooLarge { .. })));
    assert_eq!(results[1], Ok(BatchReply::Value(value.to_vec())));
}

#[test]
fn a_batch_inside_a_transaction_commits_with_it() {
    use super::client::{BatchOp, BatchReply};
    let mut client = client();
    let results = client
        .transaction(|tx| {
            let results = tx.batch(&[BatchOp::Write("/t/a", b"1"), BatchOp::Write("/t/b", b"2")]);
            assert!(tx.read("/t/a").is_ok(), "visible inside");
            Ok(results)
        })
        .unwrap();
    assert_eq!(
        results,
        vec![Ok(BatchReply::Written), Ok(BatchReply::Written)]
    );
    assert_eq!(client.read("/t/b").unwrap(), b"2");
    assert_eq!(client.transport().open_transactions(), 0);
    let tx_ids: Vec<u32> = client
        .transport()
        .requests()
        .iter()
        .filter(|(header, _)| header.msg_type == MessageType::Write as u32)
        .map(|(header, _)| header.tx_id)
        .collect();
    assert!(tx_ids.len() == 2 && tx_ids.iter().all(|&id| id != 0));
}

#[test]
fn a_batch_that_gets_no_replies_times_out_whole_and_late_replies_are_dropped() {
    use super::client::{BatchOp, BatchReply};
    let mut client = client();
    client.write("/k", b"v").unwrap();
    client.transport_mut().faults.reply_delay_ns = 6_000_000_000;
    let results = client.batch(&[BatchOp::Read("/k"), BatchOp::Write("/k", b"w")]);
    assert_eq!(
        results,
        vec![
            Err(Error::Timeout {
                request: MessageType::Read,
                waited_ms: 5000
            }),
            Err(Error::Timeout {
                request: MessageType::Write,
                waited_ms: 5000
            }),
        ]
    );
    // The late replies arrive and are dropped; the connection goes on.
    client.transport_mut().faults.reply_delay_ns = 0;
    let deadline = client.now_ns() + 2_000_000_000;
    client.transport_mut().wait(deadline);
    assert_eq!(client.poll(), Ok(0));
    assert_eq!(
        client.batch(&[BatchOp::Read("/k")]),
        vec![Ok(BatchReply::Value(b"w".to_vec()))]
    );
    assert!(client.broken().is_none());
}

#[test]
fn watch_events_during_a_batch_are_queued_and_a_stray_reply_fails_one_operation() {
    use super::client::{BatchOp, BatchReply};
    let mut client = client();
    client.transport_mut().faults.events_before_reply = true;
    let (seen, callback) = recorder();
    let _handle = client.watch("/w", callback).unwrap();
    let results = client.batch(&[BatchOp::Write("/w/a", b"1"), BatchOp::Write("/w/b", b"2")]);
    assert_eq!(
        results,
        vec![Ok(BatchReply::Written), Ok(BatchReply::Written)]
    );
    client.poll().unwrap();
    client.dispatch_watches();
    assert_eq!(taken(&seen), vec!["/w", "/w/a", "/w/b"]);
    // A reply with a request id nobody sent: the oldest operation waiting
    // fails, the other still gets its reply.
    client
        .transport_mut()
        .corrupt_next_reply(Corruption::RequestId(9999));
    let results = client.batch(&[BatchOp::Read("/w/a"), BatchOp::Read("/w/b")]);
    assert!(matches!(
        results[0],
        Err(Error::Malformed {
            reason: Fault::UnexpectedRequestId { got: 9999, .. }
        })
    ));
    assert_eq!(results[1], Ok(BatchReply::Value(b"2".to_vec())));
    assert!(client.broken().is_none());
}
