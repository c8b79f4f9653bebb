"""Chat Completions over the Responses backend: the request one way, the answer the other."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from codexpool_router.chat import ChunkStream, completion, to_responses
from codexpool_router.inbound import parse_body
from codexpool_shared.errors import ApiError

PARAMETERS = {"type": "object", "properties": {"command": {"type": "array"}}}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "shell", "description": "Run a command", "parameters": PARAMETERS},
    }
]


def test_messages_become_instructions_and_input_items() -> None:
    body = to_responses(
        {
            "model": "gpt-5-codex",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is here?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "shell", "arguments": '{"command":["ls"]}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
            ],
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "shell"}},
            "temperature": 0.2,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
            "reasoning_effort": "low",
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "someone",
        }
    )
    assert body["instructions"] == "Be brief.\n\nNo emoji."
    assert body["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is here?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "auto"},
            ],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "shell",
            "arguments": '{"command":["ls"]}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "shell",
            "description": "Run a command",
            "parameters": PARAMETERS,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "shell"}
    assert body["temperature"] == 0.2
    assert body["text"] == {"format": {"type": "json_schema", "name": "x", "schema": {}}}
    assert body["reasoning"] == {"effort": "low"}
    assert body["stream"] is True
    assert "user" not in body and "stream_options" not in body


def test_the_routed_body_is_what_the_codex_backend_takes() -> None:
    raw = orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    inbound = parse_body(raw, None, "chat")
    sent = orjson.loads(inbound.body)
    assert (sent["store"], sent["stream"], sent["instructions"]) == (False, True, "")
    assert inbound.stream and inbound.include_usage and inbound.dialect == "chat"
    unary = parse_body(
        orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}), None, "chat"
    )
    assert not unary.stream and orjson.loads(unary.body)["stream"] is True


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 10}, "max_tokens"),
        ({"max_completion_tokens": 10}, "max_completion_tokens"),
        ({"stop": ["\n"]}, "stop"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"tools": [{"type": "custom", "custom": {}}]}, "tools[0]"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_the_parameter(
    extra: dict[str, Any], param: str
) -> None:
    doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(ApiError) as caught:
        to_responses(doc)
    assert caught.value.status_code == 400
    assert caught.value.param == param


def test_null_and_false_optional_parameters_are_accepted() -> None:
    doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body = to_responses({**doc, "max_tokens": None, "logprobs": False, "n": 1, "stop": None})
    assert body["input"][0]["content"] == [{"type": "input_text", "text": "hi"}]


def _response(status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "created_at": 1770000000,
        "model": "gpt-5-codex",
        "status": status,
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello world"}],
            },
        ],
        "usage": {
            "input_tokens": 1234,
            "input_tokens_details": {"cached_tokens": 1024},
            "output_tokens": 56,
            "output_tokens_details": {"reasoning_tokens": 32},
            "total_tokens": 1290,
        },
        **extra,
    }


def test_a_response_becomes_one_chat_completion() -> None:
    doc = completion(_response(), "req_x", "asked")
    assert doc["id"] == "chatcmpl-resp_1" and doc["object"] == "chat.completion"
    assert doc["created"] == 1770000000 and doc["model"] == "gpt-5-codex"
    [choice] = doc["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Hello world", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert doc["usage"] == {
        "prompt_tokens": 1234,
        "completion_tokens": 56,
        "total_tokens": 1290,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 32},
    }


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (_response("incomplete", incomplete_details={"reason": "max_output_tokens"}), "length"),
        (
            _response("incomplete", incomplete_details={"reason": "content_filter"}),
            "content_filter",
        ),
    ],
)
def test_finish_reasons_of_incomplete_responses(response: dict[str, Any], reason: str) -> None:
    assert completion(response, "req_x", "m")["choices"][0]["finish_reason"] == reason


def test_function_calls_become_tool_calls() -> None:
    response = _response()
    response["output"].append(
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "shell",
            "arguments": '{"command":["ls"]}',
        }
    )
    [choice] = completion(response, "req_x", "m")["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "shell", "arguments": '{"command":["ls"]}'},
        }
    ]


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def _chunks(data: bytes) -> list[Any]:
    lines = [line for line in data.split(b"\n\n") if line]
    return [line[6:] if line == b"data: [DONE]" else orjson.loads(line[6:]) for line in lines]


STREAM = _sse(
    {"type": "response.created", "response": {"id": "resp_1", "created_at": 7, "model": "g"}},
    {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message"}},
    {"type": "response.output_text.delta", "delta": "Hello"},
    {"type": "response.output_text.delta", "delta": " world"},
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell"},
    },
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"a":'},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "1}"},
    {
        "type": "response.output_item.done",
        "output_index": 1,
        "item": {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "arguments": '{"a":1}',
        },
    },
    {
        "type": "response.output_item.done",
        "output_index": 2,
        "item": {
            "type": "function_call",
            "id": "fc_2",
            "call_id": "call_2",
            "name": "b",
            "arguments": "{}",
        },
    },
    {"type": "response.completed", "response": _response()},
)


@pytest.mark.parametrize("size", [1, 7, len(STREAM)])
def test_a_stream_becomes_chunks_with_tool_call_deltas_usage_and_done(size: int) -> None:
    stream = ChunkStream("req_x", "asked", usage=True)
    out = b"".join(stream.feed(STREAM[i : i + size]) for i in range(0, len(STREAM), size))
    chunks = _chunks(out)
    assert chunks[-1] == b"[DONE]"
    docs = chunks[:-1]
    assert {d["id"] for d in docs} == {"chatcmpl-resp_1"}
    assert all(d["object"] == "chat.completion.chunk" and d["model"] == "g" for d in docs)
    deltas = [d["choices"][0]["delta"] for d in docs if d["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Hello world"
    calls = [c for d in deltas for c in d.get("tool_calls", ())]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "shell", "arguments": ""},
    }
    args = {0: "", 1: ""}
    for call in calls:
        args[call["index"]] += call["function"]["arguments"]
    assert args == {0: '{"a":1}', 1: "{}"}
    assert calls[-2]["id"] == "call_2" and calls[-2]["function"]["name"] == "b"
    finish = [d["choices"][0]["finish_reason"] for d in docs if d["choices"]]
    assert finish[-1] == "tool_calls" and set(finish[:-1]) == {None}
    assert docs[-1]["choices"] == [] and docs[-1]["usage"]["total_tokens"] == 1290
    assert stream.ended


def test_a_failed_stream_ends_with_an_error_chunk() -> None:
    stream = ChunkStream("req_x", "m", usage=False)
    failed = {
        "type": "response.failed",
        "response": {"error": {"code": "server_error", "message": "boom"}},
    }
    chunks = _chunks(stream.feed(_sse({"type": "response.created", "response": {}}, failed)))
    assert chunks[-1] == {
        "error": {"message": "boom", "type": "server_error", "code": "server_error", "param": None}
    }
    assert stream.feed(_sse({"type": "response.output_text.delta", "delta": "late"})) == b""


def test_without_include_usage_the_stream_has_no_usage_chunk() -> None:
    stream = ChunkStream("req_x", "m", usage=False)
    chunks = _chunks(stream.feed(_sse({"type": "response.completed", "response": _response()})))
    assert chunks[-1] == b"[DONE]"
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"
    assert len(chunks) == 2


def test_malformed_upstream_events_do_not_break_the_stream() -> None:
    stream = ChunkStream("req_x", "m", usage=True)
    odd = _sse(
        {"type": "response.created", "response": "not an object"},
        {"type": "response.output_item.done", "item": ["not", "an", "object"]},
        {"type": "response.completed", "response": {"created_at": "soon", "usage": {"x": "y"}}},
    )
    chunks = _chunks(stream.feed(odd + b"data: {not json\n\n"))
    assert chunks[-1] == b"[DONE]"
    assert chunks[-2]["usage"]["total_tokens"] == 0
    message = completion({"output": [{"type": "message", "content": "text"}], "usage": 3}, "r", "m")
    assert message["choices"][0]["message"]["content"] is None and message["usage"] is None
