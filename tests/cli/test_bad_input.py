"""Bad input, walked systematically: every train.py flag with its edge values, every `mlp`
subcommand with bad arguments, junk in the environment, outputs that cannot be written.

The promise checked for every case: no traceback; either one line `error: …` with exit code 2 and
nothing written (no store file, no W&B folder, no output file), or a run that ends in a final
state recorded in the store (finished 0 or diverged 3) — never a row left `running`.
Train cases run in-process on the committed subset (tests/data) with a tiny network, so the
hundreds of cases take well under a minute.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlp import config as C
from mlp.cli import main as mlp_main
from mlp.cli import train_main
from helpers.paths import DATA
from helpers.promises import check_promise, files_in

TINY = ["--data_dir", str(DATA), "-e", "1", "-nhl", "1", "-sz", "8", "--wandb_mode", "disabled"]

NUMBER_EDGES = ["0", "-1", "nan", "inf", "-inf", "1e308", "1e400", "1e-400", "abc", "", "1.5", "99999999999999999999", "0x10"]
EDGES = {
    "int": NUMBER_EDGES,
    "float": NUMBER_EDGES,
    "bool": ["maybe", "2", "", "yes", "False"],
    "choice": ["", "nonexistent", "relu;rm -rf /", "ЯЯЯ", "x" * 1000],
    "int_list": ["[]", "[0]", "[-1]", "[1e12]", "[a]", "[1,,2]", "[" + ",".join(["4"] * 2000) + "]", "[8, 4]",
                 "[[8]]", "[8]]", "((8))"],
    "str": ["", "\x01junk", "x" * 300],
}
# Flags whose values are paths or names: their own cases below (a value here would point the
# run's files somewhere else, or is a W&B name with its own rule).
OWN_CASES = {"store", "save_model", "summary_json", "data_dir", "wandb_entity", "wandb_project"}
CASES = [(name, value) for name, p in C.PARAMS.items() if name not in OWN_CASES for value in EDGES[p.kind]]


@pytest.mark.parametrize("name,value", CASES, ids=[f"{n}={v[:12]!r}" for n, v in CASES])
def test_every_flag_with_its_edge_values(work, capsys, name, value):
    before = files_in(work)
    code = train_main([*TINY, f"--{name}", value])
    out, err = capsys.readouterr()
    check_promise(code, out, err, work, before)


@pytest.mark.parametrize("flag,value", [("-lr", "1e-400"), ("-w_d", "1e-999"), ("--momentum", "0.5e-400"),
                                        ("-e", "1e-400")])
def test_a_number_too_small_for_a_float_is_not_called_zero(work, capsys, flag, value):
    """1e-400 is not 0 (the user wrote a positive number) — it underflows; the message says that,
    not "0 is out of range" (or, where 0 is allowed, silently 0)."""
    assert train_main([*TINY, flag, value]) == 2
    err = capsys.readouterr().err
    assert f"'{value}' is too small for a float: it rounds to 0" in err and err.count("\n") == 1, err


def test_a_zero_with_a_huge_exponent_is_still_zero(work, capsys):
    assert train_main([*TINY, "--momentum", "0.0e-500", "--store", str(work / "s.sqlite")]) == 0
    assert "too small" not in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--save_model", "{ro}/m.npz"], ["--summary_json", "{ro}/s.json"], ["--save_model", "{dir}"],
    ["--summary_json", "{dir}"], ["--store", "{ro}/s.sqlite"], ["--store", "{dir}"],
    ["--data_dir", "{missing}"], ["--data_dir", "{file}"], ["--wandb_project", "a/b"], ["--wandb_project", "x" * 300],
    ["--wandb_entity", "who?"], ["--wandb_mode", "online"],
], ids=lambda a: " ".join(a)[:40])
def test_paths_and_names_that_cannot_work_are_refused_before_training(work, capsys, argv):
    """Outputs are checked before training starts, so nothing is trained for nothing."""
    ro = work / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    mounted = False
    if os.geteuid() == 0:       # root ignores permissions; a read-only filesystem stops root too
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                                 capture_output=True).returncode == 0
    (work / "afile").write_text("x")
    (work / "adir").mkdir()
    argv = [a.format(ro=ro, dir=work / "adir", missing=work / "nowhere", file=work / "afile") for a in argv]
    before = files_in(work)
    try:
        if os.geteuid() == 0 and not mounted and any(str(ro) in a for a in argv):
            pytest.skip("running as root without mount permission: no folder is read-only for root here")
        code = train_main([*TINY, *argv])
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], capture_output=True)
        ro.chmod(0o755)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    check_promise(code, out, err, work, before)


# ---- spellings a tester found accepted or crashing: each is one line naming the flag, exit 2 ----------

BIG = "9" * 400                      # beyond a float (1.8e308): a message formatting it as one overflowed
SPELLINGS = {
    "integers beyond a float": [("-e", BIG), ("--epochs", "-" + BIG), ("--seed", BIG), ("--kernel_size", BIG),
                                ("--augment_shift", BIG), ("--early_stopping", BIG), ("-b", BIG), ("-nhl", BIG),
                                ("-sz", BIG), ("-e", "9" * 5000), ("-lr", BIG), ("--hidden_sizes", f"[{BIG}]"),
                                ("--conv_filters", f"[4, {BIG}]")],
    "malformed lists": [("--hidden_sizes", "[8, 16"), ("--hidden_sizes", "(8, 16]"), ("--hidden_sizes", "8 16"),
                        ("--hidden_sizes", "[8 16]"), ("--hidden_sizes", "[8,,16]"), ("--hidden_sizes", "8,16,"),
                        ("--hidden_sizes", ",8"), ("--hidden_sizes", "["), ("--hidden_sizes", "8]"),
                        ("--hidden_sizes", "[8;16]"), ("--conv_filters", "[4,"), ("--conv_filters", "(4"),
                        ("--conv_filters", "["), ("--conv_filters", "4 8"), ("--conv_filters", "[,]")],
    "odd digits": [("-e", "1_0"), ("-e", "١"), ("-e", "１０"), ("--seed", "٣"), ("-b", "0x10"), ("-e", "1 0"),
                   ("-lr", "1_0e-3"), ("-lr", "١e-3"), ("--dropout", "0.1_0"), ("--hidden_sizes", "[1_6]"),
                   ("--hidden_sizes", "[١٦]"), ("--conv_filters", "[٤]")],
    "empty values": [("--data_dir", ""), ("--store", ""), ("--save_model", ""), ("--summary_json", ""),
                     ("--resume", ""), ("--features", ""), ("--data_dir", "  "), ("--wandb_entity", ""),
                     ("--preset", ""), ("--output_activation", ""), ("--hidden_sizes", ""), ("--store", " ")],
    "W&B names": [("-we", "ü\x01"), ("-we", "a\nb"), ("-wp", "a\tb"), ("-wp", "x\x7f"), ("-we", "a\u200bb"),
                  ("--wandb_project", "\x1b[31mred")],
}
SPELLING_CASES = [(kind, flag, value) for kind, cases in SPELLINGS.items() for flag, value in cases]


def _flag_name(flag):
    """The long name argparse's message shows: -e is --epochs."""
    return next(f"--{p.name}" for p in C.PARAMS.values() if flag in (p.short, f"--{p.name}"))


