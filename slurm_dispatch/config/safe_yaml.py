"""YAML parsing with bounds: nesting depth, expanded size (alias bombs), recursive aliases, bad scalars.

Owns ``parse_yaml``. ``yaml.safe_load`` alone has three ways to fail on a hostile file: deep nesting raises
RecursionError, an alias bomb ("billion laughs") loads quickly into shared references but then takes forever
(or all memory) to walk, and a recursive alias builds a structure that contains itself. A scalar can also
raise a plain ValueError (an integer of 5,000 digits, `!!timestamp 2001-02-30`). Here the composer counts every
node as it would be after alias expansion, refuses past ``MAX_NODES`` or ``MAX_DEPTH`` and refuses an alias
to a node still being composed; scalar conversion errors become YAML errors with their line. Every failure is
a ``yaml.YAMLError`` with a mark. A key given twice in one map is not an error (the last wins, as in Arvados's
loader) but is reported to the caller, who warns. Pure (takes the text).

When PyYAML has libyaml, its C parser produces the events (fast) and the Python composer below builds the
nodes, so the bounds apply either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from slurm_dispatch.config.schema import key_text

MAX_DEPTH = 50
"""Deepest nesting accepted; the deepest key the dispatcher reads is 7 levels down
(``Clusters.<id>.Services.DispatchSLURM.InternalURLs.<url>.ListenURL``)."""
MAX_NODES = 100_000
"""Most nodes a document may have once its aliases are expanded. A full cluster config (every Arvados
default written out, hundreds of instance types) has a few thousand; a billion-laughs document has 10**9."""

class _BoundedComposer(Composer):
    """The composer (and construct hook) of both loaders: MAX_DEPTH, MAX_NODES, no recursive aliases."""

    _depth = 0
    _expanded = 0
    _sizes: dict[int, int]
    duplicates: list[tuple[str, int, int]]
    """Keys given twice in one map, found once the document is composed: (dotted path, first line, later line)."""

    if TYPE_CHECKING:  # provided by the parser class it is mixed with
        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Any: ...

    def _count(self, nodes: int, mark: Any) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            what = "expands to" if self.anchors else "has"
            hint = " (a YAML alias bomb?)" if self.anchors else ""
            raise ComposerError(None, None, f"the document {what} more than {MAX_NODES} nodes{hint}", mark)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if not hasattr(self, "_sizes"):
            self._sizes = {}
        if self.check_event(AliasEvent):
            event = self.peek_event()
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:
                size = self._sizes.get(id(anchored))
                if size is None:
                    raise ComposerError(None, None, f"the alias *{event.anchor} is recursive (it refers to a "
                                        "node that contains it)", event.start_mark)
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        before = self._expanded
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._count(1, node.start_mark)
            self._sizes[id(node)] = self._expanded - before
        return node

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        self.duplicates = []
        if node is not None:
            self._find_duplicates(node, "", set())
        return node

    def _find_duplicates(self, node: Node, path: str, seen: set[int]) -> None:
        """Appends ``(key path, first line, later line)`` to ``self.duplicates`` for each key given twice in one
        map. Each node is walked once, however many aliases refer to it; depth is bounded by MAX_DEPTH."""
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self._find_duplicates(item, f"{path}[{i}]", seen)
        elif isinstance(node, MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    name = key_text(self.construct_object(key))  # as Go names it: y and true are one key
                    here = f"{path}.{key.value}" if path else key.value
                    line = key.start_mark.line + 1
                    if name in lines:
                        self.duplicates.append((here, lines[name], line))
                    lines[name] = line
                    self._find_duplicates(value, here, seen)
                else:
                    self._find_duplicates(value, f"{path}.?" if path else "?", seen)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except (ValueError, OverflowError, TypeError) as exc:
            text = str(exc).split(";")[0].strip()
            detail = text.splitlines()[0][:100] if text else type(exc).__name__
            raise ConstructorError(None, None, f"cannot convert this value: {detail}", node.start_mark) from None


_GO_BOOL = re.compile(r"\A(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)\Z")
_GO_FLOAT = re.compile(r"\A(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*\.[0-9_]*)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")
_GO_INT = re.compile(r"\A(?:[-+]?0b_*[0-1][0-1_]*|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x_*[0-9a-fA-F][0-9a-fA-F_]*)\Z")


class _GoResolver(Resolver):
    """YAML 1.1's implicit types as Arvados's loader reads them (go-yaml v2 under ghodss/yaml: resolve.go), where
    PyYAML differs: ``1e9`` is a number (PyYAML wants a dot), ``y``/``n`` are booleans, ``1:30`` is text (PyYAML
    reads base 60), and so are ``2024-01-01`` (a date to PyYAML; Go keeps the text when the value is not a time) and
    a bare ``=``."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level registry, copied
        first: [(tag, regexp) for tag, regexp in resolvers
                if not tag.endswith((":bool", ":float", ":int", ":timestamp", ":value"))]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


for _tag, _regexp, _first in (("tag:yaml.org,2002:bool", _GO_BOOL, "yYnNtTfFoO"),
                              ("tag:yaml.org,2002:int", _GO_INT, "-+0123456789"),
                              ("tag:yaml.org,2002:float", _GO_FLOAT, "-+0123456789.")):
    _GoResolver.add_implicit_resolver(_tag, _regexp, list(_first))


class _GoConstructor(SafeConstructor):
    """SafeConstructor, with go-yaml v2's ``y``/``n`` booleans."""

    bool_values: ClassVar[dict[str, bool]] = {**SafeConstructor.bool_values, "y": True, "n": False}


class _PyLoader(_BoundedComposer, Reader, Scanner, Parser, _GoConstructor, _GoResolver):
    """Pure-Python events (PyYAML without libyaml)."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _GoConstructor.__init__(self)
        _GoResolver.__init__(self)


_LOADER: Callable[[str], Any] = _PyLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_BoundedComposer, CParser, _GoConstructor, _GoResolver):
        """libyaml's parser for the events (about 50 times faster on large scalars)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            _GoConstructor.__init__(self)
            _GoResolver.__init__(self)

    _LOADER = _CLoader


def parse_yaml(text: str, *, duplicates: list[tuple[str, int, int]] | None = None) -> Any:
    """Returns the one YAML document in ``text`` as Python values (SafeLoader's types). Pure.

    A key given twice in one map keeps its last value, as Arvados's loader keeps it (lib/config/load.go: Load, whose
    FIXME notes that it should refuse them); each such key is appended to ``duplicates`` as ``(dotted key path,
    first line, later line)`` so the caller can warn.

    Raises:
        yaml.YAMLError: a syntax error, a tag SafeLoader does not know, more than one document, nesting deeper
            than MAX_DEPTH, more than MAX_NODES nodes after alias expansion, a recursive alias, or a scalar
            that cannot be converted; each with its line and column.
    """
    loader = _LOADER(text)
    try:
        data = loader.get_single_data()
        if duplicates is not None:
            duplicates += getattr(loader, "duplicates", [])
        return data
    finally:
        loader.dispose()
