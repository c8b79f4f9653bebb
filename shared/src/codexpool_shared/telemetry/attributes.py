"""The registry of Codex Pool's own span and log attributes (docs/STYLE.md point 15).

Every custom attribute carries the ``codexpool.`` prefix and is named here, once (``ALL``).
Below them, the standard semantic-convention attributes the router sets by hand on its spans
(GenAI, OpenAI and HTTP client), so that their names are spelled once too; attributes that
instrumentations set (``http.*`` of server spans, ``messaging.*``) are not repeated.
Values are opaque ids, model names, counts and small enums, never tokens, emails, request
bodies or query strings.
"""

from __future__ import annotations

from typing import Final

PROVIDER: Final = "codexpool.provider"
"""The provider (account) name an attempt or request was served by."""

AGENT_ID: Final = "codexpool.agent_id"
"""The agent whose key authenticated the request."""

ATTEMPT: Final = "codexpool.attempt"
"""1-based number of the upstream attempt within one request."""

OUTCOME: Final = "codexpool.outcome"
"""Outcome class of an attempt or request (success, quota, auth, server_error, ...)."""

STRATEGY: Final = "codexpool.strategy"
"""The pool's routing strategy: round-robin, primary-first or quota-aware."""

REQUEST_ID: Final = "codexpool.request_id"
"""The ``x-request-id`` answered to the client."""

FALLBACK: Final = "codexpool.fallback"
"""Whether this attempt follows a failed attempt on another provider."""

ALL: Final = frozenset({PROVIDER, AGENT_ID, ATTEMPT, OUTCOME, STRATEGY, REQUEST_ID, FALLBACK})
"""Every registered attribute name."""


# GenAI semantic conventions (development status): the router is a client of the OpenAI
# Responses API, so its spans follow the OpenAI inference conventions. Content capture is off:
# no prompt or completion is ever recorded.

GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
"""The GenAI provider; ``openai`` for the Codex backend (the OpenAI conventions require it)."""

GEN_AI_SYSTEM: Final = "gen_ai.system"
"""The deprecated name of ``gen_ai.provider.name``, still what many backends key on."""

GEN_AI_OPENAI: Final = "openai"
"""The value of ``gen_ai.provider.name`` and ``gen_ai.system``."""

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
"""The operation; the Responses API maps to ``chat``."""

GEN_AI_CHAT: Final = "chat"
"""The value of ``gen_ai.operation.name`` for a Responses API call."""

OPENAI_API_TYPE: Final = "openai.api.type"
"""Which OpenAI API surface was called: ``responses``."""

OPENAI_RESPONSES: Final = "responses"
"""The value of ``openai.api.type``."""

GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
"""The model the client asked for."""

GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
"""The ``id`` of the Response, from ``response.completed``."""

GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
"""The model that answered, from ``response.completed``."""

GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
"""Input tokens the upstream reported in ``response.completed``."""

GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
"""Output tokens the upstream reported in ``response.completed``."""

# HTTP client semantic conventions (stable), on each upstream attempt's CLIENT span.

HTTP_REQUEST_METHOD: Final = "http.request.method"
"""The attempt's HTTP method."""

HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
"""The upstream's status code, when it answered."""

SERVER_ADDRESS: Final = "server.address"
"""The upstream's host name."""

SERVER_PORT: Final = "server.port"
"""The upstream's port (the scheme's default when the URL names none)."""

URL_FULL: Final = "url.full"
"""The upstream URL without credentials, query string or fragment."""