@pytest.mark.parametrize("kind,flag,value", SPELLING_CASES, ids=[f"{k}: {f} {v[:10]!r}" for k, f, v in SPELLING_CASES])
def test_bad_spellings_are_one_line_naming_the_flag(work, capsys, kind, flag, value):
    before = files_in(work)
    code = train_main([*TINY, flag, value])
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    check_promise(code, out, err, work, before)
    assert _flag_name(flag) in err and len(err) < 400, err
    if kind == "empty values" and flag in ("--data_dir", "--store", "--save_model", "--summary_json", "--features"):
        assert "the path is empty" in err, err


@pytest.mark.parametrize("argv,expected", [
    (["-e", "10"], {"epochs": 10}), (["-e", "+10"], {"epochs": 10}), (["--epochs=10.0"], {"epochs": 10}),
    (["-e", "1e1"], {"epochs": 10}), (["--seed", "4294967295"], {"seed": 4294967295}),
    (["--learning_rate", "1e-3"], {"learning_rate": 1e-3}), (["-lr", "5E-4"], {"learning_rate": 5e-4}),
    (["-lr", ".5"], {"learning_rate": 0.5}), (["-lr", "2."], {"learning_rate": 2.0}),
    (["--hidden_sizes", "[8,16]"], {"hidden_sizes": [8, 16]}), (["--hidden_sizes=[8, 16]"], {"hidden_sizes": [8, 16]}),
    (["--hidden_sizes", "8,16"], {"hidden_sizes": [8, 16]}), (["--hidden_sizes", " 8 , 16"], {"hidden_sizes": [8, 16]}),
    (["--hidden_sizes", "(8,16)"], {"hidden_sizes": [8, 16]}),
    (["--hidden_sizes", "[8,16,]"], {"hidden_sizes": [8, 16]}),
    (["--hidden_sizes", "(8,)"], {"hidden_sizes": [8]}), (["--hidden_sizes", "8"], {"hidden_sizes": [8]}),
    (["--hidden_sizes", "None"], {"hidden_sizes": None}), (["--conv_filters", ""], {"conv_filters": None}),
    (["--conv_filters", "[]"], {"conv_filters": None}), (["--conv_filters", "[4, 8]"], {"conv_filters": [4, 8]}),
    (["--data_dir", "d"], {"data_dir": "d"}), (["-we", "ü-team"], {"wandb_entity": "ü-team"}),
    (["-wp", "my project"], {"wandb_project": "my project"}), ([], {"data_dir": None, "store": None, "resume": None}),
], ids=lambda v: " ".join(v)[:30] if isinstance(v, list) else "")
def test_valid_spellings_still_parse(argv, expected):
    from mlp.cli.flags import parse_train_args
    config = parse_train_args(argv)
    assert {k: config[k] for k in expected} == expected


