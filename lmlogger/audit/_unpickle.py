"""A pickle reader for untrusted checkpoints: plain values only, every cost budgeted, nothing shared.

``pickle.Unpickler`` trusts the lengths and indices a file claims (a 30-byte pickle can make it allocate a
gigabyte for a ``bytearray`` or a memo table) and inserts dict keys whatever their hashes (keys chosen to
collide make a dict quadratic). This is a small pickle machine of its own, in pure Python, that

* builds plain builtins only (``dict``, ``list``, ``tuple``, ``set``, ``str``, ``bytes``, numbers, ``None``);
  every other global (torch's rebuild functions, a class of the training code, ``os.system``) is an inert
  :class:`Opaque` token that is never imported, called or given attributes, and storages are never read;
* checks every length claim against the bytes that are left before it allocates, and caps the values
  built, the memo, the nesting of marks and the entries of one dict (the ``MAX_*`` constants below);
* builds dicts and sets from keys whose hashes an input cannot make collide: ``str`` and ``bytes``
  (randomised hashes), ``None``, ``bool``, ``int`` below 2**61 - 1; any other key becomes an
  :class:`Opaque` compared by identity;
* keeps no state across files: the opcode table is a tuple, the globals are tokens made per load, and no
  value read reaches a module-level object (there is no ``copyreg`` extension registry lookup either).

Exceeding a limit or a malformed pickle raises :class:`UnpickleError` with one line naming it.
"""

from __future__ import annotations

import struct
from types import MappingProxyType
from typing import Any

#: Values built (objects and references pushed), in all: a real ``data.pkl`` holds a few hundred thousand.
MAX_VALUES = 5_000_000
#: Memo entries (``PUT``/``MEMOIZE``); a memo index must be below 2**32.
MAX_MEMO = 5_000_000
#: Open ``MARK``s at once: the nesting of containers being built.
MAX_NESTING = 100
#: Entries of one dict or set.
MAX_DICT_ENTRIES = 1_000_000

_P61 = (1 << 61) - 1


class UnpickleError(ValueError):
    """A pickle that is malformed or exceeds one of the reader's limits; the message names which."""


class Opaque:
    """Stands for an object of a class the reader does not load (a tensor, a torch or user type): inert.

    ``qualname`` is the global it came from (``torch._utils._rebuild_tensor_v2``) or what it replaces
    (``tuple key``). Nothing can set an attribute on it after it is made.
    """

    __slots__ = ("qualname",)

    def __init__(self, qualname: str) -> None:
        object.__setattr__(self, "qualname", qualname)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Opaque is read-only")

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


# The globals built as what they name; the value is the kind of constructor.
_BUILTINS = (
    *("dict", "list", "tuple", "set", "frozenset"),
    *("int", "float", "complex", "bool", "str", "bytes", "bytearray"),
)
_CONSTRUCTORS = MappingProxyType(
    {
        **{f"{module}.{name}": name for module in ("builtins", "__builtin__") for name in _BUILTINS},
        "collections.OrderedDict": "dict",
        "_codecs.encode": "encode",
    }
)
_NUMBERS = (int, float, bool)


def safe_key(key: Any) -> Any:
    """``key`` itself where an input cannot make its hash collide with other keys; an :class:`Opaque` else."""
    kind = type(key)
    if kind is str or kind is bytes or kind is bool or key is None or kind is Opaque:
        return key
    if kind is int and -_P61 < key < _P61:
        return key
    return Opaque(f"{kind.__name__} key")


