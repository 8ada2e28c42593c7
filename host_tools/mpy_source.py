"""What mpy-cross compiles: a firmware module's source with the names its strings spell first.

MicroPython's parser makes a string literal a name (a qstr) when it has 10 characters or fewer,
or when the name is known already; else it is a str object of its own. Loaded on a board, each
such object takes heap (from a ROMFS image about 34-40 bytes here even though its characters stay
in the image, as .mpy the characters too), once per module that has it; a name is interned once
for all of them. The firmware spells OCPP's names as strings ("StartTransaction",
"transactionId", "SuspendedEVSE", ...): 1,041 of those objects took 22 KiB of the Pico W's heap
(docs/boards.md). So the module's first line, a comment, becomes `if 0: (StartTransaction, ...)`:
the parser interns those names before it meets the strings, the compiler drops the block, and
every line keeps its number for the tracebacks."""
from __future__ import annotations

import ast
import io
import keyword
import tokenize

# MICROPY_ALLOC_PARSE_INTERN_STRING_LEN: shorter literals are interned by the parser anyway.
INTERNED_ANYWAY = 10


def names_first(source: str) -> str:
    """`source` with the names its string literals spell (over INTERNED_ANYWAY characters, each
    once) in place of its first line when that is a comment; unchanged otherwise."""
    first, newline, rest = source.partition("\n")
    if not first.lstrip().startswith("#") or not newline:
        return source
    names: list[str] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source   # mpy-cross says what is wrong with it
    for tok in tokens:
        if tok.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):
            continue
        if (isinstance(value, str) and len(value) > INTERNED_ANYWAY and value.isidentifier()
                and not keyword.iskeyword(value) and value not in names):
            names.append(value)
    if not names:
        return source
    return "if 0: (%s,)\n%s" % (", ".join(names), rest)
