"""The template language of broadcast content: sandboxed jinja2 with a closed set of variables.

It is part of the public contract (the platform's editor offers the variables), so it is defined
here once: targeting validates content when a broadcast is created or a template saved, the
composer renders it.
"""

import functools
import time
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
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


# What one message's template may cost. A tenant's template runs in every consumer that renders
# it: however absurd, it must fail its own message, not stall the composer for everyone.
MAX_SEQUENCE = 100_000  # characters or items a `*` may build
MAX_EXPONENT = 100  # for `**`
MAX_RANGE = 10_000  # items a `range()` may yield
CPU_BUDGET_SECONDS = 0.05  # CPU time one render may take (a busy machine does not count)

# The clock is read every so many operations: reading it costs about as much as an attribute
# access, and a render makes dozens of them.
_CHECK_EVERY = 32


@dataclass
class _Budget:
    deadline: float
    countdown: int = _CHECK_EVERY


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


class TemplateTooCostly(SecurityError):
    """A template went over a bound: a sequence, a power, a range, or its CPU time."""


class budget:
    """Renders inside fail with TemplateTooCostly once they used `seconds` of CPU time.

    Counted at every call, attribute or item access and operator a template makes, so a loop
    costs at most a few passes of its innermost body past the budget. A class rather than a
    contextlib generator: it is entered for every message (1.4 µs instead of 2.3 µs per
    entry and exit, timeit on 2026-12-02)."""

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float = CPU_BUDGET_SECONDS) -> None:
        self._seconds = seconds

    def __enter__(self) -> None:
        self._token = _budget.set(_Budget(time.thread_time() + self._seconds))

    def __exit__(self, *exc_info: object) -> None:
        _budget.reset(self._token)


def _in_budget() -> None:
    spent = _budget.get()
    if spent is None:
        return
    spent.countdown -= 1
    if spent.countdown > 0:
        return
    spent.countdown = _CHECK_EVERY
    if time.thread_time() > spent.deadline:
        raise TemplateTooCostly(f"the template took more than {CPU_BUDGET_SECONDS:g} s of CPU")


def _bounded_range(*args: int) -> range:
    found = range(*args)
    if len(found) > MAX_RANGE:
        raise TemplateTooCostly(f"range() of more than {MAX_RANGE} items")
    return found


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


_FIELDS_ONLY: set[type] = set()
_Type = TypeVar("_Type", bound=type)


def fields_only(cls: _Type) -> _Type:
    """Registers a mapping type whose items a template reads as attributes (`contract.number`)
    and which has no public attribute of its own (none whose name does not start with "_")."""
    _FIELDS_ONLY.add(cls)
    return cls


class BoundedSandbox(SandboxedEnvironment):
    """jinja2's sandbox, with bounds on what a template may build and how long it may run.

    Intercepting `*` and `**` also keeps the compiler from folding them into constants, so
    `{{ 10 ** 5000 }}` or `{{ 'x' * 10 ** 8 }}` cannot stall even the compilation."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # No cycler, joiner, lipsum, namespace or dict: nothing a message needs, and each is
        # one more object to reach from a template.
        self.globals = {"range": _bounded_range}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _in_budget()
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise TemplateTooCostly(f"a power above {MAX_EXPONENT}")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                size = _length(sequence)
                if size is not None and isinstance(times, int) and size * times > MAX_SEQUENCE:
                    raise TemplateTooCostly(f"a repetition of more than {MAX_SEQUENCE} items")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _in_budget()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _in_budget()
        # jinja2 looks for an attribute first, and only when there is none (an exception raised
        # and caught) for the item: for a type whose only public names are its items, that
        # attribute is never there, so the item is read at once. Names starting with "_" take
        # jinja2's path, which refuses them as unsafe.
        if type(obj) in _FIELDS_ONLY and not attribute.startswith("_"):
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # A dict rather than jinja2's ChainMap over the environment's globals, which every
        # render iterates twice: ours are set once, in __init__, before any template exists.
        return {**self.globals, **(d or {})}

    def getitem(self, obj: Any, argument: Any) -> Any:
        _in_budget()
        return super().getitem(obj, argument)


def environment(*, html: bool) -> SandboxedEnvironment:
    """HTML templates autoescape every value; a value a recipient lacks is an error, not blank."""
    return BoundedSandbox(autoescape=html, undefined=StrictUndefined, keep_trailing_newline=True)


_CHECKER = environment(html=False)
# Lenient about missing values: a trial render looks for what fails whatever the contract.
_TRIAL = BoundedSandbox(keep_trailing_newline=True)


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


def _forbidden(parsed: nodes.Template) -> TemplateProblem | None:
    for other in parsed.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        return TemplateProblem(other.lineno, "a template cannot include, import or extend another")
    for access in parsed.find_all(nodes.Getattr):
        if access.attr.startswith("_"):
            return TemplateProblem(access.lineno, f"'{access.attr}' cannot be used in a template")
    return None


class _Sample:
    """Any value a message could hold, for a trial render: every attribute, item, operation
    and call gives a sample again; it prints as a word, iterates as nothing, compares false."""

    def __getattr__(self, name: str) -> "_Sample":
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> "_Sample":
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> "_Sample":
        return self

    def __str__(self) -> str:
        return "x"

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return True

    def _same(self, *args: Any) -> "_Sample":
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __floordiv__ = __mod__ = __pow__ = __neg__ = _same

    def _false(self, other: Any) -> bool:
        return False

    __lt__ = __le__ = __gt__ = __ge__ = _false


_SAMPLE = _Sample()


def _trial(source: str) -> TemplateProblem | None:
    """Render once on sample values, under the bounds a message has: what exceeds them, or
    cannot render whatever the contract (endless recursion), fails every message
    of a broadcast and is refused now. Errors that depend on a contract's values are not."""
    values = {name: _SAMPLE for name in FIELDS} | {"today": _SAMPLE, "unsubscribe_url": "x"}
    try:
        with budget():
            _TRIAL.from_string(source).render(values)
    except (TemplateTooCostly, RecursionError, MemoryError) as error:
        why = str(error) or type(error).__name__
        return TemplateProblem(None, f"{why} (tried on a sample contract)")
    except Exception:  # noqa: S110 - depends on the values a real contract has: not refused
        pass
    return None


def check(source: str) -> TemplateProblem | None:
    """None when `source` parses, uses only catalogued variables and no private attribute,
    and renders within the bounds on a sample contract."""
    try:
        parsed = _CHECKER.parse(source)
    # RecursionError: nesting a few hundred deep exhausts the parser; MemoryError likewise.
    except (RecursionError, MemoryError):
        return TemplateProblem(None, "the template is nested too deeply")
    except TemplateSyntaxError as error:
        return TemplateProblem(error.lineno, f"syntax error: {error.message}")
    return _forbidden(parsed) or _unknown_names(parsed) or _trial(source)