def test_valid_spellings_still_train(work, capsys):
    code = train_main(["--data_dir", str(DATA), "-e", "1", "--hidden_sizes", "(8, 4,)", "--learning_rate", "1e-3",
                       "--seed", "+7", "--wandb_mode", "disabled"])
    out, err = capsys.readouterr()
    assert code == 0, err
    check_promise(code, out, err, work, set())


def test_epochs_zero_is_bad_input_not_a_finished_run(work, capsys):
    before = files_in(work)
    assert train_main([*TINY, "-e", "0"]) == 2
    out, err = capsys.readouterr()
    assert "epochs" in err
    check_promise(2, out, err, work, before)


def test_a_network_that_cannot_fit_in_memory_is_refused_with_an_estimate(work, capsys):
    before = files_in(work)
    for argv in (["-sz", "100000000", "-nhl", "3"], ["--hidden_sizes", "[50000000, 50000000]"]):
        assert train_main([*TINY[:4], "--wandb_mode", "disabled", *argv]) == 2
        out, err = capsys.readouterr()
        assert "GiB" in err and "needs about" in err, err
        check_promise(2, out, err, work, before)


def _subset_without_class(folder, missing_class=3):
    """A copy of the subset whose training labels never show one class (and a manifest for it)."""
    import gzip
    import hashlib
    from mlp.runs.data import encode_idx, read_idx
    out = folder / "fashion_mnist"
    out.mkdir(parents=True)
    src = DATA / "fashion_mnist"
    images, labels = read_idx(src / "train-images-idx3-ubyte.gz"), read_idx(src / "train-labels-idx1-ubyte.gz")
    keep = labels != missing_class
    files = {"train-images-idx3-ubyte": encode_idx(images[keep]), "train-labels-idx1-ubyte": encode_idx(labels[keep]),
             "t10k-images-idx3-ubyte": gzip.decompress((src / "t10k-images-idx3-ubyte.gz").read_bytes()),
             "t10k-labels-idx1-ubyte": gzip.decompress((src / "t10k-labels-idx1-ubyte.gz").read_bytes())}
    lines = []
    for name, raw in files.items():
        (out / name).write_bytes(raw)
        lines.append(f"{hashlib.sha256(raw).hexdigest()}  {name}")
    (out / "checksums.sha256").write_text("\n".join(lines) + "\n")
    return folder


