"""Load untrusted YAML into plain data, remembering where every key was written.

Run files arrive in pull requests from anyone, so loading must be boring: PyYAML composes the
node graph (no object is ever constructed from a tag), and this module turns nodes into dicts,
lists and scalars itself. That walk is where the guards live: duplicate keys, tags outside
YAML's core schema, alias expansion (billion laughs), nesting depth. It also records the
1-based line and column of each key so errors can point at what the user typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from tuneform.core.errors import TuneformError

try:  # the C composer is several times faster; fall back to pure Python where libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

MAX_BYTES = 1024 * 1024
MAX_ALIAS_EXPANSIONS = 100
MAX_DEPTH = 50
MAX_NODES = 100_000

_CORE = "tag:yaml.org,2002:"
# Plain scalars YAML 1.1 leaves as strings but every user means as numbers (2e-4, 1E5).
_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

Path = tuple[str | int, ...]


class YamlError(TuneformError):
    """Input that is not acceptable YAML; carries a 1-based position when one is known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None, path: Path = ()):
        super().__init__(message)
        self.line = line
        self.column = column
        self.path = path


@dataclass
class Document:
    """Plain data plus the position of each key (mapping entries) or item (sequence entries)."""

    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path) -> tuple[int | None, int | None]:
        """Position of the deepest written part of `path` (a missing key points at its parent)."""
        for end in range(len(path), 0, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos:
                return pos
        return (1, 1) if self.data is not None else (None, None)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self) -> None:
        self.positions: dict[Path, tuple[int, int]] = {}
        self.seen: set[int] = set()
        self.expansions = 0
        self.nodes = 0
        self._scalars = yaml.constructor.SafeConstructor()
        # Where the outermost alias being expanded is used. An alias node is its anchor's node,
        # so its own position is the anchor's; errors inside an expansion point at the use.
        self._alias_use: tuple[int, int] | None = None

    def build(self, node: yaml.Node, path: Path, depth: int, used_at: tuple[int, int] | None = None) -> Any:
        """`used_at`: where the parent refers to this node (its key, or its sequence)."""
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise YamlError(f"nesting deeper than {MAX_DEPTH} levels", *(self._alias_use or _pos(node)), path)
        if self.nodes > MAX_NODES:
            raise YamlError(f"more than {MAX_NODES} values in one file", *(self._alias_use or _pos(node)), path)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in self.seen:
                self.expansions += 1
                if self.expansions > MAX_ALIAS_EXPANSIONS:
                    raise YamlError(
                        f"more than {MAX_ALIAS_EXPANSIONS} alias expansions (*name): write the values out",
                        *(self._alias_use or used_at or _pos(node)),
                        path,
                    )
                if self._alias_use is None:
                    self._alias_use = used_at or _pos(node)
                    try:
                        return self._collection(node, path, depth)
                    finally:
                        self._alias_use = None
            self.seen.add(id(node))
        return self._collection(node, path, depth)

    def _collection(self, node: yaml.Node, path: Path, depth: int) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, "seq", path)
            items = []
            for i, child in enumerate(node.value):
                self.positions.setdefault(path + (i,), _pos(child))
                items.append(self.build(child, path + (i,), depth + 1, _pos(node)))
            return items
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        self._check_tag(node, "map", path)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                raise YamlError("merge keys ('<<') are not supported: write the keys out", *_pos(key_node), path)
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("a key must be a plain word, not a list or mapping", *_pos(key_node), path)
            key = self._scalar(key_node, path)
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                first = self.positions.get(path + (key,), (None, None))[0]
                raise YamlError(
                    f"duplicate key '{key}' (first set on line {first}): keep one",
                    *_pos(key_node),
                    path + (key,),
                )
            self.positions[path + (key,)] = _pos(key_node)
            out[key] = self.build(value_node, path + (key,), depth + 1, _pos(key_node))
        return out

    def _check_tag(self, node: yaml.Node, kind: str, path: Path) -> None:
        if node.tag != _CORE + kind:
            raise _bad_tag(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        tag = node.tag
        if tag == _CORE + "str":
            if not node.style and _EXP_FLOAT.fullmatch(node.value):  # plain: None in PyYAML, "" in libyaml
                return float(node.value)
            return node.value
        if tag == _CORE + "timestamp":  # a date-looking revision or name stays what was typed
            return node.value
        if tag in (_CORE + "null", _CORE + "bool", _CORE + "int", _CORE + "float"):
            try:
                return self._scalars.yaml_constructors[tag](self._scalars, node)
            except (ValueError, KeyError, TypeError, IndexError):  # an explicit tag on a value that is not one: !!int hello
                name = tag[len(_CORE) :]
                raise YamlError(
                    f"'{node.value}' is not a valid {name} (tag !!{name}): remove the tag or fix the value", *_pos(node), path
                ) from None
        raise _bad_tag(node, path)


def _bad_tag(node: yaml.Node, path: Path) -> YamlError:
    shown = "!!" + node.tag[len(_CORE) :] if node.tag.startswith(_CORE) else node.tag
    return YamlError(
        f"YAML tag '{shown}' is not allowed in a run file (nothing is ever constructed from tags): remove it", *_pos(node), path
    )


def _line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def load(text: str | bytes) -> Document:
    """Parse one YAML document from untrusted text. Raises YamlError with a position."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise YamlError(f"file is {len(text):,} bytes, over the {MAX_BYTES:,}-byte limit for a run file")
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = raw[: exc.start]
            line_start = before.rfind(b"\n") + 1
            column = len(before[line_start:].decode("utf-8", errors="replace")) + 1
            raise YamlError(
                f"file is not UTF-8 text (byte {exc.start}, 0x{raw[exc.start]:02x}): save it as UTF-8",
                before.count(b"\n") + 1,
                column,
            ) from None
    else:
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no file on disk holds one
            raise YamlError(f"text is not valid Unicode (character {exc.start}): save it as UTF-8", *_line_col(text, exc.start)) from None
        if len(encoded) > MAX_BYTES:
            raise YamlError(f"file is over the {MAX_BYTES:,}-byte limit for a run file")
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc):
            problem = "more than one YAML document ('---'): a run file holds one"
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise YamlError(f"invalid YAML: {problem}", line, col) from None
    except yaml.reader.ReaderError as exc:  # a control character; libyaml counts UTF-8 bytes
        offset = (
            len(text.encode("utf-8")[: exc.position].decode("utf-8", errors="ignore")) if _Loader is not yaml.SafeLoader else exc.position
        )
        char = text[offset] if offset < len(text) else ""
        raise YamlError(
            f"invalid YAML: {exc.reason} (character {char!r}): remove it, or write it as an escape in a double-quoted string",
            *_line_col(text, offset),
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {str(exc).strip()}") from None
    except RecursionError:
        raise YamlError(f"nesting deeper than {MAX_DEPTH} levels") from None
    if node is None:
        return Document(None)
    builder = _Builder()
    data = builder.build(node, (), 0)
    return Document(data, builder.positions)
