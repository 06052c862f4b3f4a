"""`lmlogger audit x.ckpt` on hostile checkpoints: each is made here from a few pickle opcodes and zipfile writes.

Every one is exit 2 with one stderr line naming what is wrong (never "internal error"), costs little memory and
time (the child's peak RSS is measured; it runs under an address-space cap and a timeout), and through
`lmlogger.audit()` raises `AuditInputError` and nothing else. No checkpoint can change the reader for the next.
"""

import datetime
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import unicodedata
import zipfile

import pytest

import lmlogger
from lmlogger.audit import AuditInputError, _checkpoint, _unpickle
from lmlogger.records._records import SCHEMA_VERSION

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory read from /proc")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 120
#: The child's own peak RSS must stay below this (the interpreter and lmlogger's reader take ~20 MiB).
PEAK_MIB = 200

# Runs the CLI, then writes its peak RSS (KiB: VmHWM, this process's own high-water mark; ru_maxrss would
# count the parent's, kept across exec) where PEAK_FILE says. An address-space cap keeps a regression from
# taking the machine down with it.
_CHILD = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from lmlogger.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w") as fh:
        fh.write(peak)
sys.exit(code)
"""

P61 = (1 << 61) - 1


def ckpt(path, data, compression=zipfile.ZIP_STORED):
    """A torch-style zip checkpoint whose ``archive/data.pkl`` is ``data``."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/version", "3\n")
    return path


def good_entry(key="val_f1"):
    return {
        "schema": SCHEMA_VERSION,
        "lmlogger": "0.1.0",
        "epoch": 1,
        "global_step": 10,
        "saved_by": None,
        "monitors": [],
        "monitor_verdict": None,
        "keys": {
            key: {
                "phase": "validation",
                "epoch": 1,
                "step": 10,
                "logged": 0.5,
                "reference": 0.5,
                "verdict": "match",
                "findings": [],
                "fix": None,
            }
        },
        "decisions": [],
    }


def audit_cli(tmp_path, path, *args):
    peak = tmp_path / "peak"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "audit", str(path), *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": ROOT, "PEAK_FILE": str(peak)},
    )
    peak_mib = int(peak.read_text()) / 1024 if peak.exists() else None
    return proc, peak_mib


def assert_one_line_exit_2(proc, peak_mib, expected):
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmlogger: error: "), proc.stderr[-2000:]
    assert expected in lines[0], lines[0]
    assert "internal error" not in lines[0] and proc.stdout == ""
    assert peak_mib is not None and peak_mib < PEAK_MIB, peak_mib


# -- tiny files that would cost gigabytes or minutes ----------------------------------------------------------
def bytearray_claim(tmp):  # BYTEARRAY8 claiming a terabyte, in 12 bytes
    return ckpt(tmp / "x.ckpt", b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b".")


def unicode_claim(tmp):  # BINUNICODE8 claiming 2**62 bytes
    return ckpt(tmp / "x.ckpt", b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"abc.")


def bytes_claim(tmp):  # BINBYTES claiming 4 GiB
    return ckpt(tmp / "x.ckpt", b"\x80\x03B" + struct.pack("<I", 0xFFFFFFFF) + b"abc.")


def memo_index(tmp):  # PUT at an index that a table indexed by it would need exabytes for
    return ckpt(tmp / "x.ckpt", b"(p99999999999999999999\n.")


def frame_claim(tmp):
    return ckpt(tmp / "x.ckpt", b"\x80\x04\x95" + struct.pack("<Q", 1 << 50) + b"N.")


def zip_bomb(tmp):  # 100 MiB of zeros, deflated to ~100 KiB
    return ckpt(tmp / "x.ckpt", b"\x00" * (100 << 20), zipfile.ZIP_DEFLATED)


def directory_claim(tmp):  # the end record claims a 4 GiB table of contents
    path = ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": good_entry()}, protocol=2))
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 12 : end + 16] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    return path


