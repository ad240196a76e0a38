"""The template language of broadcast content: sandboxed jinja2 with a closed set of variables.

It is part of the public contract (the platform's editor offers the variables), so it is defined
here once: targeting validates content when a broadcast is created, the composer renders it.
"""

from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

# Top-level names a template may use. `contract.*` is the snapshot taken when targeted.
VARIABLES = frozenset({"contract"})


@dataclass(frozen=True)
class TemplateProblem:
    """Why a template is refused: the line (1-based, when known) and a human sentence."""

    line: int | None
    message: str


def environment(*, html: bool) -> SandboxedEnvironment:
    """HTML templates autoescape every value; a value a recipient lacks is an error, not blank."""
    return SandboxedEnvironment(
        autoescape=html, undefined=StrictUndefined, keep_trailing_newline=True
    )


_CHECKER = environment(html=False)


def check(source: str) -> TemplateProblem | None:
    """None when `source` parses and uses only known variables."""
    try:
        parsed = _CHECKER.parse(source)
    except TemplateSyntaxError as error:
        return TemplateProblem(error.lineno, f"syntax error: {error.message}")
    unknown = sorted(meta.find_undeclared_variables(parsed) - VARIABLES)
    if unknown:
        return TemplateProblem(None, f"unknown variable '{unknown[0]}'")
    return None