class _Machine:
    """One load of one pickle (see the module docstring)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.values = 0
        self.proto = 0

    # -- reading ----------------------------------------------------------------------------------------
    def error(self, what: str) -> UnpickleError:
        return UnpickleError(f"data.pkl at byte {self.pos}: {what}")

    def take(self, n: int) -> bytes:
        left = len(self.data) - self.pos
        if n < 0 or n > left:
            raise self.error(f"a length of {n} bytes is claimed but only {left} remain")
        start = self.pos
        self.pos = start + n
        return self.data[start : self.pos]

    def unpack(self, fmt: str, size: int) -> Any:
        return struct.unpack(fmt, self.take(size))[0]

    def line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise self.error("a text argument has no end of line")
        text = self.data[self.pos : end]
        self.pos = end + 1
        return text

    # -- the stack ---------------------------------------------------------------------------------------
    def push(self, value: Any) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.error(f"more than {MAX_VALUES:,} values (the reader's limit MAX_VALUES)")
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise self.error("an opcode finds too few values on the stack")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.error("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise self.error("an opcode finds too few values on the stack")
        return self.stack[-1]

    def put(self, index: int) -> None:
        if not 0 <= index < 1 << 32:
            raise self.error(f"memo index {index} is out of range")
        if index not in self.memo and len(self.memo) >= MAX_MEMO:
            raise self.error(f"more than {MAX_MEMO:,} memo entries (the reader's limit MAX_MEMO)")
        self.memo[index] = self.top()

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise self.error(f"memo index {index} was never stored")
        self.push(self.memo[index])

    # -- containers --------------------------------------------------------------------------------------
    def setitems(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise self.error("SETITEMS with an odd number of values")
        if isinstance(target, Opaque):
            return
        if type(target) is not dict:
            raise self.error(f"SETITEM on a {type(target).__name__}")
        for i in range(0, len(items), 2):
            key = safe_key(items[i])
            if len(target) >= MAX_DICT_ENTRIES and key not in target:
                raise self.error(
                    f"a dict of more than {MAX_DICT_ENTRIES:,} entries (the reader's limit MAX_DICT_ENTRIES)"
                )
            target[key] = items[i + 1]

    def additems(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, Opaque):
            return
        if type(target) is not set:
            raise self.error(f"ADDITEMS on a {type(target).__name__}")
        for item in items:
            if len(target) >= MAX_DICT_ENTRIES:
                raise self.error(f"a set of more than {MAX_DICT_ENTRIES:,} items (the reader's limit MAX_DICT_ENTRIES)")
            target.add(safe_key(item))

    def appends(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, Opaque):
            return
        if type(target) is not list:
            raise self.error(f"APPEND on a {type(target).__name__}")
        target.extend(items)

    def new_set(self, items: list[Any], frozen: bool) -> Any:
        made: set[Any] = set()
        self.additems(made, items)
        return frozenset(made) if frozen else made

    def new_dict(self, source: Any) -> dict[Any, Any]:
        made: dict[Any, Any] = {}
        if isinstance(source, dict):
            pairs = list(source.items())
        elif isinstance(source, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in source):
            pairs = list(source)
        else:
            raise self.error(f"dict() of a {type(source).__name__}")
        self.setitems(made, [x for pair in pairs for x in pair])
        return made

    # -- calls -------------------------------------------------------------------------------------------
    def construct(self, func: Any, args: Any) -> Any:
        """What ``func(*args)`` makes: a plain value for the constructors above with plain arguments,
        an inert :class:`Opaque` for anything else (never a call of what the file names)."""
        if not isinstance(func, Opaque):
            raise self.error(f"a call of a {type(func).__name__}")
        kind = _CONSTRUCTORS.get(func.qualname)
        if kind is None or not isinstance(args, tuple):
            return Opaque(func.qualname)
        if not args:
            empty = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset}.get(kind)
            return empty() if empty is not None else Opaque(func.qualname)
        first = args[0]
        if kind == "dict" and len(args) == 1:
            return self.new_dict(first)
        if kind in ("list", "tuple", "set", "frozenset") and len(args) == 1:
            if not isinstance(first, (list, tuple, set, frozenset, dict)):
                return Opaque(func.qualname)
            if kind == "list":
                return list(first)
            if kind == "tuple":
                return tuple(first)
            return self.new_set(list(first), frozen=kind == "frozenset")
        if kind == "encode":  # how protocol 2 writes bytes: _codecs.encode(text, "latin1")
            if len(args) == 2 and isinstance(first, str) and args[1] in ("latin1", "latin-1"):
                return first.encode("latin1")
            return Opaque(func.qualname)
        if kind in ("bytes", "bytearray"):
            if len(args) == 2 and isinstance(first, str) and args[1] in ("latin1", "latin-1"):
                first = first.encode("latin1")  # how protocols 0-2 write a bytearray
            if len(args) <= 2 and isinstance(first, (bytes, bytearray)):
                return bytes(first) if kind == "bytes" else bytearray(first)
            return Opaque(func.qualname)  # bytes(n) would allocate n bytes on the file's word: never
        if kind in ("int", "float", "complex", "bool") and all(isinstance(a, (*_NUMBERS, str)) for a in args):
            if any(isinstance(a, str) and len(a) > 4300 for a in args):
                raise self.error(f"a number written with more than 4300 characters in {func.qualname}()")
            maker = {"int": int, "float": float, "complex": complex, "bool": bool}[kind]
            try:
                return maker(*args)
            except (TypeError, ValueError, OverflowError) as err:
                raise self.error(f"{func.qualname}{args!r:.80}: {err}") from None
        if kind == "str" and len(args) == 1 and isinstance(first, (str, *_NUMBERS)):
            if isinstance(first, int) and first.bit_length() > 4096:
                raise self.error("str() of an integer of more than 4096 bits")
            return str(first)
        return Opaque(func.qualname)

    def find_class(self, module: str, name: str) -> Opaque:
        return Opaque(f"{module}.{name}")

    def stand_in(self, what: str) -> Opaque:
        return Opaque(what)

    # -- the loop ----------------------------------------------------------------------------------------
    def load(self) -> Any:
        from lmlogger.audit._opcodes import OPCODES

        data = self.data
        size = len(data)
        while self.pos < size:
            code = data[self.pos]
            self.pos += 1
            handler = OPCODES[code]
            if handler is None:
                self.pos -= 1
                raise self.error(f"unknown opcode 0x{code:02x}")
            if handler(self):
                return self.pop()
            if len(self.marks) > MAX_NESTING:
                raise self.error(f"containers nested more than {MAX_NESTING} deep (the reader's limit MAX_NESTING)")
        raise self.error("the pickle ends before its STOP opcode")


def loads(data: bytes) -> Any:
    """The value ``data`` pickles, built as described in the module docstring.

    Raises:
        UnpickleError: malformed, or over a limit (the message names it).
    """
    try:
        return _Machine(bytes(data)).load()
    except RecursionError:
        raise UnpickleError("data.pkl: values nested too deeply") from None
    except MemoryError:
        raise UnpickleError("data.pkl: out of memory while reading it") from None


def to_plain(value: Any, max_values: int, max_depth: int, where: str) -> Any:
    """``value`` as a JSON-like tree (dict with string keys, list, str, int, float, bool, None) that shares
    nothing: a value referenced twice is copied twice, so the copies are counted against ``max_values``.
    Opaque objects become their ``<qualname>``; bytes ``<N bytes>``; integers beyond 64 bits
    ``<int of N bits>``.

    Raises:
        UnpickleError: more than ``max_values`` values once expanded, nested deeper than ``max_depth``
            (a cycle too), or a dict key that is not a string, a number, a bool or None.
    """
    count = 0

    def walk(item: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > max_values:
            raise UnpickleError(
                f"{where} expands to more than {max_values:,} values (shared references; the reader's limit "
                "MAX_EXPANDED_VALUES)"
            )
        if depth > max_depth:
            raise UnpickleError(f"{where} nests more than {max_depth} levels deep (the reader's limit MAX_NESTING)")
        kind = type(item)
        if item is None or kind is bool or kind is float or kind is str:
            return item
        if kind is int:
            return item if item.bit_length() <= 64 else f"<int of {item.bit_length()} bits>"
        if kind is dict:
            out = {}
            for key, sub in item.items():
                if type(key) is not str and not (key is None or type(key) in (int, bool)):
                    raise UnpickleError(f"{where} holds a dict key that is not a string or a number ({key!r:.60})")
                out[key if type(key) is str else str(key)] = walk(sub, depth + 1)
            return out
        if kind in (list, tuple, set, frozenset):
            return [walk(sub, depth + 1) for sub in item]
        if kind in (bytes, bytearray):
            return f"<{len(item)} bytes>"
        if kind is complex:
            return str(item)
        return repr(item) if kind is Opaque else f"<{kind.__name__}>"

    return walk(value, 0)
