"""The opcodes of the checkpoint reader's pickle machine (:mod:`lmlogger.audit._unpickle`), one function each.

Each takes the machine, reads its arguments through it (``take``, ``unpack``, ``line``: bounded by the
bytes left), and pushes through it (``push``: counted); only ``STOP`` returns True. ``OPCODES`` maps an
opcode byte to its function; it is a tuple, so nothing read can change it. Protocols 0 to 5; the ``EXT``
opcodes (``copyreg``'s extension registry) and out-of-band buffers are refused.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmlogger.audit._unpickle import _Machine


def _mark(m: _Machine) -> None:
    m.marks.append(len(m.stack))


def _stop(m: _Machine) -> bool:
    m.top()
    return True


def _pop(m: _Machine) -> None:
    if m.marks and len(m.stack) == m.marks[-1]:
        m.marks.pop()  # as pickle does: POP of a bare MARK drops the mark
    else:
        m.pop()


def _pop_mark(m: _Machine) -> None:
    m.pop_mark()


def _dup(m: _Machine) -> None:
    m.push(m.top())


def _proto(m: _Machine) -> None:
    m.proto = m.take(1)[0]
    if m.proto > 5:
        raise m.error(f"pickle protocol {m.proto} is newer than 5")


def _frame(m: _Machine) -> None:
    length = m.unpack("<Q", 8)
    if length > len(m.data) - m.pos:
        raise m.error(f"a frame of {length} bytes is claimed but only {len(m.data) - m.pos} remain")


def _int_text(m: _Machine) -> None:
    text = m.line()
    if text in (b"00", b"01"):
        m.push(text == b"01")
        return
    m.push(_parse_int(m, text))


def _long_text(m: _Machine) -> None:
    m.push(_parse_int(m, m.line().rstrip(b"L")))


def _parse_int(m: _Machine, text: bytes) -> int:
    if len(text) > 4300:
        raise m.error("an integer written with more than 4300 digits")
    try:
        return int(text)
    except ValueError:
        raise m.error(f"{text[:40]!r} is not an integer") from None


def _float_text(m: _Machine) -> None:
    text = m.line()
    try:
        m.push(float(text))
    except ValueError:
        raise m.error(f"{text[:40]!r} is not a number") from None


def _long_bytes(m: _Machine, width: str, size: int) -> None:
    n = m.unpack(width, size)
    m.push(int.from_bytes(m.take(n), "little", signed=True))


def _string_text(m: _Machine) -> None:
    text = m.line()
    if len(text) < 2 or text[:1] not in (b"'", b'"') or text[-1:] != text[:1]:
        raise m.error("a STRING argument is not quoted")
    try:
        m.push(codecs.escape_decode(text[1:-1])[0].decode("latin1"))
    except ValueError as err:
        raise m.error(f"a STRING argument: {err}") from None


def _unicode_text(m: _Machine) -> None:
    try:
        m.push(m.line().decode("raw-unicode-escape"))
    except UnicodeDecodeError as err:
        raise m.error(f"a UNICODE argument: {err.reason}") from None


def _unicode(m: _Machine, width: str, size: int) -> None:
    raw = m.take(m.unpack(width, size))
    try:
        m.push(raw.decode("utf-8", "surrogatepass"))
    except UnicodeDecodeError as err:
        raise m.error(f"a string that is not UTF-8 ({err.reason})") from None


def _binstring(m: _Machine, width: str, size: int) -> None:
    m.push(m.take(m.unpack(width, size)).decode("latin1"))  # protocol 0-2 str: torch writes none


def _bytes(m: _Machine, width: str, size: int) -> None:
    m.push(m.take(m.unpack(width, size)))


def _bytearray8(m: _Machine) -> None:
    m.push(bytearray(m.take(m.unpack("<Q", 8))))


def _tuple_mark(m: _Machine) -> None:
    m.push(tuple(m.pop_mark()))


def _tuple_n(n: int) -> Any:
    def op(m: _Machine) -> None:
        items = [m.pop() for _ in range(n)][::-1]
        m.push(tuple(items))

    return op


def _list_mark(m: _Machine) -> None:
    m.push(m.pop_mark())


def _dict_mark(m: _Machine) -> None:
    made: dict[Any, Any] = {}
    m.setitems(made, m.pop_mark())
    m.push(made)


def _frozenset_mark(m: _Machine) -> None:
    m.push(m.new_set(m.pop_mark(), frozen=True))


def _append(m: _Machine) -> None:
    value = m.pop()
    m.appends(m.top(), [value])


def _appends(m: _Machine) -> None:
    items = m.pop_mark()
    m.appends(m.top(), items)


def _setitem(m: _Machine) -> None:
    value = m.pop()
    key = m.pop()
    m.setitems(m.top(), [key, value])


def _setitems(m: _Machine) -> None:
    items = m.pop_mark()
    m.setitems(m.top(), items)


def _additems(m: _Machine) -> None:
    items = m.pop_mark()
    m.additems(m.top(), items)


def _global_text(m: _Machine) -> None:
    module = m.line().decode("utf-8", "replace")
    name = m.line().decode("utf-8", "replace")
    m.push(m.find_class(module, name))


def _stack_global(m: _Machine) -> None:
    name = m.pop()
    module = m.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise m.error("STACK_GLOBAL of values that are not strings")
    m.push(m.find_class(module, name))


def _reduce(m: _Machine) -> None:
    args = m.pop()
    func = m.pop()
    m.push(m.construct(func, args))


def _newobj(m: _Machine) -> None:
    m.pop()  # the arguments of cls.__new__: a plain type starts empty, the items come later
    m.push(m.construct(m.pop(), ()))


def _newobj_ex(m: _Machine) -> None:
    m.pop()
    m.pop()
    m.push(m.construct(m.pop(), ()))


def _inst(m: _Machine) -> None:
    module = m.line().decode("utf-8", "replace")
    name = m.line().decode("utf-8", "replace")
    args = tuple(m.pop_mark())
    m.push(m.construct(m.find_class(module, name), args))


def _obj(m: _Machine) -> None:
    items = m.pop_mark()
    if not items:
        raise m.error("OBJ without a class")
    m.push(m.construct(items[0], tuple(items[1:])))


def _build(m: _Machine) -> None:
    m.pop()  # the state: never applied (no attribute of anything is set from a file)
    m.top()


def _persid_text(m: _Machine) -> None:
    m.line()
    m.push(m.stand_in("persistent id"))


def _binpersid(m: _Machine) -> None:
    m.pop()
    m.push(m.stand_in("persistent id"))  # a tensor's storage: never read


def _ext(m: _Machine) -> None:
    raise m.error("an EXT opcode (copyreg's extension registry, which the reader never consults)")


def _next_buffer(m: _Machine) -> None:
    raise m.error("an out-of-band buffer (NEXT_BUFFER), which a file cannot carry")


def _readonly_buffer(m: _Machine) -> None:
    m.top()


def _memoize(m: _Machine) -> None:
    m.put(len(m.memo))


def _put_text(m: _Machine) -> None:
    m.put(_parse_int(m, m.line()))


def _get_text(m: _Machine) -> None:
    m.get(_parse_int(m, m.line()))


def _table() -> tuple[Any, ...]:
    """The handler of each opcode byte (None: not an opcode)."""
    ops: dict[bytes, Any] = {
        b"(": _mark,
        b".": _stop,
        b"0": _pop,
        b"1": _pop_mark,
        b"2": _dup,
        b"F": _float_text,
        b"I": _int_text,
        b"J": lambda m: m.push(m.unpack("<i", 4)),
        b"K": lambda m: m.push(m.take(1)[0]),
        b"L": _long_text,
        b"M": lambda m: m.push(m.unpack("<H", 2)),
        b"N": lambda m: m.push(None),
        b"P": _persid_text,
        b"Q": _binpersid,
        b"R": _reduce,
        b"S": _string_text,
        b"T": lambda m: _binstring(m, "<I", 4),
        b"U": lambda m: _binstring(m, "<B", 1),
        b"V": _unicode_text,
        b"X": lambda m: _unicode(m, "<I", 4),
        b"a": _append,
        b"b": _build,
        b"c": _global_text,
        b"d": _dict_mark,
        b"}": lambda m: m.push({}),
        b"e": _appends,
        b"g": _get_text,
        b"h": lambda m: m.get(m.take(1)[0]),
        b"i": _inst,
        b"j": lambda m: m.get(m.unpack("<I", 4)),
        b"l": _list_mark,
        b"]": lambda m: m.push([]),
        b"o": _obj,
        b"p": _put_text,
        b"q": lambda m: m.put(m.take(1)[0]),
        b"r": lambda m: m.put(m.unpack("<I", 4)),
        b"s": _setitem,
        b"t": _tuple_mark,
        b")": lambda m: m.push(()),
        b"u": _setitems,
        b"G": lambda m: m.push(m.unpack(">d", 8)),
        b"\x80": _proto,
        b"\x81": _newobj,
        b"\x82": _ext,
        b"\x83": _ext,
        b"\x84": _ext,
        b"\x85": _tuple_n(1),
        b"\x86": _tuple_n(2),
        b"\x87": _tuple_n(3),
        b"\x88": lambda m: m.push(True),
        b"\x89": lambda m: m.push(False),
        b"\x8a": lambda m: _long_bytes(m, "<B", 1),
        b"\x8b": lambda m: _long_bytes(m, "<i", 4),
        b"B": lambda m: _bytes(m, "<I", 4),
        b"C": lambda m: _bytes(m, "<B", 1),
        b"\x8c": lambda m: _unicode(m, "<B", 1),
        b"\x8d": lambda m: _unicode(m, "<Q", 8),
        b"\x8e": lambda m: _bytes(m, "<Q", 8),
        b"\x8f": lambda m: m.push(set()),
        b"\x90": _additems,
        b"\x91": _frozenset_mark,
        b"\x92": _newobj_ex,
        b"\x93": _stack_global,
        b"\x94": _memoize,
        b"\x95": _frame,
        b"\x96": _bytearray8,
        b"\x97": _next_buffer,
        b"\x98": _readonly_buffer,
    }
    table: list[Any] = [None] * 256
    for code, op in ops.items():
        table[code[0]] = op
    return tuple(table)


OPCODES = _table()
