"""One connection to one store file, safe to share: opening (the file checked, the schema created or
migrated, WAL mode), short write transactions and consistent reads, and SQLite's errors as one
line naming the store.

Several processes (agents, training runs, `mlp runs`) open the same file at once, so the database
runs in WAL mode (readers never block the writer) with a busy timeout (30 s, `MLP_STORE_TIMEOUT`);
every write is one short ``BEGIN IMMEDIATE ... COMMIT`` transaction, so writers queue on the busy
timeout instead of failing with "database is locked"; a connection notices when it is used in a
forked child and opens a fresh one there (an SQLite connection must never cross ``fork``), and it
may be shared between threads (calls are serialised by a lock).

Opening checks what every process can check cheaply (it is done by every run and every command):
the path is a regular file or absent (a FIFO, socket or device would block SQLite or never hold a
store), the file is SQLite and ours (application_id, user_version), every table and column this
version reads is there, and the first page of every table can be read (damaged pages show there
first; a full `PRAGMA quick_check` reads the whole file — 76 ms for an 84 MB store from the page
cache, far more from disk, against 0.5 ms for the whole open — so it is left to the reads that meet
a damaged page later, each of which becomes the same one-line error). A new store that cannot be
made (a full disk) is removed again, so a failed creation leaves no empty file behind.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
import sqlite3
import stat
import threading
import time
import urllib.parse
from typing import Any

from mlp.errors import UsageError
from mlp.runs import interrupts
from mlp.runs.store.records import DEFAULT_STORE, DamagedRow, new_id
from mlp.runs.store.schema import _MIGRATIONS, _SCHEMA, APPLICATION_ID, SCHEMA_VERSION, _expected_columns

__all__ = ["Connection", "StoreError", "StoreBusy", "busy_timeout", "BUSY_TIMEOUT_S"]

BUSY_TIMEOUT_S = 30.0             # default wait for another writer; MLP_STORE_TIMEOUT (seconds) overrides
_SQLITE_MAGIC = b"SQLite format 3\x00"
_NOT_FILES = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
              (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
_DAMAGED = "move it aside (keep it for recovery) and pass --store with a new path"
_INHERITED: list = []   # connections inherited through fork: never used, never closed


class StoreError(UsageError):
    """The store cannot be used (damaged, unwritable, full): one line naming the store, exit 2."""


class StoreBusy(StoreError):
    """Another process held the store's write lock longer than the busy timeout. Exit code 75
    (EX_TEMPFAIL: try again later)."""

    exit_code = 75


def busy_timeout() -> float:
    """Seconds to wait for another writer: MLP_STORE_TIMEOUT, else 30."""
    text = os.environ.get("MLP_STORE_TIMEOUT")
    if not text:
        return BUSY_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:
        raise UsageError(f"MLP_STORE_TIMEOUT={text!r} must be a number of seconds in (0, 3600]; unset it for 30")
    return value


def _is_busy(e: BaseException) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


class Connection:
    """A handle on one store file (the base of `Store`). Open one per process (forks reconnect)."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path: str = os.fspath(path)
        self.create = create
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self.timeout = busy_timeout()
        made = self._check_file()
        try:
            self._conn = self._connect()
        except BaseException:
            if made is not None:
                self._remove_unmade(made)
            raise

    # ---------------------------------------------------------------- opening and closing
    def _check_file(self) -> os.stat_result | None:
        """The path is a directory's store file: a regular file (or a link to one) that starts as
        SQLite does, or absent — then, when creating, this process makes it (empty) and returns
        its stat (to remove it again if the store cannot be made). Anything else is one line."""
        path = self.path
        self._check_beside()
        found = self._stat()
        if found is None:
            if not self.create:
                raise UsageError(f"no mlp-sweeps store at {path}; create one with `mlp sweep "
                                 f"FILE.yaml` (or train with --store), or pass --store / set "
                                 f"MLP_STORE to an existing store")
            target = os.path.realpath(path)      # a link to a store yet to be made: made where it points
            parent = os.path.dirname(target)
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create store {path}: {e.strerror} ({parent}); pass "
                                 f"--store with a writable path") from None
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:          # made by another process meanwhile: checked as found
                found = self._stat()
                if found is None:
                    raise UsageError(f"cannot create store {path}: it vanished while it was made; retry") from None
            except OSError as e:
                raise UsageError(f"cannot create store {path}: {e.strerror}; pass --store with a writable "
                                 f"path") from None
            else:
                try:
                    return os.fstat(fd)
                finally:
                    os.close(fd)
        if stat.S_ISDIR(found.st_mode):
            raise UsageError(f"{path} is a directory, not an mlp-sweeps store file; pass --store "
                             f"with a file path such as {os.path.join(path, DEFAULT_STORE)}")
        if not stat.S_ISREG(found.st_mode):   # opening a FIFO blocks; a device never holds a store
            kind = next((name for test, name in _NOT_FILES if test(found.st_mode)), "not a regular file")
            raise StoreError(f"{path} is {kind}, not an mlp-sweeps store file; pass --store with the path of a "
                             f"store file (or of a new one)")
        try:
            with open(path, "rb") as f:
                header = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise UsageError(f"cannot read store {path}: {e.strerror}; check its permissions or "
                             f"pass --store with another path") from None
        if header and header != _SQLITE_MAGIC:
            raise UsageError(f"{path} is not an mlp-sweeps store (not an SQLite database); pass "
                             f"--store with another path")
        return None

    def _check_beside(self) -> None:
        """SQLite's own files beside the store (its journal, write-ahead log and shared memory,
        beside the file a link points to) are regular files or absent: SQLite opens a journal it
        finds to see whether it must roll it back, and a FIFO there blocks it beyond any signal."""
        real = os.path.realpath(self.path)
        for suffix, name in (("-journal", "journal"), ("-wal", "write-ahead log"), ("-shm", "shared-memory file")):
            try:
                mode = os.stat(real + suffix).st_mode
            except OSError:        # absent (or unreachable: then SQLite's own error says so)
                continue
            if not stat.S_ISREG(mode):
                kind = "a directory" if stat.S_ISDIR(mode) else \
                    next((what for test, what in _NOT_FILES if test(mode)), "not a regular file")
                raise StoreError(f"{real + suffix}, beside store {self.path}, is {kind}, not SQLite's {name}; "
                                 f"remove it, or pass --store with another path")

    def _stat(self) -> os.stat_result | None:
        """The store file's stat (links followed), None when there is none (nor its folder)."""
        try:
            return os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StoreError(f"{self.path} is a loop of symbolic links, not an mlp-sweeps store file; pass "
                                 f"--store with the path of a store file (or of a new one)") from None
            raise UsageError(f"cannot reach store {self.path}: {e.strerror}; check the permissions of its "
                             f"folders or pass --store with another path") from None

    def _remove_unmade(self, made: os.stat_result) -> None:
        """A store this process began to create could not be made (a full disk, an interrupt): the
        file it made is removed — only while it is that same file and still empty, so a store
        another process has meanwhile initialised in it is never touched. (SQLite removes its
        own journal when the failed transaction rolls back.)"""
        target = os.path.realpath(self.path)        # the file, not a link to it
        try:
            found = os.stat(target)
            if (found.st_dev, found.st_ino, found.st_size) == (made.st_dev, made.st_ino, 0):
                os.unlink(target)
        except OSError:
            pass

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + \
              ("?mode=rwc" if self.create else "?mode=rw")
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise UsageError(f"cannot open store {path}: {e}; check the path and its permissions "
                             f"or pass --store with another path") from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._check_schema(conn)
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as e:
            conn.close()
            if "not a database" not in str(e):      # locked, full, I/O, read-only, damaged
                raise self._error(e) from None
            raise StoreError(f"{path} is not an mlp-sweeps store (unreadable SQLite database: "
                             f"{e}); pass --store with another path") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL unless it is already. The switch needs the file to itself, and
        SQLite may answer "locked" at once (without its busy handler) while another process
        opens or initialises the same store, so a busy answer is retried until the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        path = self.path
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if version == 0:
            if not self.create:
                raise UsageError(f"{path} is an empty database, not an mlp-sweeps store; create "
                                 f"one with `mlp sweep FILE.yaml --store {path}` or pass --store "
                                 f"with another path")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:               # nobody initialised it while we waited
                    tables = conn.execute(
                        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                    ).fetchone()[0]
                    if tables:
                        raise UsageError(f"{path} is an SQLite database but not an mlp-sweeps "
                                         f"store; pass --store with another path")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    version, app_id = SCHEMA_VERSION, APPLICATION_ID
                else:
                    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if app_id != APPLICATION_ID:
            raise UsageError(f"{path} is an SQLite database but not an mlp-sweeps store; pass "
                             f"--store with another path")
        if version > SCHEMA_VERSION:
            raise UsageError(f"{path} was written by a newer mlp-sweeps (store schema "
                             f"v{version}, this version reads v{SCHEMA_VERSION}); upgrade "
                             f"mlp-sweeps or pass --store with another path")
        if version in _MIGRATIONS:
            self._migrate(conn)
        elif version < SCHEMA_VERSION:
            raise UsageError(f"{path} has store schema v{version}, which this mlp-sweeps "
                             f"cannot read (needs v{SCHEMA_VERSION}); pass --store with another "
                             f"path")
        self._check_tables(conn)

    def _check_tables(self, conn: sqlite3.Connection) -> None:
        """Every table and column of the schema is there (from the schema SQLite has parsed
        anyway), and the first row of every table can be read: a dropped table, a renamed column
        or a damaged first page is found before anything is written, not half-way through a run.
        Extra tables and columns are left alone. (About 0.1 ms.)"""
        for table, columns in _expected_columns().items():
            found = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if not found:
                raise StoreError(f"store {self.path} is damaged: it has no {table} table; {_DAMAGED}")
            missing = [c for c in columns if c not in found]
            if missing:
                raise StoreError(f"store {self.path} is damaged: its {table} table has no column "
                                 f"{', '.join(missing)}; {_DAMAGED}")
            conn.execute(f"SELECT * FROM {table} LIMIT 1").fetchall()   # its first page, and down to a row

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Up to the current schema in one transaction: v1 -> v2 (the keys other modules read from
        extra_json become columns), v2 -> v3 (a run's W&B entity and project), v3 -> v4 (the
        baselines table)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]   # as found once we hold the lock
            if version in _MIGRATIONS:
                while version < SCHEMA_VERSION:
                    for statement in _MIGRATIONS[version]:
                        conn.execute(statement)
                    version += 1
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"store {self.path} is closed")
        if os.getpid() != self._pid:        # forked: never touch the parent's connection
            _INHERITED.append(self._conn)   # ...not even to close it (keep it from GC)
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    def _error(self, e: sqlite3.Error) -> StoreError:
        """What an SQLite error means for the user, on one line naming the store."""
        text, path = str(e), self.path
        if _is_busy(e):
            return StoreBusy(f"store {path} is locked by another process for more than {self.timeout:g} s ({text}); "
                             f"retry when it is done, or set MLP_STORE_TIMEOUT to wait longer")
        if "full" in text or "disk I/O" in text:
            return StoreError(f"store {path} cannot be written ({text}): is the disk full? Free space (or pass "
                              f"--store on another disk) and retry")
        if "readonly" in text or "read-only" in text:
            return StoreError(f"store {path} is read-only ({text}); fix its permissions or pass --store with a "
                              f"writable path")
        folder = os.path.dirname(os.path.abspath(path))
        if "unable to open" in text and not os.access(folder, os.W_OK | os.X_OK):
            return StoreError(f"store {path} cannot be opened: its folder {folder} is not writable (SQLite keeps "
                              f"its journal there); fix the folder's permissions or pass --store elsewhere")
        return StoreError(f"store {path} is damaged ({text}); {_DAMAGED}")

    @contextlib.contextmanager
    def _sqlite_errors(self):
        """SQLite's errors, and values read back that are not what their column holds (a
        DamagedRow from the rows' readers in schema.py), as one-line StoreErrors naming the store."""
        try:
            yield
        except sqlite3.Error as e:
            raise self._error(e) from None
        except DamagedRow as e:
            raise StoreError(f"store {self.path} is damaged: {e}; {_DAMAGED}") from None

    @contextlib.contextmanager
    def _write(self):
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, waiting up to
        the busy timeout, so a transaction never fails half-way on lock upgrade. SQLite errors
        become one-line StoreErrors; the transaction is rolled back."""
        with self._lock, self._sqlite_errors(), interrupts.held():
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self):
        """A consistent snapshot for multi-statement reads. Inside a write transaction of this
        thread (e.g. a claim_run proposer reading histories) it simply joins that transaction."""
        with self._lock, self._sqlite_errors():
            db = self._db()
            if db.in_transaction:
                yield db
                return
            with interrupts.held():
                db.execute("BEGIN")
                try:
                    yield db
                finally:
                    if db.in_transaction:
                        db.execute("COMMIT")

    # ---------------------------------------------------------------- errors
    def _unknown_sweep(self, sweep_id: Any) -> UsageError:
        return UsageError(f"unknown sweep id {sweep_id!r} in store {self.path}; see the valid "
                          f"ids with `mlp sweeps`")

    def _unknown_run(self, run_id: Any) -> UsageError:
        return UsageError(f"unknown run id {run_id!r} in store {self.path}; see a sweep's run "
                          f"ids with `mlp runs SWEEP_ID` (sweep ids: `mlp sweeps`)")

    def _require_sweep(self, db: sqlite3.Connection, sweep_id: Any) -> None:
        if db.execute("SELECT 1 FROM sweeps WHERE id = ?", (sweep_id,)).fetchone() is None:
            raise self._unknown_sweep(sweep_id)

    def _update_run_row(self, db, run_id: Any, assignments: dict[str, Any]) -> None:
        cols = ", ".join(f"{col} = ?" for col in assignments)
        cur = db.execute(f"UPDATE runs SET {cols} WHERE id = ?",
                         (*assignments.values(), run_id))
        if cur.rowcount == 0:
            raise self._unknown_run(run_id)

    def _insert(self, db, table: str, kind: str, values: dict[str, Any],
                wanted_id: str | None = None) -> str:
        """Insert a row under `wanted_id`, or a fresh random id (retrying on the rare clash)."""
        cols = ", ".join(("id", *values))
        marks = ", ".join("?" * (len(values) + 1))
        if wanted_id is not None:
            if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (wanted_id,)).fetchone() is not None:
                raise UsageError(f"{kind} id {wanted_id!r} already exists in {self.path}; "
                                 f"unset WANDB_RUN_ID/MLP_RUN_ID or use another store")
            db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", (wanted_id, *values.values()))
            return wanted_id
        for _ in range(20):
            new = new_id()
            if db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (new,)).fetchone() is None:
                db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                           (new, *values.values()))
                return new
        raise RuntimeError(f"could not draw a free {kind} id")  # pragma: no cover
