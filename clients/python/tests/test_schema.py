"""The SDK's types against ``docs/protocol.schema.json`` (generated from the
hub's Rust types): every client and server frame ``type``, every event
``kind``, every field and which are required, every enum, the close-code
and retryable-error tables; and the frames the SDK builds validate."""

from __future__ import annotations

import typing
import uuid
from typing import Any

import pytest

from eva_hub import frames, types
from eva_hub.errors import CLOSE_CODES, RETRYABLE_ERRORS, close_code_reconnects
from schema_check import alternatives, defs, enum_values, resolve, tag_of, typed_dict_keys, validator

SID = str(uuid.uuid4())
EID = str(uuid.uuid4())


def union_members(union: Any, tag: str) -> dict[str, Any]:
    return {tag_of(td, tag): td for td in typing.get_args(union)}


@pytest.mark.parametrize(
    "def_name, union, tag",
    [
        ("ClientFrame", types.ClientFrame, "type"),
        ("ServerFrame", types.ServerFrame, "type"),
        ("Event", types.Event, "kind"),
    ],
)
def test_every_alternative_is_typed_with_the_same_fields(def_name: str, union: Any, tag: str) -> None:
    schema_alts = alternatives(def_name, tag)
    sdk = union_members(union, tag)
    assert set(sdk) == set(schema_alts), f"{def_name}: SDK and schema name different {tag}s"
    for name, alt in schema_alts.items():
        props, required = resolve(alt)
        if (def_name, name) == ("ServerFrame", "event"):
            # The one deliberate difference: the SDK builds `event` frames
            # from compact event frames too, which carry no `ts`.
            required = required - {"ts"}
        keys, sdk_required = typed_dict_keys(sdk[name])
        assert keys == props, f"{def_name} {name}: fields differ: sdk-only {keys - props}, schema-only {props - keys}"
        assert sdk_required == required, f"{def_name} {name}: required fields differ"


def test_compact_event_frames_carry_every_event_with_the_same_fields() -> None:
    # `e` and `q`, then exactly the fields of an `Event` of that kind: what
    # the SDK hands to handlers after taking `e` and `q` out.
    compact = defs()["CompactEventFrame"]
    keys, required = typed_dict_keys(types.CompactEventFrame)
    assert (keys, required) == resolve(compact)
    events = alternatives("Event", "kind")
    kinds = {alt["properties"]["kind"]["const"]: alt for alt in compact["oneOf"]}
    assert set(kinds) == set(events)
    for kind, alt in kinds.items():
        assert resolve(alt) == resolve(events[kind]), kind


def test_literal_aliases_list_every_tag() -> None:
    assert set(typing.get_args(types.EventKind)) == set(alternatives("Event", "kind"))
    assert set(typing.get_args(types.ServerFrameType)) == set(alternatives("ServerFrame", "type"))


@pytest.mark.parametrize(
    "def_name",
    [
        "StreamPosition",
        "StatePatch",
        "RendererMetrics",
        "StageLatencies",
        "SessionState",
        "Counters",
        "PresenceView",
        "Member",
        "ControlView",
        "Alert",
        "ResponseBody",
        "Snapshot",
        "OpenQuestion",
        "PendingCommandView",
        "Job",
        "SessionSummary",
    ],
)
def test_models_match(def_name: str) -> None:
    props, required = resolve(defs()[def_name])
    keys, sdk_required = typed_dict_keys(getattr(types, def_name))
    assert keys == props, def_name
    assert sdk_required == required, def_name


def test_commands_match() -> None:
    schema_cmds = {alt["properties"]["action"]["const"]: alt for alt in defs()["Command"]["oneOf"]}
    sdk = union_members(types.Command, "action")
    assert set(sdk) == set(schema_cmds)
    for name, alt in schema_cmds.items():
        keys, required = typed_dict_keys(sdk[name])
        assert (keys, required) == resolve(alt), name


@pytest.mark.parametrize(
    "alias, def_name",
    [
        (types.Role, "Role"),
        (types.SessionStatus, "SessionStatus"),
        (types.CustomAudience, "CustomAudience"),
        (types.PresenceChange, "PresenceChange"),
        (types.ReleaseReason, "ReleaseReason"),
        (types.DiscontinuityReason, "DiscontinuityReason"),
        (types.AlertType, "AlertType"),
        (types.Severity, "Severity"),
        (types.ErrorCode, "ErrorCode"),
        (types.JobStatus, "JobStatus"),
    ],
)
def test_enums_match(alias: Any, def_name: str) -> None:
    assert set(typing.get_args(alias)) == enum_values(def_name)


