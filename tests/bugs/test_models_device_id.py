"""A bug report may name any SQAL device: the bugs domain's device id rule is SQAL's (restated, not imported)."""

from __future__ import annotations

from backend.bugs import models
from backend.sqal import vocabulary


def test_bug_device_ids_follow_the_sqal_rule() -> None:
    assert models.DEVICE_ID_MAX == vocabulary.ID_MAX_LENGTH
    assert models.DEVICE_ID_PATTERN == vocabulary.ID_PATTERN
    assert models.BugReport.__table__.c.device_id.type.length == vocabulary.ID_MAX_LENGTH