def test_a_training_split_that_lacks_a_class_is_refused(work, capsys):
    data = _subset_without_class(work / "data")
    before = files_in(work)
    assert train_main(["--data_dir", str(data), "-e", "1", "--wandb_mode", "disabled"]) == 2
    out, err = capsys.readouterr()
    assert "no image of class Dress" in err, err
    check_promise(2, out, err, work, before)


# ---- the environment ---------------------------------------------------------------------------------

@pytest.mark.parametrize("env,fragment", [
    ({"WANDB_RUN_ID": "../../etc"}, "WANDB_RUN_ID"),
    ({"WANDB_RUN_ID": "x" * 100}, "WANDB_RUN_ID"),
    ({"WANDB_SWEEP_ID": "a b"}, "WANDB_SWEEP_ID"),
    ({"WANDB_SWEEP_PARAM_PATH": "{missing}"}, "cannot read"),
    ({"WANDB_SWEEP_PARAM_PATH": "{binary}"}, "not a YAML"),
    ({"WANDB_SWEEP_PARAM_PATH": "{list}"}, "mapping"),
    ({"WANDB_SWEEP_PARAM_PATH": "{badvalue}"}, "learning_rate"),
    ({"WANDB_SWEEP_PARAM_PATH": "{unknown}"}, "colour"),
    ({"WANDB_MODE": "sometimes"}, "WANDB_MODE"),
    ({"MLP_STORE_TIMEOUT": "soon"}, "MLP_STORE_TIMEOUT"),
    ({"MLP_STORE_TIMEOUT": "-5"}, "MLP_STORE_TIMEOUT"),
    # what wandb reads, checked before anything is written (wandb would refuse it after the row exists)
    ({"WANDB_MODE": "Offline"}, "WANDB_MODE"),
    ({"WANDB_MODE": "ONLINE"}, "WANDB_MODE"),
    ({"WANDB_PROJECT": "a/b"}, "WANDB_PROJECT"),
    ({"WANDB_PROJECT": "x" * 200}, "WANDB_PROJECT"),
    ({"WANDB_PROJECT": "what?"}, "WANDB_PROJECT"),
    ({"WANDB_ENTITY": "team:x"}, "WANDB_ENTITY"),
    ({"WANDB_ENTITY": "%"}, "WANDB_ENTITY"),
    ({"WANDB_ENTITY": "x\ny"}, "WANDB_ENTITY"),        # control characters: refused as -we refuses them
    ({"WANDB_ENTITY": "ü\x01"}, "WANDB_ENTITY"),
    ({"WANDB_PROJECT": "a\tb"}, "WANDB_PROJECT"),
    ({"WANDB_PROJECT": "p\x7f"}, "WANDB_PROJECT"),
    ({"WANDB_SERVICE": "garbage"}, "WANDB_SERVICE"),
    ({"WANDB_SERVICE": "3-12-tcp-localhost-"}, "WANDB_SERVICE"),
    ({"WANDB_DIR": "{list}"}, "WANDB_DIR"),
    # the rest as wandb's own Settings read them: one line naming the variable, before any row
    ({"WANDB_INIT_TIMEOUT": "soon"}, "WANDB_INIT_TIMEOUT='soon' is not a value wandb accepts"),
    ({"WANDB_CONSOLE": "bogus"}, "WANDB_CONSOLE='bogus' is not a value wandb accepts"),
    ({"WANDB_DISABLE_CODE": "maybe"}, "WANDB_DISABLE_CODE='maybe' is not a value wandb accepts"),
    ({"WANDB_SILENT": "2"}, "WANDB_SILENT='2' is not a value wandb accepts"),
    ({"WANDB_X_STATS_SAMPLING_INTERVAL": "often"}, "WANDB_X_STATS_SAMPLING_INTERVAL"),
    # ...including the ones wandb refuses with its own UsageError, not pydantic's (they were tracebacks)
    ({"WANDB_RUN_ID": ""}, "WANDB_RUN_ID='' is not a value wandb accepts"),
    ({"WANDB_SWEEP_ID": ""}, "WANDB_SWEEP_ID='' is not a value wandb accepts"),
    ({"WANDB__SERVICE_WAIT": "-1"}, "WANDB__SERVICE_WAIT='-1' is not a value wandb accepts"),
    ({"WANDB_X_STATS_SAMPLING_INTERVAL": "0.01"}, "WANDB_X_STATS_SAMPLING_INTERVAL='0.01' is not"),
    ({"WANDB_API_KEY": " abc "}, "WANDB_API_KEY=(hidden) is not a value wandb accepts"),   # a key is never shown
    ({"WANDB_BASE_URL": "http://[::1"}, "WANDB_BASE_URL"),
    ({"WANDB_DIR": "~nosuchuser-mlp/w"}, "WANDB_DIR"),
    ({"MLP_WANDB_TIMEOUT": "inf"}, "MLP_WANDB_TIMEOUT"),
    ({"MLP_WANDB_TIMEOUT": "1e308"}, "MLP_WANDB_TIMEOUT"),
    ({"MLP_WANDB_TIMEOUT": "nan"}, "MLP_WANDB_TIMEOUT"),
    ({"MLP_WANDB_TIMEOUT": "0"}, "MLP_WANDB_TIMEOUT"),
    ({"MLP_WANDB_TIMEOUT": "-1"}, "MLP_WANDB_TIMEOUT"),
    ({"MLP_WANDB_TIMEOUT": "soon"}, "MLP_WANDB_TIMEOUT"),
    ({"MLP_DATA_DIR": "~nosuchuser-mlp/d"}, "MLP_DATA_DIR"),
    ({"MLP_DATA_DIR": ""}, "MLP_DATA_DIR: the path is empty"),         # set but empty is not "unset"
    ({"MLP_CACHE_DIR": ""}, "MLP_CACHE_DIR: the path is empty"),
    ({"MLP_CACHE_DIR": "~nosuchuser-mlp/c"}, "MLP_CACHE_DIR"),
    ({"MLP_STORE": "~nosuchuser-mlp/s.sqlite"}, "MLP_STORE"),
], ids=lambda v: str(v)[:40])
def test_junk_in_the_environment_is_one_line_and_writes_nothing(work, capsys, monkeypatch, env, fragment):
    (work / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (work / "list.yaml").write_text("- 1\n- 2\n")
    (work / "badvalue.yaml").write_text("learning_rate: {value: -1}\n")
    (work / "unknown.yaml").write_text("colour: {value: red}\n")
    before = files_in(work)
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(missing=work / "nope.yaml", binary=work / "binary.yaml",
                                             list=work / "list.yaml", badvalue=work / "badvalue.yaml",
                                             unknown=work / "unknown.yaml"))
    argv = list(TINY)
    if any(k.startswith(("WANDB_", "MLP_WANDB")) for k in env):      # W&B's variables matter when W&B runs
        argv += ["--wandb_mode", "offline"]
    if "MLP_DATA_DIR" in env:                                         # ...and MLP_DATA_DIR without --data_dir
        argv = argv[2:]
    code = train_main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and fragment in err, (code, err)
    check_promise(code, out, err, work, before)


