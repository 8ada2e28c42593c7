"""What mpy-cross compiles (host_tools/mpy_source.py): the names a module's strings spell go in
place of its first line, so MicroPython's parser makes those strings names, not str objects."""
import ast
import os
import subprocess
import sys
from pathlib import Path

from host_tools.mpy_source import names_first

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")


def test_the_first_comment_line_becomes_the_names_and_nothing_else_changes():
    src = ('# a module\nimport json\nA = "StartTransaction"\nB = b"StartTransaction"\n'
           'C = "short"\nD = "not a name"\nE = ("transactionId", "transactionId")\nF = "StartTransaction"\n')
    out = names_first(src)
    first, rest = out.split("\n", 1)
    assert first == "if 0: (StartTransaction, transactionId,)"
    assert rest == src.split("\n", 1)[1]
    assert names_first("import json\nA = 'StartTransaction'\n") == "import json\nA = 'StartTransaction'\n"
    assert names_first("# only short ones\nA = 'short'\n") == "# only short ones\nA = 'short'\n"
    assert names_first("# a keyword\nA = 'nonlocal'\n") == "# a keyword\nA = 'nonlocal'\n"


def test_every_firmware_module_keeps_its_lines_and_its_statements():
    """The lines keep their numbers (tracebacks name the right line) and the module holds the
    same statements after the names' block, which the compiler drops."""
    changed = 0
    for path in sorted((REPO / "firmware").rglob("*.py")):
        src = path.read_text()
        out = names_first(src)
        assert out.count("\n") == src.count("\n"), path
        if out == src:
            continue
        changed += 1
        tree = ast.parse(out)
        assert isinstance(tree.body[0], ast.If) and ast.literal_eval(tree.body[0].test) == 0, path
        assert ast.dump(ast.Module(tree.body[1:], [])) == ast.dump(ast.parse(src)), path
    assert changed > 20


MODULE = "# the strings of a module (a list: a tuple of constants is one constant object)\nWORDS = [%s]\n" % ", ".join(
    '"%sTransaction%d"' % (word, k) for word in ("Start", "Stop") for k in range(60))
IMPORT = """
import gc, sys
sys.path.insert(0, sys.argv[1])
gc.collect()
before = gc.mem_alloc()
import words
gc.collect()
print(gc.mem_alloc() - before, words.WORDS[0], words.WORDS[-1], len(words.WORDS))
"""


def test_a_module_s_strings_take_less_heap_under_micropython_as_names(tmp_path):
    """120 strings of 17-18 characters, .mpy as a board loads it: the same values, less heap."""
    taken = {}
    for how, source in (("as written", MODULE), ("names first", names_first(MODULE))):
        folder = tmp_path / how.replace(" ", "_")
        folder.mkdir()
        (folder / "words.py").write_text(source)
        subprocess.run([sys.executable, "-m", "mpy_cross", str(folder / "words.py")], check=True)
        (folder / "words.py").unlink()
        done = subprocess.run([MICROPYTHON, "-c", IMPORT, str(folder)], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, MICROPYPATH=".frozen"))
        assert done.returncode == 0, done.stderr
        heap, first, last, count = done.stdout.split()
        assert (first, last, count) == ("StartTransaction0", "StopTransaction59", "120")
        taken[how] = int(heap)
    assert taken["names first"] < 0.8 * taken["as written"], taken
