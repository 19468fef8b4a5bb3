"""Where the files come from, in order: `data_dir` / MLP_DATA_DIR, the user cache, Debian's
package folder, a download from the mirrors (verified, then written to the cache atomically); and
the checksums every file from every source is verified against (the official table, or a folder's
own `checksums.sha256` manifest)."""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from mlp.paths import expand, kind_of, write_atomically
from mlp.runs.data.catalogue import _MAX_FILE_BYTES, DATASETS, DOWNLOAD_TIMEOUT, MANIFEST_NAME, DataError, DatasetSpec
from mlp.runs.data.idx import _gunzip, _idx_view, _read_idx_bytes


MAX_MANIFEST_BYTES = 1 << 20       # a manifest lists a few files: read no more than this


def _read_manifest(path: Path) -> dict[str, str]:
    """Parse a sha256sum-style manifest: `<hex>  <name>` per line -> {name without .gz: hex}."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise DataError(f"the checksum manifest {path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; a manifest "
                            f"holds one '<sha256>  <file>' line per data file; fix: regenerate it with sha256sum")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the checksum manifest {path} ({exc}); fix: repair or "
                        f"delete it") from None
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise DataError(f"{path}:{lineno} is not a '<sha256>  <file>' line; fix: regenerate "
                            f"it with sha256sum on the decompressed files")
        name = parts[1].strip().lstrip("*")
        name = name[:-3] if name.endswith(".gz") else name
        sums[Path(name).name] = parts[0].lower()
    return sums


def _expected_sums(spec: DatasetSpec, directory: Path | None) -> tuple[Mapping[str, str], str]:
    """The checksums that files in `directory` must match, and where they come from."""
    if directory is not None:
        manifest = directory / MANIFEST_NAME
        if manifest.is_file():
            return _read_manifest(manifest), f"manifest {manifest}"
        squatter = _not_a_file(manifest)
        if squatter:           # a folder or a FIFO where the manifest goes: not silently the official sums
            raise DataError(f"manifest {manifest} is {squatter}, not a file; fix: replace it with the "
                            f"checksums file (SHA-256 and name per line), or remove it to check the official "
                            f"checksums")
    return spec.sha256, f"official {spec.name} checksum"


def _whose(digest: str) -> str:
    """' (it is mnist's train-images-idx3-ubyte)' when a digest belongs to a known file."""
    for spec in DATASETS.values():
        for fname, known in spec.sha256.items():
            if known == digest:
                return f" (it is {spec.name}'s {fname})"
    return ""


def _verified_view(data: bytes, what: str, fname: str, expected: Mapping[str, str],
                   origin: str, fix: str) -> np.ndarray:
    """Parse `data` (structural errors first: they say more) and check its SHA-256."""
    view = _idx_view(data, what)
    want = expected.get(fname)
    if want is None:
        raise DataError(f"{origin} has no entry for {fname}; fix: add the SHA-256 of its "
                        f"decompressed content, or remove the manifest")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        other = _whose(got)
        if other:
            fix = "fix: these are another dataset's files; point at the right folder or ask for that dataset"
        raise DataError(f"checksum mismatch for {what}: expected SHA-256 {want[:16]}... ({origin}), "
                        f"got {got[:16]}...{other}; {fix}")
    return view





def _spec(name) -> DatasetSpec:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; fix: choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def _find_files(directory: Path, spec: DatasetSpec) -> tuple[dict[str, Path], list[str]]:
    """The dataset's files in `directory` (raw preferred over .gz) and the names missing."""
    found, missing = {}, []
    for fname in spec.file_names:
        for candidate in (directory / fname, directory / (fname + ".gz")):
            if candidate.is_file():
                found[fname] = candidate
                break
        else:
            missing.append(fname)
    return found, missing