# ---- mlp subcommands ---------------------------------------------------------------------------------

def _store(work):
    from mlp.runs.store import Store
    with Store(work / "s.sqlite") as store:
        sweep = store.create_sweep({"method": "grid", "parameters": {"epochs": {"value": 1}}}, "", name="x")
    return sweep


SUBCOMMAND_CASES = [
    ["fly"], ["sweep"], ["sweep", "{missing}"], ["sweep", "/dev/zero"], ["sweep", "{dir}"], ["sweep", "{binary}"],
    ["sweep", "{bomb}"], ["sweep", "{scalar}"], ["sweep", "{plumbing}"], ["sweep", "{negbatch}"],
    ["sweep", "{hyperband}"], ["sweep", "{outside}"], ["sweep", "{normal}"], ["sweep", "{intuniform_float}"],
    ["sweep", "{good}", "--count", "0"], ["sweep", "{good}", "--jobs", "-1"], ["sweep", "{good}", "--seed", "-3"],
    ["sweep", "{good}", "--count", "nan"], ["sweep", "{good}", "--name", "a\nb\x1b[31mred"], ["sweep", "{good}", "--name", ""],
    ["sweep", "{good}", "--name", "x" * 300],
    ["agent"], ["agent", "nosuchid"], ["agent", "{sweep}", "--count", "0"], ["agent", "{sweep}", "--count", "1e400"],
    ["runs"], ["runs", "nosuchid"], ["runs", "{sweep}", "--json", "--colour"],
    ["sweeps", "--store", "{dir}"], ["sweeps", "--store", "{textfile}"],
    ["report", "nosuchid"], ["report", "{sweep}"], ["report", "{sweep}", "--out", "{textfile}"],
    ["rerun", "nosuchid"], ["rerun", "{sweep}", "--top", "0"], ["rerun", "{sweep}", "--dataset", "cifar"],
    ["rerun", "{sweep}"],
    ["sync", "nosuchid"], ["sync", "{sweep}"], ["sync", "{sweep}", "--project", "a/b", "--dry_run"],
    ["sync", "{sweep}", "--entity", "x" * 200, "--dry_run"], [],
    ["evaluate"], ["evaluate", "{missing}"], ["evaluate", "{textfile}"], ["evaluate", "{dir}"],
    ["evaluate", "{textfile}", "-d", "svhn"],
]


