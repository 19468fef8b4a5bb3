"""The bad-input promise, checked the same way everywhere: one line `error: …` (exit code 2 unless
said otherwise), no traceback, and nothing written."""
import sqlite3
import subprocess
from pathlib import Path


def files_in(folder) -> list[str]:
    """Every file and folder under `folder` (relative paths, sorted): a snapshot to compare."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def one_line_error(proc, *words, code: int = 2) -> str:
    """`proc` (a CompletedProcess, or (returncode, stderr)) failed with `code` and exactly one line
    `error: …` on stderr that holds every word in `words`, and no traceback; returns the line."""
    returncode, err = (proc.returncode, proc.stderr) if isinstance(proc, subprocess.CompletedProcess) else proc
    assert returncode == code, (returncode, err[-3000:])
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def store_rows(store) -> list:
    """(state, exit_code) of every run in the store file (none when it does not exist)."""
    if not Path(store).exists():
        return []
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT state, exit_code FROM runs").fetchall()
    finally:
        db.close()


def check_promise(code, out, err, folder, before):
    """A train.py run on bad input: exit 2 with one line and nothing written, or a run recorded in
    a final state (finished 0, diverged 3) — never a traceback, never a row left running."""
    text = out + err
    assert "Traceback" not in text, text
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert files_in(folder) == before, "bad input wrote something"
    else:
        assert code in (0, 3), (code, text)
        recorded = store_rows(folder / "s.sqlite")
        assert len(recorded) == 1 and recorded[0] == ({0: "finished", 3: "diverged"}[code], code), recorded