def nested_marks(tmp):
    return ckpt(tmp / "x.ckpt", b"\x80\x02" + b"(" * 5000 + b"N.")


def nested_entry(tmp):  # a list nested 100,000 deep without a MARK: EMPTY_LIST, then (EMPTY_LIST, APPEND) ...
    deep = b"]" + b"]" * 100_000 + b"a" * 100_000
    entry = b"}X\x08\x00\x00\x00lmlogger" + deep + b"s"
    return ckpt(tmp / "x.ckpt", b"\x80\x02" + entry + b".")


def shared_references(tmp):  # 40 levels of [x, x]: 2**40 values once expanded for --format json
    x = [1]
    for _ in range(40):
        x = [x, x]
    entry = good_entry()
    entry["decisions"] = [{"callback": "ModelCheckpoint", "monitor": "val_f1", "config": {"x": x}}]
    return ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": entry}, protocol=2))


def _text(value):
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def colliding_keys(tmp):
    """50,000 int keys whose hashes are all 0 (a quadratic dict for pickle), written as opcodes: building
    that dict here to pickle it would be quadratic too."""
    keys = b""
    for i in range(1, 50_001):
        key = i * P61
        keys += (
            b"\x8a"
            + bytes([(key.bit_length() + 8) // 8])
            + key.to_bytes((key.bit_length() + 8) // 8, "little", signed=True)
        )
        keys += b"}"
    entry = b"}(" + _text("keys") + b"}(" + keys + b"u" + b"u"  # entry = {"keys": {k: {}, ...}}
    return ckpt(tmp / "x.ckpt", b"\x80\x02}" + _text("lmlogger") + entry + b"s.")


CASES = [
    ("bytearray-length-claim", bytearray_claim, "a length of 1099511627776 bytes is claimed but only 1 remain"),
    ("str-length-claim", unicode_claim, "a length of 4611686018427387904 bytes is claimed"),
    ("bytes-length-claim", bytes_claim, "a length of 4294967295 bytes is claimed"),
    ("memo-index", memo_index, "memo index 99999999999999999999 is out of range"),
    ("frame-length-claim", frame_claim, "a frame of 1125899906842624 bytes is claimed"),
    ("zip-bomb", zip_bomb, "over the reader's limit of 67,108,864 bytes (MAX_PICKLE_BYTES)"),
    ("directory-claim", directory_claim, "(MAX_DIRECTORY_BYTES)"),
    ("nested-marks", nested_marks, "nested more than 100 deep (the reader's limit MAX_NESTING)"),
    ("nested-entry", nested_entry, "nests more than 100 levels deep (the reader's limit MAX_NESTING)"),
    ("shared-references", shared_references, "more than 1,000,000 values (shared references"),
    ("hash-colliding-keys", colliding_keys, "holds a dict key that is not a string or a number"),
]


@pytest.mark.parametrize("name, make, expected", CASES, ids=[c[0] for c in CASES])
def test_a_tiny_hostile_checkpoint_is_exit_2_in_bounded_memory(tmp_path, name, make, expected):
    """Each budget (length claims, memo, frames, decompression, directory, nesting, expanded output, dict keys)
    stops its crafted file with one line naming it; `--format json` prints nothing."""
    path = make(tmp_path)
    assert path.stat().st_size < 1 << 20  # tiny inputs: the cost would all be the reader's
    proc, peak = audit_cli(tmp_path, path, "--format", "json")
    assert_one_line_exit_2(proc, peak, expected)


def test_colliding_keys_are_built_inert_so_no_dict_is_quadratic():
    """Int keys of equal hash become identity-hashed stand-ins; string keys stay as they are."""
    data = pickle.dumps({"plain": 1, 7: 2, **{i * P61: i for i in range(1, 2001)}}, protocol=2)
    built = _unpickle.loads(data)
    assert built["plain"] == 1 and built[7] == 2
    stand_ins = [k for k in built if isinstance(k, _unpickle.Opaque)]
    assert len(stand_ins) == 2000 and {repr(k) for k in stand_ins} == {"<int key>"}


@pytest.mark.parametrize(
    "limit, value, data, expected",
    [
        (
            "MAX_VALUES",
            1000,
            b"\x80\x02]" + b"2" * 1001 + b".",
            "more than 1,000 values (the reader's limit MAX_VALUES)",
        ),
        ("MAX_MEMO", 10, b"\x80\x02N" + b"".join(b"q" + bytes([i]) for i in range(11)) + b".", "MAX_MEMO"),
        ("MAX_DICT_ENTRIES", 10, pickle.dumps({str(i): i for i in range(11)}, protocol=2), "MAX_DICT_ENTRIES"),
    ],
)
def test_counting_budgets_name_their_limit(tmp_path, monkeypatch, limit, value, data, expected):
    """Values built, memo entries and dict entries are counted; past the limit is AuditInputError naming it
    (the limits are lowered here so that the test input stays small)."""
    monkeypatch.setattr(_unpickle, limit, value)
    with pytest.raises(AuditInputError, match=re.escape(expected)) as err:
        lmlogger.audit(ckpt(tmp_path / "x.ckpt", data))
    assert len(str(err.value).splitlines()) == 1


def test_the_real_limits_are_generous_and_documented():
    """A real data.pkl is kilobytes to a few MiB; every limit is stated in docs/audit.md."""
    with open(os.path.join(ROOT, "docs", "audit.md"), encoding="utf-8") as fh:
        docs = fh.read()
    limits = {
        "MAX_PICKLE_BYTES": _checkpoint.MAX_PICKLE_BYTES,
        "MAX_DIRECTORY_BYTES": _checkpoint.MAX_DIRECTORY_BYTES,
        "MAX_MEMBERS": _checkpoint.MAX_MEMBERS,
        "MAX_EXPANDED_VALUES": _checkpoint.MAX_EXPANDED_VALUES,
        "MAX_VALUES": _unpickle.MAX_VALUES,
        "MAX_MEMO": _unpickle.MAX_MEMO,
        "MAX_NESTING": _unpickle.MAX_NESTING,
        "MAX_DICT_ENTRIES": _unpickle.MAX_DICT_ENTRIES,
    }
    for name, value in limits.items():
        assert f"`{name}`" in docs and f"{value:,}" in docs, name
    assert _checkpoint.MAX_PICKLE_BYTES >= 64 << 20 and _unpickle.MAX_VALUES >= 1_000_000


# -- malformed archives and entry values: AuditInputError, never a raw exception ------------------------------
def _cut(tmp):
    path = ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": good_entry()}, protocol=2))
    path.write_bytes(path.read_bytes()[:-30])
    return path


def _bad_crc(tmp):
    data = pickle.dumps({"lmlogger": good_entry()}, protocol=2)
    path = ckpt(tmp / "x.ckpt", data)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"val_f1")
    raw[at] ^= 1
    path.write_bytes(bytes(raw))
    return path


def _bzip2(tmp):
    return ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": good_entry()}, protocol=2), zipfile.ZIP_BZIP2)


def _encrypted(tmp):
    path = ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": good_entry()}, protocol=2))
    raw = bytearray(path.read_bytes())
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(sig)
        raw[at + flag_at] |= 1
    path.write_bytes(bytes(raw))
    return path


def _entry(**changes):
    def make(tmp):
        entry = good_entry()
        entry.update(changes)
        return ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": entry}, protocol=2))

    return make


def _key(**changes):
    def make(tmp):
        entry = good_entry()
        entry["keys"]["val_f1"].update(changes)
        return ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": entry}, protocol=2))

    return make


def _raw(data):
    return lambda tmp: ckpt(tmp / "x.ckpt", data)


def _entry_a_list(tmp):
    return ckpt(tmp / "x.ckpt", pickle.dumps({"lmlogger": [1, 2]}, protocol=2))


def _logged_a_tensor(tmp):  # what torch writes for a tensor: a global called with arguments
    data = pickle.dumps({"lmlogger": good_entry()}, protocol=2)
    half = struct.pack(">d", 0.5)
    return ckpt(tmp / "x.ckpt", data.replace(b"G" + half, b"ctorch._utils\n_rebuild_tensor_v2\n)R", 1))


MALFORMED = [
    ("truncated-archive", _cut, "corrupt checkpoint archive"),
    ("bad-crc", _bad_crc, "corrupt checkpoint archive"),
    ("bzip2-member", _bzip2, "uses zip compression method 12"),
    ("encrypted-member", _encrypted, "corrupt checkpoint archive"),
    ("unknown-opcode", _raw(b"\x80\x02\xff"), "unknown opcode 0xff"),
    ("stack-underflow", _raw(b"\x80\x02s."), "too few values on the stack"),
    ("no-stop", _raw(b"\x80\x02}q\x00(X\x03\x00\x00\x00abc"), "ends before its STOP opcode"),
    ("ext-registry", _raw(b"\x80\x02\x82\x01."), "copyreg's extension registry"),
    ("setitem-on-a-list", _raw(b"\x80\x02]NNs."), "SETITEM on a list"),
    ("not-utf8", _raw(b"\x80\x02X\x02\x00\x00\x00\xff\xfe."), "not UTF-8"),
    ("pickle-of-a-list", _raw(pickle.dumps([1, 2], protocol=2)), "it holds a list"),
    ("entry-a-list", _entry_a_list, "checkpoint['lmlogger'] is not a dict"),
    ("keys-a-list", _entry(keys=[1, 2]), "keys is not a dict"),
    ("decisions-a-number", _entry(decisions=5), "corrupt lmlogger entry"),
    ("key-a-number", _entry(keys={"k": 5}), "key 'k' is not an object"),
    ("epoch-a-string", _key(epoch="one"), "expected an integer, got str"),
    ("logged-a-huge-int", _key(logged=10**400), "expected a number, got str"),
    ("logged-a-tensor", _logged_a_tensor, "expected a number, got str"),
    ("findings-a-number", _key(findings=3), "corrupt lmlogger entry"),
    ("schema-newer", _entry(schema=SCHEMA_VERSION + 1), "newer than this lmlogger understands"),
]


@pytest.mark.parametrize("name, make, expected", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_checkpoints_are_audit_input_errors(tmp_path, name, make, expected):
    """The Python API raises AuditInputError (one line) and nothing else; the CLI prints that line, exit 2."""
    path = make(tmp_path)
    with pytest.raises(AuditInputError) as err:
        lmlogger.audit(path)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and expected in message, message
    proc, peak = audit_cli(tmp_path, path)
    assert_one_line_exit_2(proc, peak, expected)


# -- no state an input can change ---------------------------------------------------------------------------
def _functions():
    """Every function of the reader's modules with its defaults and attributes."""
    seen = {}
    for module in (_checkpoint, _unpickle):
        for name, value in vars(module).items():
            if callable(value) and hasattr(value, "__defaults__"):
                seen[f"{module.__name__}.{name}"] = (value.__defaults__, dict(vars(value)))
    return seen


def _reaches_module_state(tmp):
    """Globals that name the reader's own functions, copyreg's registries and the constructor table, each
    given a BUILD state that would set its attributes (``__defaults__``) and a SETITEM, inside a list that is
    popped; then a good checkpoint dict."""
    state = pickle.dumps((None, {"__defaults__": ("x", "utf-16")}), protocol=2)[2:-1]
    item = b"X\x03\x00\x00\x00keyX\x05\x00\x00\x00value"
    targets = [
        b"c_codecs\nencode\n",
        b"clmlogger.audit._checkpoint\n_number\n",
        b"clmlogger.audit._unpickle\nsafe_key\n",
        b"ccopyreg\n_extension_registry\n",
        b"clmlogger.audit._unpickle\n_CONSTRUCTORS\n",
    ]
    body = b"".join(t + state + b"b" for t in targets) + b"".join(t + item + b"s" for t in targets)
    data = b"\x80\x02(" + body + b"l0" + pickle.dumps({"lmlogger": good_entry()}, protocol=2)[2:]
    return ckpt(tmp / "evil.ckpt", data)


def test_a_checkpoint_cannot_change_the_reader_for_the_next(tmp_path):
    """A checkpoint that names the reader's functions, copyreg's registries and the constructor table, and
    tries to set their attributes or items, leaves them as they were: the next checkpoint reads the same."""
    import copyreg

    good = ckpt(tmp_path / "good.ckpt", pickle.dumps({"lmlogger": good_entry(), "b": b"\x00\xff"}, protocol=2))
    before = lmlogger.audit(good).to_dict()
    functions, constructors = _functions(), dict(_unpickle._CONSTRUCTORS)
    registry = dict(copyreg._extension_registry)
    evil = _reaches_module_state(tmp_path)
    for _ in range(2):
        report = lmlogger.audit(evil)  # read inertly: its entry is the good one
        assert [k.key for k in report.runs[0].keys] == ["val_f1"]
    assert _functions() == functions and constructors == _unpickle._CONSTRUCTORS
    assert dict(copyreg._extension_registry) == registry
    assert lmlogger.audit(good).to_dict() == before
    assert _checkpoint.read_checkpoint(str(good))["b"] == b"\x00\xff"  # protocol 2 bytes: _codecs.encode


def test_prov_of_a_checkpoint_escapes_terminal_sequences(tmp_path):
    """Key names, fixes and findings from a checkpoint reach `--format prov` as visible escapes."""
    pytest.importorskip("prov")
    entry = good_entry("f1\x1b]0;owned\x07\u202etxt\x1b[2J")
    entry["keys"]["f1\x1b]0;owned\x07\u202etxt\x1b[2J"]["fix"] = "self.log('f1')\x1b[31m"
    path = ckpt(tmp_path / "x.ckpt", pickle.dumps({"lmlogger": entry}, protocol=2))
    proc, _ = audit_cli(tmp_path, path, "--format", "prov")
    assert proc.returncode == 0, proc.stderr
    hidden = [ch for ch in proc.stdout if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs")]
    assert hidden == []
    assert json.loads(proc.stdout)["entity"]  # a PROV-JSON document
    assert json.dumps("f1\\x1b]0;owned\\x07\\u202etxt\\x1b[2J") in proc.stdout


def test_a_real_checkpoint_layout_reads_in_every_protocol(tmp_path):
    """Plain values come back as they were in protocols 0 to 5; tensors and user classes are stand-ins."""
    import collections

    value = {
        "ints": [0, -1, 255, 65536, -(2**31), 2**63, -(2**100)],
        "floats": [0.5, float("inf")],
        "text": ["", "é\u202e", "x" * 300],
        "bytes": [b"\x00\xff", bytearray(b"ab")],
        "tuple": (1, ("a", None), True, False),
        "set": {1, 2},
        "frozen": frozenset({"a"}),
        "ordered": collections.OrderedDict(b=1, a=2),
        "complex": 1 + 2j,
        "shared": [[1]] * 3,
    }
    for protocol in range(6):
        built = _unpickle.loads(pickle.dumps(value, protocol=protocol))
        assert built == {**value, "ordered": {"b": 1, "a": 2}}, protocol
        assert list(built["ordered"]) == ["b", "a"]
    stand_in = _unpickle.loads(pickle.dumps(datetime.date(2026, 1, 1), protocol=2))
    assert isinstance(stand_in, _unpickle.Opaque) and repr(stand_in) == "<datetime.date>"
