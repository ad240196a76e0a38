"""The components of the local stack, in start order.

To add a component, add one Component to the tuple in `components()`.
"""

from __future__ import annotations

from .component import Component
from .config import SERVICE_PORTS, instances
from .kafka import stack_kafka
from .postgres import postgres
from .services import service
from .sinks import sms_sink, smtp_sink


def components() -> dict[str, Component]:
    """All components, in start order. Built on each call so that the BROADCAST_* variables
    are read when used."""
    table = (
        postgres(),
        *stack_kafka(),
        smtp_sink(),
        sms_sink(),
        *(service(name, k) for k in range(1, instances() + 1) for name in SERVICE_PORTS),
    )
    return {component.name: component for component in table}
