"""The template language of broadcast content: sandboxed jinja2 with a closed set of variables.

It is part of the public contract (the platform's editor offers the variables), so it is defined
here once: targeting validates content when a broadcast is created or a template saved, the
composer renders it.
"""

import functools
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from .variables import FIELDS, OPEN_FIELDS


@dataclass(frozen=True)
class TemplateProblem:
    """Why a template is refused: the line (1-based, when known) and a human sentence."""

    line: int | None
    message: str


class Missing(StrictUndefined):
    """A known variable this recipient has no value for.

    Printing it fails the recipient, naming the variable; testing it is allowed, so a template
    can guard an optional value with `{% if contract.visit_at %}`."""

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


@functools.cache
def missing(name: str, why: str = "") -> Missing:
    """Shared per name: a message has a dozen absent values, and they never change."""
    return Missing(hint=f"no value for {name}{why}")


def environment(*, html: bool) -> SandboxedEnvironment:
    """HTML templates autoescape every value; a value a recipient lacks is an error, not blank."""
    return SandboxedEnvironment(
        autoescape=html, undefined=StrictUndefined, keep_trailing_newline=True
    )


_CHECKER = environment(html=False)


def _field_of(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


# jinja2's own names: `loop` inside a for, and the globals (range, namespace, ...).
_BUILT_IN = frozenset({"loop", *_CHECKER.globals})


def _unknown_names(parsed: nodes.Template) -> TemplateProblem | None:
    assigned = {n.name for n in parsed.find_all(nodes.Name) if n.ctx in ("store", "param")}
    known = assigned | FIELDS.keys() | _BUILT_IN
    for name in parsed.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in known:
            return TemplateProblem(name.lineno, f"unknown variable '{name.name}'")
    accesses: list[nodes.Getattr | nodes.Getitem] = [
        *parsed.find_all(nodes.Getattr),
        *parsed.find_all(nodes.Getitem),
    ]
    accesses.sort(key=lambda access: access.lineno)
    accessed = {id(access.node) for access in accesses}
    for name in parsed.find_all(nodes.Name):
        if FIELDS.get(name.name) and id(name) not in accessed and name.name not in assigned:
            example = f"{name.name}.{min(FIELDS[name.name])}"
            return TemplateProblem(name.lineno, f"use a field of '{name.name}', e.g. {example}")
    for access in accesses:
        target = access.node
        if not isinstance(target, nodes.Name) or target.name not in FIELDS:
            continue
        field = _field_of(access)
        if (target.name, field) in OPEN_FIELDS:
            continue
        if field is None or field not in FIELDS[target.name]:
            shown = f"{target.name}.{field}" if field else target.name
            return TemplateProblem(access.lineno, f"unknown variable '{shown}'")
    return None


def check(source: str) -> TemplateProblem | None:
    """None when `source` parses and uses only catalogued variables."""
    try:
        parsed = _CHECKER.parse(source)
    except TemplateSyntaxError as error:
        return TemplateProblem(error.lineno, f"syntax error: {error.message}")
    return _unknown_names(parsed)