@pytest.mark.parametrize("argv", SUBCOMMAND_CASES, ids=lambda a: " ".join(a)[:40])
def test_every_subcommand_with_bad_arguments(work, capsys, argv):
    sweep = _store(work)
    (work / "textfile").write_text("not a store\n" * 10)
    (work / "dir").mkdir()
    (work / "binary.yaml").write_bytes(b"\xff\xfe" * 100)
    (work / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
        + "method: grid\nparameters: {epochs: {values: *i}}\n")
    sweeps = {
        "scalar": "method: grid\nparameters: {epochs: 5}\n",
        "plumbing": "method: grid\nparameters: {store: {value: other.sqlite}}\n",
        "negbatch": "method: random\nparameters: {batch_size: {distribution: int_uniform, min: -5, max: 10}}\n",
        "hyperband": "method: random\nmetric: {name: val_accuracy, goal: maximize}\nearly_terminate: {type: hyperband, "
                     "min_iter: 2, eta: 1}\nparameters: {epochs: {values: [1, 2]}}\n",
        "outside": "program: ../train.py\nmethod: grid\nparameters: {epochs: {value: 1}}\n",
        "normal": "method: random\nparameters: {learning_rate: {distribution: normal, mu: 0.001, sigma: 0.01}}\n",
        "intuniform_float": "method: random\nparameters: {epochs: {distribution: uniform, min: 1, max: 3.5}}\n",
        "good": "method: grid\nparameters: {epochs: {value: 1}}\n",
    }
    for name, text in sweeps.items():
        (work / f"{name}.yaml").write_text(text)
    (work / "train.py").write_text("")      # the program the good sweep names
    names = {"missing": work / "nope", "dir": work / "dir", "textfile": work / "textfile", "sweep": sweep,
             "binary": work / "binary.yaml", "bomb": work / "bomb.yaml",
             **{name: work / f"{name}.yaml" for name in sweeps}}
    argv = [a.format(**names) for a in argv]
    before = files_in(work)
    code = mlp_main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out + err, err
    assert files_in(work) == before


