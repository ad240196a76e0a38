"""Failure-injection rules shared by the sinks: first match wins, `times` counts down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rule = dict[str, Any]


class RuleError(ValueError):
    """A rule in a PUT /_sink/rules body is malformed."""


class Rules:
    def __init__(self, normalise: Callable[[Any], Rule]) -> None:
        """`normalise` validates one rule (raising RuleError) and fills its defaults."""
        self._normalise = normalise
        self._rules: list[Rule] = []

    def replace(self, payload: Any) -> str | None:
        """Install a new rule list atomically; returns an error message instead on bad input."""
        if not isinstance(payload, list):
            return "rules must be a JSON list"
        try:
            rules = [self._normalise(item) for item in payload]
        except RuleError as exc:
            return str(exc)
        for rule in rules:
            times = rule.get("times")
            if times is not None and (not isinstance(times, int) or times < 1):
                return "'times' must be null or a positive integer"
        self._rules = rules
        return None

    def snapshot(self) -> list[Rule]:
        return [dict(rule) for rule in self._rules]

    def take(self, matches: Callable[[Rule], bool]) -> Rule | None:
        """Apply the first matching rule, consuming one of its `times`."""
        for index, rule in enumerate(self._rules):
            if not matches(rule):
                continue
            times = rule.get("times")
            if times is not None:
                if times <= 1:
                    del self._rules[index]
                else:
                    rule["times"] = times - 1
            return rule
        return None


def require(rule: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(rule, dict):
        raise RuleError("each rule must be a JSON object")
    value = rule.get(key)
    # bool is an int subclass; a JSON true is never a valid code or count.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RuleError(f"rule field {key!r} is missing or has the wrong type: {rule!r}")
    return value
