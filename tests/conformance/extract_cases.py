"""The Autobahn|Testsuite's case list, extracted from its own case classes, for tests written
against it (its runner is Python 2 only; its cases are data enough to read under Python 3).

    python tests/conformance/extract_cases.py [WHEEL]
    (WHEEL: autobahntestsuite-0.8.2-py2.py3-none-any.whl; fetched with
     `pip download autobahntestsuite==0.8.2 --no-deps` when not given)

writes tests/conformance/autobahn_cases.json and tests/conformance/AUTOBAHN_CASES.md beside this
file: categories 1-7, 9, 10, 12 and 13, each case's id, category, description and expectation
(the classes' DESCRIPTION and EXPECTATION), and for categories 1-7 and 9 what the fuzzing client
does (its frames, in order, with the waits between them) and what it expects back: the events
(`expected`: behaviour -> events, OK is the strict outcome, NON-STRICT also passes) and the close
(`expected_close`: closedByMe false means the server must fail the connection, closeCode the
codes it may send, requireClean whether a clean close handshake is required; `informational`:
the suite reports the outcome without judging it).

How it reads Python 2 code: each case module's source is loaded with its plain string literals
kept as Python 2 byte strings would be (a str whose code points are the bytes: non-ASCII
characters become their UTF-8 bytes, \\x escapes stay bytes), so `.encode("latin-1")` gives the
exact bytes the suite sends; `print` statements become calls; the autobahn, twisted and
pkg_resources names the modules import are stand-ins that record. Each case's onOpen runs
against a recorder in place of the protocol: sendFrame, sendMessage, sendClose... become
actions; continueLater runs its callback at once after a "wait" action.
"""
from __future__ import annotations

import builtins
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import tokenize
import types
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = "0.8.2"
CATEGORIES = {"1", "2", "3", "4", "5", "6", "7", "9", "10", "12", "13"}
WITH_ACTIONS = {"1", "2", "3", "4", "5", "6", "7", "9"}
INLINE = 256            # payloads up to this size are written out (hex), longer ones summarised


# ------------------------------------------------------------------- Python 2 source, loaded


def py2_literals(source: str) -> str:
    """Plain (unprefixed) string literals as Python 2 byte strings: non-ASCII characters become
    \\x escapes of their UTF-8 bytes; u'' literals are left as text."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        text = tok.string
        if tok.type == tokenize.STRING:
            prefix = re.match(r"[A-Za-z]*", text).group(0).lower()
            if "u" not in prefix and "b" not in prefix:
                text = "".join(c if ord(c) < 128 else "".join(f"\\x{b:02x}" for b in
                                                             c.encode()) for c in text)
        out.append((tok.type, text))
    return tokenize.untokenize(out)


def py2_prints(source: str) -> str:
    return re.sub(r"^(\s*)print (?!\()(.*)$", r"\1print(\2)", source, flags=re.M)


def as_bytes(value) -> bytes:
    """A payload as the suite sends it: Python 2 str (code points = bytes), or bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:       # a u'' literal sent as text: its UTF-8
            return value.encode("utf-8")
    raise TypeError(f"payload of type {type(value).__name__}")


class Utf8Validator:
    """autobahn's incremental UTF-8 validator, as the suite's case 6 generator uses it:
    validate() -> (valid so far, ends on a code point boundary, ...)."""

    def reset(self) -> None:
        pass

    def validate(self, data):
        decoder = __import__("codecs").getincrementaldecoder("utf-8")()
        raw = as_bytes(data)
        try:
            decoder.decode(raw)
        except UnicodeDecodeError as e:
            return False, False, e.start, e.start
        pending = decoder.getstate()[0]
        return True, not pending, len(raw), len(raw)


class WebSocketProtocol:
    MESSAGE_TYPE_TEXT, MESSAGE_TYPE_BINARY = 1, 2
    STATE_CLOSED, STATE_CONNECTING, STATE_CLOSING, STATE_OPEN = 0, 1, 2, 3
    CLOSE_STATUS_CODE_NORMAL = 1000
    CLOSE_STATUS_CODE_GOING_AWAY = 1001
    CLOSE_STATUS_CODE_PROTOCOL_ERROR = 1002
    CLOSE_STATUS_CODE_UNSUPPORTED_DATA = 1003
    CLOSE_STATUS_CODE_RESERVED1 = 1004
    CLOSE_STATUS_CODE_NULL = 1005
    CLOSE_STATUS_CODE_ABNORMAL_CLOSE = 1006
    CLOSE_STATUS_CODE_INVALID_PAYLOAD = 1007
    CLOSE_STATUS_CODE_POLICY_VIOLATION = 1008
    CLOSE_STATUS_CODE_MESSAGE_TOO_BIG = 1009
    CLOSE_STATUS_CODE_MANDATORY_EXTENSION = 1010
    CLOSE_STATUS_CODE_INTERNAL_ERROR = 1011
    CLOSE_STATUS_CODE_SERVICE_RESTART = 1012
    CLOSE_STATUS_CODE_TRY_AGAIN_LATER = 1013
    CLOSE_STATUS_CODE_TLS_HANDSHAKE_FAILED = 1015


