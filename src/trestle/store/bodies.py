"""An event's stored body compressed with zlib, primed with a fixed dictionary.

An event's JSON is short (70 bytes to a few KB) and mostly the same keys and values
as the rows before it: ``"kind":"tool_call_started"``, ``"gate":{"decision":...``,
``"tool_calls":[],"tool_call_id":null``. zlib alone barely shrinks 300 bytes: it has
not seen those yet. Primed with :data:`DICTIONARY`, text shaped like the events, it
brought the bodies of a 1,000-turn agent run from 2.43 MB to 0.6 MB (the SQLite store,
schema 6; the long strings are stored apart before, by :mod:`trestle.store.payloads`).

The dictionary is part of the stored format: a body written with it is read with it,
so it never changes (a test holds its hash). A better one would be a new format,
flagged apart. Pure: the store does the IO.
"""

from __future__ import annotations

import zlib

from trestle.store.inflate import BODY, inflated

LEVEL = 6  # zlib's default
# zlib's default is 8. In a process with a small heap (a fresh command) its tables
# took the heap past glibc's trim threshold, so each body's compressor grew the heap
# and gave it back (three brk calls and fresh pages each): 27 us a body against 6.5 us
# at 7. A driver's heap, grown by a run, mostly holds them either way (14 us against
# 11-13 after a 300-step run). Level 7 wrote the same bytes for 240 of 241 sample
# bodies; it is the compressor's memory only: a body reads back the same whatever the
# level it was written with.
MEM_LEVEL = 7
SMALLEST = 64  # bytes of a body worth compressing