@pytest.mark.parametrize("argv,flag", [
    (["agent", "{sweep}", "--count", BIG], "--count"), (["agent", "{sweep}", "--count", "9" * 5000], "--count"),
    (["agent", "{sweep}", "--count", "1_0"], "--count"), (["agent", "{sweep}", "--count", "١"], "--count"),
    (["sweep", "x.yaml", "--count", BIG], "--count"), (["sweep", "x.yaml", "--jobs", BIG], "--jobs"),
    (["sweep", "x.yaml", "--seed", BIG], "--seed"), (["rerun", "{sweep}", "--top", BIG], "--top"),
    (["rerun", "{sweep}", "--epochs", "-" + BIG], "--epochs"), (["baselines", "--jobs", BIG], "--jobs"),
    (["sync", "{sweep}", "--project", "a/b", "--dry_run"], "--project"),
    (["sync", "{sweep}", "--project", "a\nb", "--dry_run"], "--project"),
    (["sync", "{sweep}", "--project", "", "--dry_run"], "--project"),
    (["sync", "{sweep}", "--entity", "ü\x01", "--dry_run"], "--entity"),
    (["sync", "{sweep}", "--entity", "", "--dry_run"], "--entity"),
], ids=lambda a: " ".join(a)[:40] if isinstance(a, list) else a)
def test_subcommand_numbers_and_names_are_one_line_naming_the_flag(work, capsys, argv, flag):
    """argparse's own wording for a type that raised ("invalid <lambda> value") or a traceback
    (an OverflowError is no ValueError) never reaches the user: the schema's message does."""
    argv = [a.format(sweep=_store(work)) for a in argv]
    before = files_in(work)
    code = mlp_main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    assert f"argument {flag}:" in err and "invalid" not in err and "<lambda>" not in err and len(err) < 400, err
    assert files_in(work) == before


# ---- crafted model files ------------------------------------------------------------------------------

def _npz(path, meta, **arrays):
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
    return path


@pytest.mark.parametrize("make", [
    lambda d: _npz(d / "m.npz", {"format": "mlp-sweeps", "version": 1, "config": {"layer_sizes": [784, 10],
                                                                                  "bogus_key": 1}}),
    lambda d: _npz(d / "m.npz", {"format": "mlp-sweeps", "version": 1, "config": {"layer_sizes": "lots"}}),
    lambda d: _npz(d / "m.npz", {"format": "mlp-sweeps", "version": 1,
                                 "config": {"layer_sizes": [784, 10 ** 9, 10]}}),
    lambda d: _npz(d / "m.npz", {"format": "mlp-sweeps", "version": 1, "config": {"layer_sizes": [784, 10]}},
                   param_0=np.array(["a"] * 7840).reshape(784, 10), param_1=np.zeros(10)),
    lambda d: _npz(d / "m.npz", {"format": "mlp-sweeps", "version": 99, "config": {}}),
    lambda d: _npz(d / "m.npz", ["not", "a", "dict"]),
], ids=["unknown key", "wrong type", "absurd size", "string weights", "future version", "meta not a mapping"])
def test_crafted_model_files_are_one_line_errors(work, capsys, make):
    path = make(work)
    code = mlp_main(["evaluate", str(path), "--data_dir", str(DATA)])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err


def test_an_npy_header_declaring_a_terabyte_is_refused_without_allocating(work, capsys):
    """The member's header says (10**6, 10**6) float64; the loader must not try to allocate it."""
    import zipfile
    path = _npz(work / "m.npz", {"format": "mlp-sweeps", "version": 1, "config": {"layer_sizes": [784, 10]}},
                param_1=np.zeros(10, np.float32))
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1)))
    header["shape"] = (10 ** 6, 10 ** 6)
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("param_0.npy", buf.getvalue() + b"\0" * 64)
    code = subprocess.run([sys.executable, "-c", "import resource, sys; "
                           "resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30)); "
                           "from mlp.cli import main; sys.exit(main(sys.argv[1:]))",
                           "evaluate", str(path), "--data_dir", str(DATA)],
                          capture_output=True, text=True, timeout=120)
    assert code.returncode == 2 and code.stderr.startswith("error: "), code.stderr
    assert "Traceback" not in code.stderr
