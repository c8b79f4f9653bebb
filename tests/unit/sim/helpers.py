from __future__ import annotations

import json
from typing import Any

from codexpool_sim.accounts import Account


def codex_headers(account: Account, token: str | None = None) -> dict[str, str]:
    """The ChatGPT-mode headers of reference §3.2/§13."""
    session = "019e271b-4023-7081-be3e-7a69d97138a2"
    return {
        "authorization": f"Bearer {token or account.tokens.access_token}",
        "chatgpt-account-id": account.account_id,
        "accept": "text/event-stream",
        "content-type": "application/json",
        "originator": "codex_exec",
        "user-agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.169.0)",
        "version": "0.169.0",
        "session-id": session,
        "thread-id": session,
        "x-client-request-id": session,
        "x-codex-window-id": f"{session}:0",
        "x-codex-beta-features": "terminal_resize_reflow",
        "x-codex-turn-metadata": '{"session_id":"' + session + '"}',
    }


def codex_body(**overrides: Any) -> dict[str, Any]:
    """What Codex CLI 0.169 sends (§13): no ``instructions``, the prompt as developer input."""
    body: dict[str, Any] = {
        "model": "gpt-5-codex",
        "stream": True,
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "be brief"}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}],
            },
        ],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "019e271b-4023-7081-be3e-7a69d97138a2",
        "client_metadata": {"session_id": "019e271b-4023-7081-be3e-7a69d97138a2"},
    }
    body.update(overrides)
    return body


def sse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            event = json.loads(lines["data"])
            assert event["type"] == lines["event"]
            events.append(event)
    return events