# Keys and values as the events write them; what comes last is matched most cheaply,
# so the commonest shapes (an agent turn's events) are at the end.
DICTIONARY = (
    b'{"v":1,"at":1795572783.2603114,"kind":"run_created","run_id":"20261125-021303-4e28",'
    b'"plan":{"goal":"","steps":[{"id":"","run":null,"python":null,"needs":[],'
    b'"verify":[],"irreversible":false,"idempotent":null,"approval":null}]},'
    b'"plan_path":null,"workspace":"/"}'
    b'{"v":1,"at":1795572783.2603114,"kind":"run_finished","status":"succeeded"}'
    b'{"v":1,"at":1795572783.2603114,"kind":"phase_entered","step":"understand",'
    b'"phase":"UNDERSTAND"}{"v":1,"at":1795572783.2603114,"kind":"round_opened",'
    b'"step":"execute","round":1}'
    b'{"v":2,"at":1795572783.2603114,"kind":"reminder_injected","step":"understand",'
    b'"round":1,"record":{"turn":25,"phase":"UNDERSTAND","reason":"interval",'
    b'"step_id":null,"text":"[trestle: goal reminder]\\nPhase: UNDERSTAND - find out what '
    b"the goal needs; change nothing, then report your findings (tools allowed: read, "
    b"test).\\nGoal: \\nScope: the whole workspace\\nPlan status:\\nno plan yet\\nStay on "
    b'this goal: do what the current phase and step need, nothing else.","alert":null}}'
    b'{"v":3,"at":1795572783.2603114,"kind":"step_attempt_ended","step":"s00001",'
    b'"attempt":1,"ok":true,"action":{"status":"ok","exit_code":null,"output":"",'
    b'"error":null,"duration":0.0011537370010046288},"checks":[{"check":"`test -s ` '
    b'exits 0","expected":"exit 0","actual":"exit 0","passed":true}],'
    b'"checkpoint_before":null,"checkpoint_after":null,"ask":null,"approval_stale":null,'
    b'"files":{"wrote":null,"read":{},"reads_known":false}}'
    b'{"v":2,"at":1795572783.2603114,"kind":"step_started","step":"s00001","attempt":1,'
    b'"key":"20261125-021303-4e28/s00001/1","gate":{"decision":{"tier":"log",'
    b'"source":"default","reason":"a call in scope is logged by default",'
    b'"confidence":null,"audit":null,"draw":null},"action_hash":'
    b'"d48cecc2d961031606578bf2235262761e9ddcb91785464fe96007e803548a3d",'
    b'"approval":null},"ran_on":{"host":"","pid":25055,"view":"bb0cedcf9c56e0e1"}}'
    b'{"v":1,"at":1795572783.5436910,"kind":"conversation_saved","step":"understand",'
    b'"round":1,"turn":80,"iteration":80,"messages":[{"role":"system","content":"",'
    b'"tool_calls":[],"tool_call_id":null},{"role":"user","content":"","tool_calls":[],'
    b'"tool_call_id":null}],"last_reminder":73,"told":[]}'
    b'{"v":1,"at":1795572783.2603114,"kind":"model_call_reserved","step":"understand",'
    b'"round":1,"turn":4,"tokens":9378,"cost":0.0}'
    b'{"v":1,"at":1795572783.2632306,"kind":"tool_call_ended","step":"understand",'
    b'"round":1,"turn":4,"call_id":"c3","tool":"read_file","ok":true,"content":'
    b'{"$payload":"329f518c18145981f5d8829b9d04a77a624494d06a157579e3789a43aeba84a3"},'
    b'"error":null,"data":{"path":"","lines":50,"start":1,"end":50,"truncated":false},'
    b'"probe":null}'
    b'{"v":2,"at":1795572783.2625835,"kind":"tool_call_started","step":"understand",'
    b'"round":1,"turn":4,"call_id":"c3","tool":"read_file","arguments":"{\\"path\\": '
    b'\\"\\"}","nature":"read","key":"20261125-021303-4e28/understand/1/r1/t4/c3",'
    b'"gate":{"decision":{"tier":"auto","source":"default","reason":"a read is auto by '
    b'default","confidence":null,"audit":null,"draw":null},"action_hash":'
    b'"d3b8c757b2869f03a6e9779f0c07ffddc1c2e1738dfa68e2dd16d2d59cef6f89",'
    b'"approval":null},"facts":{"nature":"read","name":"read_file","command":null,'
    b'"paths":[],"irreversible":false,"tags":[],"cost":null,"confidence":null,'
    b'"failed_attempts":0,"alerts":0,"tier":null,"confirm":null}}'
    b'{"v":1,"at":1795572783.2624538,"kind":"model_called","step":"understand",'
    b'"round":1,"turn":4,"request_hash":'
    b'"ca1de454261eaebfb1e16cf19fb95c2a2d31289119cfd05458a10cf87283bbca","response":'
    b'{"text":{"$payload":"e2e0e641931b6aa11a08da5b2c4d66e3533dfc02225635206259816525213abb"},'
    b'"tool_calls":[{"id":"c3","name":"read_file","arguments":"{\\"path\\": \\"\\"}"}],'
    b'"usage":{"input_tokens":5282,"output_tokens":0,"cost":null,"estimated":true},'
    b'"finish_reason":"tool_calls","model":""},"model":""}'
    b'{"role":"assistant","content":{"$payload":"'
    b'97109af6bcd4fd1392ac48f70c387a8313434cacb90fd11fc11103403b9b74f3"},"tool_calls":'
    b'[{"id":"c79","name":"read_file","arguments":"{\\"path\\": \\"\\"}"}],'
    b'"tool_call_id":null},{"role":"tool","content":{"$payload":"'
    b'80d728dd503e3232720a1310b23d49eb815bbe9318ff401dfdfe5deaf48563ff"},'
    b'"tool_calls":[],"tool_call_id":"c79"}'
)


# a compressor that has taken in the dictionary and nothing else; each body is
# compressed by a copy of it, which writes the same bytes as a new compressor given the
# dictionary, without the new one's allocation and its reading of the 4 KB dictionary
# (1.3-3.4 us of the 10-20 a step's body took). Copying takes the compressor's own lock, so
# threads may share it.
_PRIMED = zlib.compressobj(LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, MEM_LEVEL, zdict=DICTIONARY)


def compressed(body: str) -> bytes | None:
    """``body`` compressed, or None when that would not make it smaller."""
    raw = body.encode("utf-8", "surrogatepass")
    if len(raw) < SMALLEST:
        return None
    packer = _PRIMED.copy()
    blob = packer.compress(raw) + packer.flush()
    return blob if len(blob) < len(raw) else None


def decompressed(blob: bytes) -> str:
    """The body :func:`compressed` was given.

    Raises:
        zlib.error: ``blob`` is not a whole body compressed with the dictionary, or it
            expands past :data:`trestle.store.inflate.BODY` bytes.
        UnicodeDecodeError: it decompresses to bytes that are not the text written.
    """
    return inflated(blob, BODY, zdict=DICTIONARY).decode("utf-8", "surrogatepass")