def test_close_code_table_matches_the_schema() -> None:
    schema_codes = {alt["const"]: (alt["title"], alt["x-reconnect"]) for alt in defs()["CloseCode"]["oneOf"]}
    assert CLOSE_CODES == schema_codes
    for code, (_, reconnect) in schema_codes.items():
        assert close_code_reconnects(code) is reconnect, code
    # The rule beyond the table: a drop without a close frame reconnects.
    assert close_code_reconnects(None)


def test_retryable_errors_match_the_schema() -> None:
    assert set(RETRYABLE_ERRORS) == set(defs()["ErrorCode"]["x-retryable"])


def every_client_frame() -> list[types.ClientFrame]:
    """Every frame the SDK can build, with and without optional fields."""
    return [
        frames.auth("dev:participant:alice"),
        frames.join(SID),
        frames.join(SID, resume={"epoch": "00000000009f3a2c", "seq": 41}, takeover=True, name="Ada", id="j1"),
        frames.join(SID, compact=True, echo=False, id="j2"),
        frames.leave(SID),
        frames.leave(SID, id="l1"),
        frames.state(SID, {}),
        frames.state(
            SID,
            {
                "current_slide": 5,
                "is_speaking": True,
                "presentation_mode": "auto",
                "awaiting_questions": False,
                "current_topic": None,
            },
            id="s1",
        ),
        frames.context(SID, {"recent_questions": ["x"]}, id="c1"),
        frames.metrics(SID, {}),
        frames.metrics(
            SID,
            {
                "latency_ms": 234.0,
                "cpu_usage": 0.5,
                "gpu_usage": 0.5,
                "memory_usage": 0.5,
                "fps": 30.0,
                "stages": {"stt_ms": 1.0, "llm_ms": 2.0, "tts_ms": 3.0, "total_ms": 6.0},
                "component": "pipeline",
            },
        ),
        frames.status(SID, "active"),
        frames.status(SID, "failed", reason="gpu lost", id="st1"),
        frames.response(SID, "r1", "hello"),
        frames.response(
            SID,
            "r2",
            "hello",
            question_id=EID,
            confidence=0.9,
            response_time_ms=840,
            intent="pricing",
            knowledge_sources=["faq"],
            command_id=EID,
        ),
        frames.command_ack(SID, EID),
        frames.question(SID, "q1", "what?"),
        frames.takeover(SID),
        frames.takeover(SID, reason="off topic", id="t1"),
        frames.release(SID, id="t2"),
        frames.command(SID, "c1", {"action": "say", "text": "hi"}),
        frames.command(SID, "c2", {"action": "goto_slide", "slide": 3}),
        frames.command(SID, "c3", {"action": "pause"}),
        frames.command(SID, "c4", {"action": "resume"}),
        frames.suggestion(SID, "s1", "mention pricing"),
        frames.correction(SID, "c1", EID, "30 days"),
        frames.emergency_stop(SID, "e1"),
        frames.emergency_stop(SID, "e2", reason="inappropriate"),
        frames.approve(SID, EID, id="a1"),
        frames.ack_alert(SID, EID, id="k1"),
        frames.publish(SID, "job.progress"),
        frames.publish(SID, "job.progress", {"progress": 40}, audience="staff", id="p1"),
        frames.list_sessions(),
        frames.list_sessions(status="active", include_ended=True, limit=50, id="l1"),
        frames.ping(),
        frames.ping(7),
    ]


def test_every_frame_the_sdk_builds_validates() -> None:
    v = validator("ClientFrame")
    built = every_client_frame()
    # Every client frame type is exercised.
    assert {f["type"] for f in built} == set(alternatives("ClientFrame", "type"))
    for f in built:
        errors = list(v.iter_errors(f))
        assert not errors, f"{f}: {errors[0].message if errors else ''}"


def test_the_validator_rejects_a_bad_frame() -> None:
    # Guards the test above against a validator that accepts anything.
    v = validator("ClientFrame")
    assert list(v.iter_errors({"type": "question", "session": SID, "text": "no id"}))
    assert list(v.iter_errors({"type": "join", "session": "not-a-uuid"}))
