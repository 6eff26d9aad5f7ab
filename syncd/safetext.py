"""Text from sources made safe to show a person: no terminal control, visible text kept.

Titles, notes, handles, error messages and mail bodies come from people and programs
outside syncd. Shown raw on a terminal, an escape sequence can retitle the window, clear the
screen or hide a line; a carriage return or backspace can overwrite what came before; a line
break can forge a table row; a bidi override can make "REQ-12" read as "21-QER". `safe_text`
is the one function every human view passes such text through. It never changes what is
stored: `--json` and the ledger keep the exact value.

What it does, in order:
- removes whole escape sequences, 7-bit (ESC ...) and 8-bit (C1 CSI, OSC, DCS...): CSI
  (colours, cursor moves, clearing), OSC (window title, hyperlinks; ended by BEL or ST),
  DCS/SOS/PM/APC strings, and two-character escapes. A terminal shows none of their bytes,
  so removing them keeps exactly the text a person would have seen;
- turns line and page breaks, tabs, CR and the Unicode line/paragraph separators into one
  space (unless `keep_newlines`, for multi-line bodies, where LF stays);
- drops every other C0 and C1 control character (NUL, BEL, BS, DEL, a stray ESC, ...) and
  the bidi embedding, override and isolate characters and marks.
"""

from __future__ import annotations

import re

# 7-bit introducers and their 8-bit C1 equivalents.
_ESC = "\x1b"
_ST = "(?:\x1b\\\\|\x9c)"  # String Terminator: ESC \ or C1 ST
# CSI: parameters 0x30-0x3F, intermediates 0x20-0x2F, one final byte 0x40-0x7E.
_CSI = r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
# OSC: ended by BEL or ST. The body stops at the next ESC, so an unterminated one costs a
# linear scan, never a quadratic one; its introducer is then dropped as a stray control.
_OSC = rf"(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|{_ST})"
# DCS, SOS, PM, APC: strings ended by ST.
_STRING = rf"(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*{_ST}"
# Any other escape: intermediates then one final byte (ESC c resets the terminal, ESC ( B ...).
_OTHER = r"\x1b[\x20-\x2f]*[\x30-\x7e]"
_SEQUENCE = re.compile(f"{_OSC}|{_STRING}|{_CSI}|{_OTHER}")

# Characters that separate text visibly: kept as one space (LF kept when asked).
_BREAKS = "\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029"
# Bidi: LRM, RLM, ALM; embeddings and overrides LRE..RLO (U+202A-202E); isolates
# LRI..PDI (U+2066-2069).
_BIDI = "\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069"
_DROP = re.compile(f"[\x00-\x08\x0e-\x1b\x7f\x80-\x84\x86-\x9f{_BIDI}]")
_BREAK = re.compile(f"[{_BREAKS}]")
_BREAK_NOT_LF = re.compile(f"[{_BREAKS.replace(chr(10), '')}]")


def safe_text(text: str, *, keep_newlines: bool = False) -> str:
    """`text` as a terminal or mail reader should show it: escape sequences and control
    characters removed, breaks as spaces (LF kept with `keep_newlines`), visible text kept."""
    text = _SEQUENCE.sub("", text)
    if keep_newlines:
        text = text.replace("\r\n", "\n")
        text = _BREAK_NOT_LF.sub(" ", text)
    else:
        text = _BREAK.sub(" ", text)
    return _DROP.sub("", text)
