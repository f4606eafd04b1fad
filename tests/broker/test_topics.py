"""Topic names, topic filters and matching, after MQTT 3.1.1 section 4.7."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.broker._topics import is_valid_topic_filter, is_valid_topic_name, topic_matches


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("#", "sport/tennis", True),
        ("#", "/", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/tracker", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("+", "finance", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("A/b", "a/b", False),
        ("gridwatch/+/status", "gridwatch/dev-1/status", True),
        ("gridwatch/+/status", "gridwatch/dev-1/telemetry", False),
        ("#", "$SYS/uptime", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("a/#", "$a", False),
    ],
)
def test_spec_examples(topic_filter, topic, expected):
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("#", True),
        ("+", True),
        ("a/+/b/#", True),
        ("/", True),
        ("+/+/", True),
        ("", False),
        ("a#", False),
        ("a/#/b", False),
        ("a/b#", False),
        ("a+/b", False),
        ("a/++", False),
        ("a\x00b", False),
    ],
)
def test_filter_validity(topic_filter, valid):
    assert is_valid_topic_filter(topic_filter) is valid


@pytest.mark.parametrize(
    ("topic", "valid"),
    [("a/b", True), ("/", True), ("$SYS/x", True), ("", False), ("a/+", False), ("#", False)],
)
def test_topic_name_validity(topic, valid):
    assert is_valid_topic_name(topic) is valid


level = st.text(alphabet="abcz$ -_.é", max_size=4)
topics = st.lists(level, min_size=1, max_size=6).map("/".join).filter(is_valid_topic_name)


@given(topics)
def test_a_topic_used_as_filter_matches_itself(topic):
    assert topic_matches(topic, topic)


@given(topics)
def test_hash_matches_everything_but_dollar_topics(topic):
    assert topic_matches("#", topic) is not topic.startswith("$")


@given(topics, st.data())
def test_plus_in_any_level_still_matches(topic, data):
    levels = topic.split("/")
    wild = data.draw(st.sets(st.integers(min_value=0, max_value=len(levels) - 1)))
    topic_filter = "/".join("+" if i in wild else lvl for i, lvl in enumerate(levels))
    hidden = topic.startswith("$") and 0 in wild
    assert topic_matches(topic_filter, topic) is not hidden


@given(topics, st.data())
def test_hash_after_any_prefix_matches(topic, data):
    levels = topic.split("/")
    keep = data.draw(st.integers(min_value=1, max_value=len(levels)))
    assert topic_matches("/".join([*levels[:keep], "#"]), topic)


@given(topics, topics)
def test_without_wildcards_only_equal_topics_match(first, second):
    assert topic_matches(first, second) is (first == second)


@given(topics, topics)
def test_a_filter_with_a_different_level_count_and_no_hash_never_matches(topic, other):
    topic_filter = "/".join("+" for _ in other.split("/"))
    same_depth = len(other.split("/")) == len(topic.split("/"))
    assert topic_matches(topic_filter, topic) is (same_depth and not topic.startswith("$"))
