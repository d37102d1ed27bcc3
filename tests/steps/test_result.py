"""StepResult: the spec's six fields, the orchestrator's extra fields, from_exception."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from synapse_sdk.plugins.steps import StepResult


def test_spec_fields_come_first_in_order() -> None:
    names = [f.name for f in fields(StepResult)]
    assert names[:6] == ['success', 'data', 'error', 'rollback_data', 'skipped', 'timestamp']


def test_extra_fields_exist_and_default_to_none() -> None:
    result = StepResult()
    names = {f.name for f in fields(StepResult)}
    assert {'step_name', 'exception', 'duration_seconds'} <= names
    assert result.step_name is None
    assert result.exception is None
    assert result.duration_seconds is None


def test_defaults() -> None:
    result = StepResult()
    assert result.success is True
    assert result.data == {}
    assert result.error is None
    assert result.rollback_data == {}
    assert result.skipped is False


def test_timestamp_is_timezone_aware_utc_at_creation() -> None:
    before = datetime.now(UTC)
    result = StepResult()
    after = datetime.now(UTC)
    assert result.timestamp.tzinfo is not None
    assert result.timestamp.utcoffset() == timedelta(0)
    assert before <= result.timestamp <= after


def test_timestamp_is_taken_per_instance() -> None:
    first = StepResult()
    second = StepResult()
    assert second.timestamp >= first.timestamp
    # a default_factory, not a value frozen at import time
    assert datetime.now(UTC) - first.timestamp < timedelta(seconds=5)


def test_dicts_are_independent_per_instance() -> None:
    first = StepResult()
    second = StepResult()
    first.data['x'] = 1
    first.rollback_data['y'] = 2
    assert second.data == {}
    assert second.rollback_data == {}
    assert first.data is not second.data
    assert first.rollback_data is not second.rollback_data


def test_positional_and_keyword_construction() -> None:
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = StepResult(False, {'a': 1}, 'broken', {'undo': [1]}, True, stamp)
    assert result.success is False
    assert result.data == {'a': 1}
    assert result.error == 'broken'
    assert result.rollback_data == {'undo': [1]}
    assert result.skipped is True
    assert result.timestamp == stamp


def test_extra_fields_can_be_set() -> None:
    exc = ValueError('x')
    result = StepResult(step_name='upload', exception=exc, duration_seconds=1.5)
    assert result.step_name == 'upload'
    assert result.exception is exc
    assert result.duration_seconds == 1.5


def test_from_exception_keeps_type_and_message() -> None:
    exc = ValueError('msg')
    result = StepResult.from_exception(exc)
    assert result.success is False
    assert result.error == 'ValueError: msg'
    assert result.exception is exc
    assert result.data == {}
    assert result.rollback_data == {}
    assert result.skipped is False


@pytest.mark.parametrize(
    ('exc', 'expected'),
    [
        (RuntimeError(), 'RuntimeError'),
        (KeyError('k'), "KeyError: 'k'"),
        (OSError('disk full'), 'OSError: disk full'),
        (KeyboardInterrupt(), 'KeyboardInterrupt'),
    ],
)
def test_from_exception_error_text(exc: BaseException, expected: str) -> None:
    assert StepResult.from_exception(exc).error == expected


def test_from_exception_uses_the_subclass_name() -> None:
    class UploadRejected(Exception):
        pass

    result = StepResult.from_exception(UploadRejected('quota'))
    assert result.error == 'UploadRejected: quota'


def test_from_exception_with_data_and_rollback_data() -> None:
    result = StepResult.from_exception(
        ValueError('bad'), data={'rows': 3}, rollback_data={'files': ['a']}
    )
    assert result.data == {'rows': 3}
    assert result.rollback_data == {'files': ['a']}


def test_from_exception_dicts_are_independent() -> None:
    first = StepResult.from_exception(ValueError('a'))
    second = StepResult.from_exception(ValueError('b'))
    first.data['x'] = 1
    first.rollback_data['x'] = 1
    assert second.data == {}
    assert second.rollback_data == {}


def test_from_exception_timestamp_is_utc() -> None:
    result = StepResult.from_exception(ValueError('a'))
    assert result.timestamp.utcoffset() == timedelta(0)
