"""Error bodies as the real services word them (reference §2.4, §3.3, §5, §10.2)."""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]

_SIGN_IN = "Please try signing in again."
_TOKEN_MESSAGES = {
    "token_expired": f"Provided authentication token is expired. {_SIGN_IN}",
    "token_invalidated": f"Your authentication token has been invalidated. {_SIGN_IN}",
}

_REFRESH_MESSAGES = {
    "refresh_token_reused": "Your refresh token has already been used to generate a new access "
    f"token. {_SIGN_IN}",
    "refresh_token_expired": f"Your refresh token has expired. {_SIGN_IN}",
    "refresh_token_invalidated": f"Your refresh token has been invalidated. {_SIGN_IN}",
}

CLOUDFLARE_HTML = (
    b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    b"<body><h1>Sorry, you have been blocked</h1>"
    b"<h2>You are unable to access chatgpt.com</h2>"
    b"<p>This website is using a security service to protect itself from online attacks.</p>"
    b"<p>Cloudflare Ray ID: 0000000000000000</p></body></html>"
)


def envelope(code: str, message: str, kind: str = "invalid_request_error") -> Body:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def token_error(code: str) -> Body:
    """The 401 of the backend for a dead access token (it carries ``status`` too)."""
    return {**envelope(code, _TOKEN_MESSAGES.get(code, "Unauthorized")), "status": 401}


def refresh_error(code: str) -> Body:
    return envelope(code, _REFRESH_MESSAGES[code])


def detail(message: str) -> Body:
    """The FastAPI-style 400 the Codex backend uses for request validation."""
    return {"detail": message}


def overloaded(code: str | None, message: str | None) -> Body:
    return {
        "error": {
            "type": "service_unavailable_error",
            "code": code or "server_is_overloaded",
            "message": message or "Our servers are currently overloaded. Please try again later.",
        }
    }


def rate_limited(model: str, retry_after_s: int) -> Body:
    return envelope(
        "rate_limit_exceeded",
        f"Rate limit reached for {model}. Please try again in {retry_after_s}s.",
        "rate_limit_exceeded",
    )


def model_not_supported(model: str) -> Body:
    return {
        "error": {
            "type": "invalid_request_error",
            "message": f"The '{model}' model is not supported when using Codex "
            "with a ChatGPT account.",
        }
    }


def account_mismatch() -> Body:
    return envelope("account_mismatch", "The chatgpt-account-id header does not match the token.")
