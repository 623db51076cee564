"""The error registry: every Kafka error once, found by name or code whatever was imported."""

import subprocess
import sys

import pytest

from shm import errors
from shm.errors import (
    NotLeaderOrFollowerError,
    RinglogError,
    UnknownServerError,
    error_class_for_code,
    error_for,
    registered_errors,
)


def test_every_error_class_is_registered_once_under_its_name_and_code():
    classes = registered_errors()
    assert len({c.name for c in classes}) == len({c.code for c in classes}) == len(classes)
    defined = {v for v in vars(errors).values()
               if isinstance(v, type) and issubclass(v, RinglogError) and v is not RinglogError}
    assert set(classes) == defined


def test_a_name_off_the_wire_becomes_its_exception_with_the_message():
    error = error_for("NOT_LEADER_OR_FOLLOWER", "partition t-0 moved")
    assert type(error) is NotLeaderOrFollowerError
    assert str(error) == "partition t-0 moved" and error.retriable


def test_an_unknown_name_is_an_unknown_server_error_that_keeps_the_name():
    error = error_for("NO_SUCH_ERROR", "what happened")
    assert type(error) is UnknownServerError
    assert "NO_SUCH_ERROR" in str(error) and "what happened" in str(error)


def test_codes_map_back_to_classes():
    assert error_class_for_code(6) is NotLeaderOrFollowerError
    assert error_class_for_code(9999) is UnknownServerError


def test_a_duplicate_name_is_refused_when_the_class_is_created():
    with pytest.raises(TypeError, match="already"):
        type("Again", (RinglogError,), {"name": "NOT_LEADER_OR_FOLLOWER", "code": 10_006})


def test_lookup_does_not_depend_on_what_else_was_imported():
    """In a fresh interpreter that imported only the registry, a group
    coordinator's error name resolves (it once needed its module imported)."""
    code = ("import sys; from shm.errors import error_for; "
            "e = error_for('UNKNOWN_MEMBER_ID'); "
            "assert type(e).__name__ == 'UnknownMemberIdError', e; "
            "assert not any(m.startswith(('appliance', 'workers')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
