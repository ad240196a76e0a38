"""Failure-injection rules shared by the sinks: first match wins, `times` counts down.

Rules belong to an owner (a test, say): an owner replaces or clears its own rules and leaves
everybody else's alone, so that two tests never undo each other's failures. The default owner
"" is the operator's (the control API without `owner`)."""

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
        self._owned: dict[str, list[Rule]] = {}

    def replace(self, payload: Any, owner: str = "") -> str | None:
        """Install `owner`'s new rule list atomically; returns an error message instead on bad
        input. An empty list removes the owner."""
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
        if rules:
            self._owned[owner] = rules
        else:
            self._owned.pop(owner, None)
        return None

    def clear(self) -> None:
        self._owned.clear()

    def snapshot(self) -> list[Rule]:
        return [dict(rule) for rules in self._owned.values() for rule in rules]

    def take(self, matches: Callable[[Rule], bool]) -> Rule | None:
        """Apply the first matching rule, consuming one of its `times`."""
        for rules in self._owned.values():
            for index, rule in enumerate(rules):
                if not matches(rule):
                    continue
                times = rule.get("times")
                if times is not None:
                    if times <= 1:
                        del rules[index]
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
