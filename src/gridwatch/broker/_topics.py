"""Topic name and topic filter rules of MQTT 3.1.1 section 4.7 (pure)."""


def is_valid_topic_name(topic: str) -> bool:
    """Return whether topic may be published to: non-empty, no wildcards, no U+0000."""
    return bool(topic) and not any(char in topic for char in "+#\x00")


def is_valid_topic_filter(topic_filter: str) -> bool:
    """Return whether topic_filter may be subscribed to."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        # A wildcard must fill its whole level, and '#' must also be the last level.
        if "+" in level and level != "+":
            return False
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Return whether a valid topic_filter matches a valid topic name."""
    # Topics starting with '$' (such as $SYS) are hidden from filters starting with a wildcard.
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            # 'a/#' also matches the parent level 'a' itself.
            return True
        if index >= len(topic_levels):
            return False
        if level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)
