"""Limits on parsed YAML, TOML and JSON: size, nesting depth and (aliases expanded) node count.

Config files, `params.yaml`, DVC files, pins and journals can come from any revision or any
contributor. A YAML "billion laughs" (aliases of aliases) loads in microseconds and then
makes anything that walks it (flattening params for a pin) run for ever; deep nesting makes
the parsers and every recursive walker raise RecursionError. Each reader parses through
`parse_limited`, or checks what it parsed with `check_shape`: over a limit is one
`UsageError` naming the file.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from bisector.core.errors import UsageError

MAX_BYTES = 16 * 1024 * 1024  # a config, params or DVC file; a journal line
MAX_DEPTH = 64  # mappings and lists inside each other
MAX_NODES = 1_000_000  # values, counting each alias as often as it is reached

T = TypeVar("T")


def shape_problem(value: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> str | None:
    """What is wrong with the shape of `value` ("nested deeper than 64"), or None. Iterative:
    it walks aliases as often as they are reached and stops at the first limit."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            return f"more than {max_nodes} values (aliases expanded)"
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= max_depth:
            return f"nested deeper than {max_depth} levels"
        stack.extend((c, depth + 1) for c in children)
    return None


def check_shape(value: T, where: str) -> T:
    """`value`, or one UsageError naming `where` when it is too deep or too large."""
    problem = shape_problem(value)
    if problem is not None:
        raise UsageError(f"{where}: {problem}: refused (is it a hostile or generated file?)")
    return value


def parse_limited(parse: Callable[[str], Any], text: str, where: str, *, max_bytes: int = MAX_BYTES) -> Any:
    """`parse(text)`, with the size, depth and node limits; over one is one UsageError.
    The parser's own errors propagate unchanged (each reader words them)."""
    if len(text) > max_bytes:
        raise UsageError(f"{where}: larger than {max_bytes // (1024 * 1024)} MiB: refused")
    try:
        value = parse(text)
    except RecursionError:
        raise UsageError(f"{where}: nested too deeply to read: refused") from None
    return check_shape(value, where)
