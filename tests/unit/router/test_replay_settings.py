"""The replay selects with the router's default settings (scores aside): its own copy of them,
since the shared package cannot import the router's, must not drift from them."""

from __future__ import annotations

from dataclasses import fields

from codexpool_router.config import Settings
from codexpool_shared.replay import ReplaySettings


def test_replay_settings_are_the_routers_defaults_but_the_health_threshold() -> None:
    replay = ReplaySettings()
    for field in fields(ReplaySettings):
        if field.name == "health_threshold":  # a replay has no scores: nothing is filtered
            assert replay.health_threshold == 0.0
            continue
        assert getattr(replay, field.name) == Settings.model_fields[field.name].default, field.name
