"""Session state without sockets: the bounded queue, the in-flight window and QoS flows."""

import pytest

from gridwatch.broker._packets import Publish, PubRel
from gridwatch.broker._session import Enqueued, Session


def make_session(*, max_queued: int = 100, max_inflight: int = 20) -> Session:
    return Session(
        "dev", clean_session=False, max_queued_messages=max_queued, max_inflight=max_inflight
    )


def test_full_queue_drops_and_reports_the_first_drop_once():
    session = make_session(max_queued=2)
    outcomes = [session.enqueue(Publish("t", bytes([i]), qos=1)) for i in range(5)]
    assert outcomes == [
        Enqueued.QUEUED,
        Enqueued.QUEUED,
        Enqueued.OVERFLOW_STARTED,
        Enqueued.DROPPED,
        Enqueued.DROPPED,
    ]
    assert (session.queued, session.dropped) == (2, 3)


def test_overflow_is_reported_again_after_the_queue_drained():
    session = make_session(max_queued=1)
    session.enqueue(Publish("t", b"1", qos=1))
    assert session.enqueue(Publish("t", b"2", qos=1)) is Enqueued.OVERFLOW_STARTED
    session.take_ready(10)
    session.enqueue(Publish("t", b"3", qos=1))
    assert session.enqueue(Publish("t", b"4", qos=1)) is Enqueued.OVERFLOW_STARTED


def test_in_flight_window_holds_back_qos1_and_keeps_order():
    session = make_session(max_inflight=2)
    for index, qos in enumerate([1, 1, 1, 0]):
        session.enqueue(Publish("t", bytes([index]), qos=qos))
    ready = session.take_ready(10)
    assert [(p.payload, p.packet_id) for p in ready] == [(b"\x00", 1), (b"\x01", 2)]
    assert (session.inflight, session.queued) == (2, 2)
    session.acknowledge(1)
    assert [(p.payload, p.packet_id) for p in session.take_ready(10)] == [
        (b"\x02", 3),
        (b"\x03", None),
    ]


def test_take_ready_honours_the_limit():
    session = make_session()
    for _ in range(5):
        session.enqueue(Publish("t", b"", qos=0))
    assert len(session.take_ready(3)) == 3
    assert session.queued == 2


def test_packet_ids_wrap_and_skip_ids_in_flight():
    session = make_session(max_inflight=2)
    session.enqueue(Publish("t", b"", qos=1))
    [first] = session.take_ready(1)
    for _ in range(65534):
        session.enqueue(Publish("t", b"", qos=1))
        [sent] = session.take_ready(1)
        session.acknowledge(sent.packet_id or 0)
    session.enqueue(Publish("t", b"", qos=1))
    [wrapped] = session.take_ready(1)
    assert (first.packet_id, wrapped.packet_id) == (1, 2)


def test_resend_marks_publishes_dup_and_keeps_pubrel_after_pubrec():
    session = make_session()
    session.enqueue(Publish("a", b"1", qos=1))
    session.enqueue(Publish("b", b"2", qos=2))
    session.take_ready(10)
    assert session.received(2) == PubRel(2)
    assert session.resend() == [Publish("a", b"1", qos=1, dup=True, packet_id=1), PubRel(2)]


@pytest.mark.parametrize(
    ("qos", "acks", "left_in_flight"),
    [
        (1, ["puback"], 0),
        (1, ["pubrec", "pubcomp"], 1),
        (2, ["puback"], 1),
        (2, ["pubcomp"], 1),
        (2, ["pubrec", "pubcomp"], 0),
        (2, ["pubrec", "pubrec", "pubcomp"], 0),
    ],
)
def test_only_the_right_acks_complete_a_delivery(qos, acks, left_in_flight):
    session = make_session()
    session.enqueue(Publish("t", b"", qos=qos))
    session.take_ready(1)
    for ack in acks:
        {"puback": session.acknowledge, "pubrec": session.received, "pubcomp": session.complete}[
            ack
        ](1)
    assert session.inflight == left_in_flight


def test_pubrec_for_an_unknown_id_is_ignored():
    assert make_session().received(42) is None


def test_incoming_qos2_duplicates_are_detected_until_pubrel():
    session = make_session()
    assert session.start_incoming_qos2(5)
    assert not session.start_incoming_qos2(5)
    session.release_incoming_qos2(5)
    assert session.start_incoming_qos2(5)


def test_overlapping_subscriptions_grant_the_highest_qos():
    session = make_session()
    session.subscriptions.update({"a/+": 0, "a/#": 2, "b/#": 1})
    assert session.granted_qos("a/x") == 2
    assert session.granted_qos("b") == 1
    assert session.granted_qos("c") is None


@pytest.mark.parametrize("max_inflight", [0, 65535])
def test_in_flight_window_must_leave_packet_ids_free(max_inflight):
    with pytest.raises(ValueError, match="max_inflight"):
        make_session(max_inflight=max_inflight)