def _not_a_file(path: Path) -> str | None:
    """What stands at `path` when something does but it is not a regular file ("a folder", …)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:            # nothing there (or nothing that can be looked at)
        return None
    return None if stat.S_ISREG(mode) else kind_of(mode)


def _missing_file(directory: Path, fname: str) -> str:
    """`fname[.gz]`, or what squats on its name when that is not a file (a folder, a FIFO)."""
    for candidate in (directory / fname, directory / (fname + ".gz")):
        squatter = _not_a_file(candidate)
        if squatter:
            return f"{fname}[.gz] ({candidate.name} is {squatter}, not a file)"
    return f"{fname}[.gz]"


def _read_local(spec: DatasetSpec, directory: Path, found: Mapping[str, Path],
                fix: str) -> dict[str, np.ndarray]:
    expected, origin = _expected_sums(spec, directory)
    return {fname: _verified_view(_read_idx_bytes(path), str(path), fname, expected, origin, fix)
            for fname, path in found.items()}


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return expand(cache_dir, "the cache folder")
    env = os.environ.get("MLP_CACHE_DIR")
    if env is not None:                    # set but empty is refused by expand, never read as unset
        return expand(env, "MLP_CACHE_DIR")
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = expand(xdg, "XDG_CACHE_HOME") if xdg else expand("~", "the home folder (HOME)") / ".cache"
    return base / "mlp-sweeps"


def _reporter(progress: Callable[[str], object] | None) -> Callable[[str], object]:
    if progress is not None:
        return progress
    return lambda msg: print(msg, file=sys.stderr, flush=True)


class _DownloadFailed(Exception):
    pass


def _fetch(url: str, report: Callable[[str], object]) -> bytes:
    """GET `url` into memory, reporting progress roughly every quarter of a large file."""
    request = urllib.request.Request(url, headers={"User-Agent": "mlp-sweeps"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        chunks, got, next_mark = [], 0, 0.25
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got > _MAX_FILE_BYTES:
                raise _DownloadFailed(f"{url}: more than {_MAX_FILE_BYTES // 2**20} MiB, not a "
                                      f"(Fashion-)MNIST file")
            if total and total > 4 * 2**20 and got / total >= next_mark and got < total:
                report(f"  {url}: {got / 2**20:.1f} of {total / 2**20:.1f} MB")
                next_mark += 0.25
    if total is not None and got != total:
        raise _DownloadFailed(f"{url}: connection closed after {got} of {total} bytes")
    return b"".join(chunks)


def _describe(exc: BaseException, url: str) -> str:
    """A short reason for a failed fetch, naming the URL."""
    if isinstance(exc, (_DownloadFailed, DataError)):
        return str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"{url}: HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{url}: {exc.reason}"
    return f"{url}: {exc}"


def _download(spec: DatasetSpec, mirrors: Sequence[str], cache: Path,
              report: Callable[[str], object]) -> tuple[dict[str, np.ndarray], str]:
    """Fetch and verify all four files, then store them (decompressed) in `cache` atomically."""
    expected = spec.sha256
    fix = "fix: try another mirror (mirrors=[...] or MLP_DATA_MIRROR)"
    views: dict[str, np.ndarray] = {}
    fetched: dict[str, bytes] = {}
    used: list[str] = []
    # Files left in the cache by an earlier, partial attempt are reused if they verify.
    found = _find_files(cache, spec)[0] if cache.is_dir() else {}
    for fname in spec.file_names:
        if fname in found:
            try:
                views[fname] = _verified_view(_read_idx_bytes(found[fname]), str(found[fname]),
                                              fname, expected, "official checksum", fix)
                continue
            except DataError:
                pass
        errors = []
        for base in mirrors:
            url = base if base.endswith("/") else base + "/"
            url += fname + ".gz"
            report(f"downloading {spec.name} {fname}.gz from {url}")
            try:
                data = _gunzip(_fetch(url, report), url)
                views[fname] = _verified_view(data, url, fname, expected,
                                              f"official {spec.name} checksum", fix)
            except (OSError, http.client.HTTPException, ValueError, _DownloadFailed,
                    DataError) as exc:
                reason = _describe(exc, url)
                report(f"  failed: {reason}")
                errors.append(reason.split("; fix:")[0])
                continue
            fetched[fname] = data
            used.append(base)
            break
        else:
            raise _DownloadFailed("; ".join(errors) or "no download mirror configured")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for fname, data in fetched.items():
            write_atomically(cache / fname, lambda f, data=data: f.write(data))
            stale = cache / (fname + ".gz")
            if stale.exists():
                stale.unlink()
        where = f"cached in {cache}"
        report(f"{spec.name}: {len(fetched)} file(s) verified and {where}")
    except OSError as exc:
        where = f"not cached: {exc}"
        report(f"warning: could not write the {spec.name} files to {cache} ({exc}); they will "
               f"be downloaded again next time")
    mirror_list = ", ".join(dict.fromkeys(used)) or "an earlier partial download"
    return views, f"downloaded from {mirror_list} ({where})"


def check_data_dir(raw_dir, label: str = "--data_dir") -> Path:
    """The folder a --data_dir (or MLP_DATA_DIR) names, or one DataError when it is not a folder:
    commands that load data late (a report, a rerun) call it first, before any other work."""
    root = expand(raw_dir, label)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"data directory {root} ({label}) {what}; fix: point {label} at a "
                        f"folder holding the four IDX files (or their .gz), or drop it to "
                        f"use the cache, the Debian package or a download")
    return root


def _local_source(spec: DatasetSpec, data_dir, cache_dir) -> tuple[tuple | None, list[str]]:
    """The first local place holding all four files, found without reading them:
    ((directory, {file name: path}, source label, fix hint) or None, places searched)."""
    searched: list[str] = []
    fix_local = "fix: replace it with an intact copy, or remove the folder's files to use another source"

    # 1. --data_dir / MLP_DATA_DIR
    explicit = data_dir is not None
    raw_dir = data_dir if explicit else os.environ.get("MLP_DATA_DIR")      # set but empty: refused
    if raw_dir is not None:
        label = "--data_dir" if explicit else "MLP_DATA_DIR"
        root = check_data_dir(raw_dir, label)
        best: tuple[Path, list[str]] | None = None
        for directory in [root / sub for sub in spec.dir_names] + [root]:
            if not directory.is_dir():
                continue
            found, missing = _find_files(directory, spec)
            if not missing:
                return (directory, found, f"{directory} ({label})", fix_local), searched
            if best is None or len(missing) < len(best[1]):
                best = (directory, missing)
        if explicit:
            directory, missing = best if best is not None else (root, spec.file_names)
            raise DataError(f"data directory {root} holds no complete {spec.name}: {directory} "
                            f"lacks {', '.join(_missing_file(directory, m) for m in missing)}; fix: put the four "
                            f"IDX files in {root / spec.name} or {root}, or drop --data_dir to "
                            f"use the cache, the Debian package or a download")
        searched.append(f"{root} (MLP_DATA_DIR)")

    # 2. the user cache
    cache = _cache_root(cache_dir) / spec.name
    if cache.is_dir():
        found, missing = _find_files(cache, spec)
        if not missing:
            fix = f"fix: delete {cache} and load again to download a fresh copy"
            return (cache, found, f"{cache} (cache)", fix), searched
    searched.append(str(cache))

    # 3. the Debian dataset directory
    if spec.debian_dir:
        deb = Path(spec.debian_dir)
        if deb.is_dir():
            found, missing = _find_files(deb, spec)
            if not missing:
                pkg = spec.debian_package or "Debian dataset directory"
                fix = f"fix: reinstall it (apt-get install --reinstall {pkg})"
                return (deb, found, f"{deb} (Debian package {pkg})", fix), searched
        searched.append(str(deb))
    return None, searched


def _locate(spec: DatasetSpec, data_dir, download: bool, mirrors, cache_dir,
            progress, local=None) -> tuple[dict[str, np.ndarray], str]:
    """Find the dataset (see the module docstring) -> ({file name: verified uint8 view}, source)."""
    if local is None:
        local = _local_source(spec, data_dir, cache_dir)
    found_local, searched = local
    if found_local is not None:
        directory, found, label, fix = found_local
        return _read_local(spec, directory, found, fix), label
    cache = _cache_root(cache_dir) / spec.name

    # 4. download
    if download:
        if mirrors is None:
            env = (os.environ.get("MLP_DATA_MIRROR") or "").strip()
            if env and not re.fullmatch(r"(?:https?://[^/\s]+|file://)\S*", env, flags=re.IGNORECASE):
                raise DataError(f"MLP_DATA_MIRROR={env[:80]!r} is not an http://, https:// or file:// URL; fix: set it "
                                f"to the base URL the four .gz files are under, or unset it")
            mirrors = [env] if env else list(spec.mirrors)
        elif isinstance(mirrors, str):
            mirrors = [mirrors]
        try:
            return _download(spec, list(mirrors), cache, _reporter(progress))
        except _DownloadFailed as exc:
            reason = f"the download failed ({exc})"
    else:
        reason = "downloading is disabled"

    options = ["pass --data_dir DIR (or set MLP_DATA_DIR) to a folder with the four IDX files",
               f"put them in {cache}"]
    if spec.debian_package:
        options.append(f"run `apt-get install {spec.debian_package}`")
    options.append("allow the download (needs network access, or a mirror via MLP_DATA_MIRROR)")
    raise DataError(f"{spec.name} not found (looked in {', '.join(searched)}) and {reason}; "
                    f"fix: {'; or '.join(options)}")