class _Params:
    """A permessage-deflate offer or accept: its parameters, kept."""

    def __init__(self, *args, **kw):
        self.args, self.kw = args, kw
        self.requestNoContextTakeover = kw.get("requestNoContextTakeover", False)
        self.requestMaxWindowBits = kw.get("requestMaxWindowBits", 0)
        self.acceptNoContextTakeover = kw.get("acceptNoContextTakeover", True)
        self.acceptMaxWindowBits = kw.get("acceptMaxWindowBits", True)


def stand_ins(testdata: Path) -> dict[str, types.ModuleType]:
    def module(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    compress = {n: type(n, (_Params,), {}) for n in (
        "PerMessageDeflateOffer", "PerMessageDeflateOfferAccept", "PerMessageDeflateResponse",
        "PerMessageDeflateResponseAccept")}
    import binascii as real_binascii
    return {
        "autobahn": module("autobahn"),
        "autobahn.websocket": module("autobahn.websocket"),
        "autobahn.websocket.protocol": module("autobahn.websocket.protocol",
                                              WebSocketProtocol=WebSocketProtocol),
        "autobahn.websocket.utf8validator": module("autobahn.websocket.utf8validator",
                                                   Utf8Validator=Utf8Validator),
        "autobahn.websocket.compress": module("autobahn.websocket.compress",
                                              __all__=list(compress), **compress),
        "twisted": module("twisted"),
        "twisted.internet": module("twisted.internet", reactor=None, interfaces=module(
            "twisted.internet.interfaces", IPushProducer=object, IProducer=object)),
        "zope": module("zope"),
        "zope.interface": module("zope.interface", implements=lambda *a: None),
        "pkg_resources": module("pkg_resources", resource_filename=lambda pkg, name: str(
            testdata / Path(name).name)),
        # Python 2's binascii took str: hex of the bytes, as a str
        "_py2binascii": module("_py2binascii", b2a_hex=lambda s: real_binascii.b2a_hex(
            as_bytes(s)).decode(), hexlify=lambda s: real_binascii.hexlify(
            as_bytes(s)).decode(), a2b_hex=real_binascii.a2b_hex,
            unhexlify=real_binascii.unhexlify),
    }


class Py2CaseFinder:
    """Imports the suite's case modules (top-level names, as Python 2's implicit relative
    imports found them) from their rewritten source."""

    def __init__(self, case_dir: Path):
        self.case_dir = case_dir

    def find_spec(self, name, path=None, target=None):
        import importlib.util
        file = self.case_dir / f"{name}.py"
        if path is None and file.exists():
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        file = self.case_dir / f"{module.__name__}.py"
        source = file.read_text(encoding="utf-8")
        source = re.sub(r"^import binascii$", "import _py2binascii as binascii", source,
                        flags=re.M)
        source = re.sub(r"^(import copy, os, pkg_resources, hashlib), binascii$",
                        r"\1; import _py2binascii as binascii", source, flags=re.M)
        # type(name, (object, Case), ...): Python 2's Case was an old-style class
        source = re.sub(r"\(object,\s*Case,\s*\)", "(Case,)", source)
        source = py2_prints(py2_literals(source))
        module.__file__ = str(file)
        exec(compile(source, str(file), "exec"), module.__dict__)


def load_cases(root: Path):
    case_dir = root / "autobahntestsuite" / "case"
    sys.modules.update(stand_ins(root / "autobahntestsuite" / "testdata"))
    builtins.xrange = range                     # type: ignore[attr-defined]
    builtins.unichr = chr                       # type: ignore[attr-defined]
    sys.meta_path.insert(0, Py2CaseFinder(case_dir))
    import importlib.util
    spec = importlib.util.spec_from_file_location("ab_cases", case_dir / "__init__.py")
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    return cases


# ----------------------------------------------------------------------- what a case does


def payload_json(value) -> dict:
    data = as_bytes(value)
    out: dict = {"size": len(data)}
    if len(data) <= INLINE:
        out["hex"] = data.hex()
    else:
        out["sha1"] = hashlib.sha1(data).hexdigest()
        for unit in range(1, 17):
            if len(data) % unit == 0 and data == data[:unit] * (len(data) // unit):
                out["repeat_hex"] = data[:unit].hex()     # the payload is this, repeated
                break
        else:
            out["head_hex"] = data[:32].hex()
    return out


class Recorder:
    """The fuzzing client's protocol object as a case's onOpen sees it: every call an action."""

    def __init__(self):
        self.actions: list[dict] = []
        self.state = WebSocketProtocol.STATE_OPEN
        self.autoFragmentSize = 0
        self.createWirelog = False
        self.factory = types.SimpleNamespace(isServer=False)
        self._perMessageCompress = None
        for name, value in vars(WebSocketProtocol).items():
            if name.isupper():
                setattr(self, name, value)

    def _add(self, op: str, **fields) -> None:
        self.actions.append({"op": op, **{k: v for k, v in fields.items() if v is not None}})

    def sendFrame(self, opcode, payload="", fin=True, rsv=0, mask=None, payload_len=None,
                  chopsize=None, sync=False):
        self._add("frame", opcode=opcode, fin=bool(fin), rsv=rsv or 0,
                  payload=payload_json(payload),
                  payload_len=payload_len, chopsize=chopsize, sync=bool(sync) or None,
                  mask=None if mask is None else as_bytes(mask).hex())

    def sendMessage(self, payload, isBinary=False, fragmentSize=None, sync=False,
                    doNotCompress=False):
        self._add("message", binary=bool(isBinary), payload=payload_json(payload),
                  fragment_size=fragmentSize, sync=bool(sync) or None)

    def beginMessage(self, isBinary=False, opcode=None):
        binary = isBinary if opcode is None else opcode == WebSocketProtocol.MESSAGE_TYPE_BINARY
        self._add("begin_message", binary=bool(binary))

    def beginMessageFrame(self, length):
        self._add("begin_message_frame", length=length)

    def sendMessageFrameData(self, payload, sync=False):
        self._add("message_frame_data", payload=payload_json(payload))

    def endMessage(self):
        self._add("end_message")

    def sendClose(self, code=None, reason=None):
        self._add("close", code=code, reason=None if reason is None else payload_json(reason))

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):
        self._add("close_frame", code=code,
                  reason=None if reasonUtf8 is None else payload_json(reasonUtf8))

    def continueLater(self, delay, fun, tag=None):
        self._add("wait", seconds=delay)
        fun()

    def killAfter(self, seconds):
        self._add("expect_closed_within", seconds=seconds)

    def closeAfter(self, seconds):
        self._add("close_after", seconds=seconds)

    def enableWirelog(self, enable):
        pass

    def registerProducer(self, producer, streaming):
        self._add("producer")


def events_json(events) -> list:
    out = []
    for event in events:
        kind, *rest = event
        if kind == "message":
            out.append({"event": "message", "payload": payload_json(rest[0]),
                        "binary": bool(rest[1])})
        elif kind in ("ping", "pong"):
            out.append({"event": kind, "payload": payload_json(rest[0])})
        else:                                   # "timeout", tag: a wait the case marks
            out.append({"event": kind, "tag": rest[0] if rest else None})
    return out


# ----------------------------------------------------------------------------------- output


def clean(text) -> str:
    """The suite's HTML-ish text as one line; Python 2 byte strings in it read as UTF-8."""
    try:
        text = as_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        text = as_bytes(text).decode("utf-8", "replace")
    text = re.sub(r"\s*<br\s*/?>\s*", " ", text)
    text = re.sub(r"</?(b|i|p|em|strong|code|tt)>", "", text)
    return re.sub(r"\s+", " ", text).strip()


def case_id(cls) -> str:
    return ".".join(cls.__name__[len("Case"):].split("_"))


def sort_key(cid: str) -> tuple:
    return tuple(int(p) for p in cid.split("."))


def extract(cases_module) -> list[dict]:
    subcategories = dict(cases_module.CaseSubCategories)
    out = []
    for cls in cases_module.Cases:
        cid = case_id(cls)
        category = cid.split(".")[0]
        if category not in CATEGORIES:
            continue
        sub = ".".join(cid.split(".")[:2])
        entry = {"id": cid, "category": int(category),
                 "category_name": cases_module.CaseCategories[category],
                 "subcategory": clean(subcategories.get(sub, "")) or None,
                 "description": clean(cls.DESCRIPTION), "expectation": clean(cls.EXPECTATION)}
        if category in WITH_ACTIONS:
            recorder = Recorder()
            case = cls(recorder)
            case.onOpen()
            entry["client"] = recorder.actions
            entry["expected"] = {k: events_json(v) for k, v in case.expected.items()}
            entry["expected_close"] = {k: v for k, v in case.expectedClose.items()}
            # a case whose outcome the suite reports without judging (7.1.6: a close racing
            # a long message; 7.13: close codes the spec leaves undefined)
            if "Case.INFORMATIONAL" in Path(sys.modules[cls.__module__].__file__).read_text():
                entry["informational"] = True
        out.append(entry)
    out.sort(key=lambda e: sort_key(e["id"]))
    return out


def markdown(entries: list[dict]) -> str:
    lines = [
        "# Autobahn|Testsuite cases (categories 1-7, 9, 10, 12, 13)",
        "",
        f"Extracted from autobahntestsuite {VERSION}'s case classes by "
        "`python tests/conformance/extract_cases.py` (which also writes `autobahn_cases.json`:",
        "the same with, for categories 1-7 and 9, the client's frames and the events and close",
        "it expects). Description and expectation are the suite's own words. In the suite the",
        "server echoes every message; \"fail\" means the server closes the connection (a close",
        "frame with the code first, where it can), and \"fail fast\" that it does so before",
        "reading what follows.",
        "",
        "In the JSON, `client` is what the suite's client does, in order (`tests/conformance/",
        "autobahn.py` turns it into bytes): `frame` (opcode, fin, `rsv` as a number: 4 is RSV1,",
        "2 RSV2, 1 RSV3; `payload_len`: the payload repeated to that length; `chopsize`: sent",
        "in TCP writes of that many octets), `message` (a whole message, framed by the client),",
        "`begin_message_frame` + `message_frame_data`... + `end_message` (one frame whose",
        "payload goes out in parts, with waits between), `close` / `close_frame` (a close frame",
        "with that code and reason), `wait`, `close_after` (the client starts the close",
        "handshake then), `expect_closed_within` (the client drops TCP then if the server has not",
        "closed). Payloads are `hex` up to 256 octets, else `size` + `sha1` + `repeat_hex` (the",
        "unit repeated) or `head_hex`. Category 9 checks its echoes as they come (its `expected`",
        "is empty); categories 10, 12 and 13 have no `client` (10: auto-fragmentation; 12 and 13",
        "send the suite's test data files compressed).",
        "",
        f"{len(entries)} cases.",
    ]
    category = None
    for e in entries:
        if e["category"] != category:
            category = e["category"]
            count = sum(1 for x in entries if x["category"] == category)
            lines += ["", f"## {category}. {e['category_name']} ({count} cases)", "",
                      "| id | description | expectation |", "|---|---|---|"]
        desc = e["description"]
        if e["subcategory"] and e["id"].count(".") == 2:
            desc = f"[{e['subcategory']}] {desc}"
        cells = [e["id"], desc, e["expectation"]]
        if "expected_close" in e:
            close = e["expected_close"]
            codes = ", ".join(str(c) for c in close.get("closeCode", []))
            who = "client closes" if close.get("closedByMe") else "server fails the connection"
            cells[2] += f" *({who}; close code {codes or 'any'}" + \
                (", clean" if close.get("requireClean") else "") + ")*"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    wheel = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory(prefix="autobahn-") as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "-d", tmp, f"autobahntestsuite=={VERSION}"], check=True)
            wheel = next(Path(tmp).glob("autobahntestsuite-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(Path(tmp) / "unpacked")
        entries = extract(load_cases(Path(tmp) / "unpacked"))
    (HERE / "autobahn_cases.json").write_text(
        json.dumps({"source": f"autobahntestsuite {VERSION}", "cases": entries},
                   indent=1, ensure_ascii=False) + "\n")
    (HERE / "AUTOBAHN_CASES.md").write_text(markdown(entries))
    counts: dict[int, int] = {}
    for e in entries:
        counts[e["category"]] = counts.get(e["category"], 0) + 1
    print(f"{len(entries)} cases: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

