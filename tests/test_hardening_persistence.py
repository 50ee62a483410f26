"""Data-loss hardening: recforge never replaces what it did not write, replaces its own
folders atomically (crash-safe, locked), writes a model with its catalogue as one unit, and
reports every damaged saved file in one line (exit 2 from the command line)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.data.interactions import Interactions
from recforge.errors import ConcurrentWriteError, CorruptFileError, InputError, OutputExistsError
from recforge.io import MARKER, atomic_dir, atomic_path, recover, verify_folder
from recforge.models import Recommender
from recforge.models.base import model_output
from recforge.retrieval import ExactIndex
from recforge.retrieval.retriever import load_retriever, save_catalogue

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = """
[experiment]
name = "crash"
seeds = [0]
[data]
dataset = "synthetic"
options = { n_users = 80, n_items = 60, n_interactions = 1500 }
[split]
method = "leave-last-out"
[evaluation]
protocols = ["full"]
metrics = ["hr"]
cutoffs = [5]
[[models]]
name = "most-popular"
[report]
enabled = false
"""


# ---------------------------------------------------------------------- helpers
def write_log(path: Path, seed: int = 0, n: int = 600) -> Path:
    """An interaction CSV with string user and item ids."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user": [f"u{u}" for u in rng.integers(0, 40, n)],
                          "item": [f"i{i}" for i in rng.integers(0, 50 + seed, n)]})
    frame.to_csv(path, index=False)
    return path


def train(folder: Path, log: Path) -> int:
    """``recforge train`` of a small iALS model on ``log`` into ``folder``."""
    return main(["train", "--dataset", str(log), "--model", "ials", "--param", "factors=4",
                 "--param", "epochs=2", "--out", str(folder)])


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two logs of the same size whose item ids differ (``i..`` and ``j..``)."""
    folder = tmp_path_factory.mktemp("logs")
    first = write_log(folder / "a.csv", 0)
    second = folder / "b.csv"
    second.write_text(first.read_text().replace(",i", ",j").replace("jtem", "item"))
    return first, second


@pytest.fixture
def model_dir(tmp_path: Path, logs: tuple[Path, Path]) -> Path:
    assert train(tmp_path / "model", logs[0]) == 0
    return tmp_path / "model"


def recommend(folder: Path, capsys: pytest.CaptureFixture, user: str = "u3") -> tuple[int, str]:
    """Exit status and stderr (stdout when it succeeds) of ``recforge recommend``."""
    code = main(["recommend", "--model", str(folder), "--user", user, "--json"])
    out = capsys.readouterr()
    return code, out.out if code == 0 else out.err


def one_line_naming(err: str, name: str) -> bool:
    """One line, no traceback, matching ``name`` (a regular expression or a path)."""
    return (len(err.strip().splitlines()) == 1 and "Traceback" not in err
            and (name in err or re.search(name, err) is not None))


def make_legacy(folder: Path) -> None:
    """Turn a saved model into the format before markers (format_version 1, no marker)."""
    (folder / MARKER).unlink()
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(meta | {"format_version": 1}))


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name
                  or p.name.endswith(".lock"))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def fitted(seed: int = 0) -> Recommender:
    from recforge.models import MostPopular

    rng = np.random.default_rng(seed)
    return MostPopular().fit(Interactions.from_arrays(rng.integers(0, 9, 60),
                                                      rng.integers(0, 7, 60)))


# ---------------------------------------------------------------------- ownership
def test_train_refuses_a_users_folder_and_a_file(tmp_path: Path, logs: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    assert train(mine, logs[0]) == 2
    assert one_line_naming(capsys.readouterr().err, str(mine))
    assert train(mine, tmp_path / "no-such.csv") == 2  # --out is checked before the data
    assert one_line_naming(capsys.readouterr().err, str(mine))
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    file = tmp_path / "notes.txt"
    file.write_text("keep me too")
    assert train(file, logs[0]) == 2
    assert one_line_naming(capsys.readouterr().err, str(file))
    assert file.read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]


def test_save_refuses_foreign_targets_and_replaces_its_own(tmp_path: Path) -> None:
    model = fitted()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(OutputExistsError, match="other"):
        model.save(tmp_path / "other")
    (tmp_path / "link").symlink_to(tmp_path / "other")
    with pytest.raises(OutputExistsError, match="symbolic link"):
        model.save(tmp_path / "link")
    (tmp_path / "empty").mkdir()
    model.save(tmp_path / "empty")  # an empty folder is fine
    model.save(tmp_path / "empty")  # and so is an earlier model folder
    make_legacy(tmp_path / "empty")
    model.save(tmp_path / "empty")  # ... also one of the format before markers
    assert verify_folder(tmp_path / "empty", "model") is not None
    index = ExactIndex().build(np.eye(3, dtype=np.float32))
    with pytest.raises(OutputExistsError, match="recforge model folder, not a recforge index"):
        index.save(tmp_path / "empty")
    assert (tmp_path / "other" / "x").read_text() == "x"


def test_a_users_file_added_to_an_earlier_model_folder_is_never_lost(tmp_path: Path) -> None:
    model = fitted()
    model.save(tmp_path / "m")
    (tmp_path / "m" / "notes").mkdir()
    (tmp_path / "m" / "notes" / "why.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"files recforge did not write \(notes/why.txt\)"):
        model.save(tmp_path / "m")
    assert main(["train", "--model", "most-popular", "--dataset", "synthetic",
                 "--out", str(tmp_path / "m")]) == 2
    assert (tmp_path / "m" / "notes" / "why.txt").read_text() == "mine"
    (tmp_path / "m" / "notes" / "why.txt").unlink()
    model.save(tmp_path / "m")  # an empty folder left behind is not a user's file


def test_run_does_not_take_a_stray_summary_json_for_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from recforge.experiments import runner

    experiment = tmp_path / "crash.toml"
    experiment.write_text(TINY_RUN)
    stray = tmp_path / "results"
    stray.mkdir()
    (stray / "summary.json").write_text("{}")
    (stray / "data.csv").write_text("precious")
    with monkeypatch.context() as patch:  # refused before the experiment runs
        patch.setattr(runner, "run_experiment", lambda *a, **k: pytest.fail("it ran"))
        assert main(["run", str(experiment), "--out", str(stray)]) == 2
    assert one_line_naming(capsys.readouterr().err, str(stray))
    assert (stray / "data.csv").read_text() == "precious"
    run = tmp_path / "run"
    assert main(["run", str(experiment), "--out", str(run)]) == 0
    assert main(["run", str(experiment), "--out", str(run)]) == 0  # its own: replaced
    assert verify_folder(run, "run")["kind"] == "run"
    assert leftovers(tmp_path) == []


def test_every_writer_refuses_a_folder_it_did_not_write(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from recforge.experiments.rundir import run_output
    from recforge.nn.checkpoint import save_checkpoint
    from recforge.report import write_report

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "tune.json").write_text("{}")
    assert main(["split", "--dataset", "synthetic", "--out", str(mine)]) == 2
    assert one_line_naming(capsys.readouterr().err, str(mine))
    for write in (lambda: run_output(mine, "tune").__enter__(),
                  lambda: save_checkpoint(mine, {}, {}),
                  lambda: write_report(None, mine),  # type: ignore[arg-type]
                  lambda: ExactIndex().build(np.eye(2, dtype=np.float32)).save(mine)):
        with pytest.raises(OutputExistsError, match="recforge did not write"):
            write()
    assert [p.name for p in mine.iterdir()] == ["tune.json"]


def test_evaluate_json_replaces_only_its_own_file(tmp_path: Path, logs: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "result.json"
    args = ["evaluate", "--dataset", str(logs[0]), "--model", "most-popular", "--metrics",
            "hr@5", "--json", str(out)]
    out.write_text('{"mine": true}')
    assert main(args) == 2
    assert one_line_naming(capsys.readouterr().err, str(out))
    assert json.loads(out.read_text()) == {"mine": True}
    out.unlink()
    assert main(args) == 0 and main(args) == 0
    assert json.loads(out.read_text())["written_by"] == "recforge evaluate"


# ---------------------------------------------------------------------- one unit, fingerprint
def test_train_writes_model_and_catalogue_as_one_sealed_unit(model_dir: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    marker = verify_folder(model_dir, "model")
    assert set(marker["files"]) == {"model.json", "arrays.npz", "catalogue.npz"}
    code, out = recommend(model_dir, capsys)
    assert code == 0 and all(r["id"].startswith("i") for r in json.loads(out)["items"])
    assert leftovers(model_dir.parent) == []


def test_a_catalogue_of_other_data_is_refused(tmp_path: Path, model_dir: Path,
                                              logs: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture) -> None:
    from recforge.data.loading import load_dataset

    other = load_dataset(str(logs[1]))
    with pytest.raises(InputError, match="not those the model was trained on"):
        save_catalogue(model_dir, other)
    # a writer that interleaved (model B, catalogue A) in the format before sums
    assert train(tmp_path / "b", logs[1]) == 0
    (model_dir / "catalogue.npz").replace(tmp_path / "a-catalogue.npz")
    (tmp_path / "b" / "catalogue.npz").replace(model_dir / "catalogue.npz")
    code, err = recommend(model_dir, capsys)
    assert code == 2 and one_line_naming(err, "catalogue.npz")
    make_legacy(model_dir)  # no sums to catch it: the fingerprint does
    with pytest.raises(CorruptFileError, match="catalogue.npz: .*not those the model was"):
        load_retriever(model_dir)
    with pytest.raises(InputError, match="does not fit the model"):
        load_retriever(model_dir, other)


def test_a_second_writer_fails_clearly(tmp_path: Path, logs: tuple[Path, Path],
                                       capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "model"
    with model_output(target) as folder:
        (folder / "partial").write_text("being written")
        with pytest.raises(ConcurrentWriteError, match="another process is writing"):
            fitted().save(target)
        assert train(target, logs[0]) == 2
        assert one_line_naming(capsys.readouterr().err, "another process is writing")
        fitted().write_files(folder)
    assert Recommender.load(target).n_items_ == fitted().n_items_
    assert leftovers(tmp_path) == []  # the lock file is gone too


def test_a_second_process_fails_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    target = tmp_path / "model"
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time\nfrom recforge.io import atomic_dir\n"
                                f"with atomic_dir({str(target)!r}, 'model'):\n"
                                " print('locked', flush=True)\n time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConcurrentWriteError):
            fitted().save(target)
    finally:
        holder.kill()
        holder.wait()
    fitted().save(target)  # the killed holder's temporary folder is cleaned up
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------- crash safety
def test_a_crash_between_the_fallback_renames_is_repaired(tmp_path: Path) -> None:
    """Where the exchange is unsupported, a kill between the two renames leaves no target;
    the next reader restores the old folder and the next writer cleans up."""
    target = tmp_path / "model"
    fitted(0).save(target)
    script = ("import os, recforge.io as io\nfrom test_hardening_persistence import fitted\n"
              "io._exchange = lambda a, b: False\nreal = os.rename\ncalls = []\n"
              "def rename(a, b):\n calls.append(a)\n real(a, b)\n"
              " if len(calls) == 1: os.kill(os.getpid(), 9)\n"
              f"io.os.rename = rename\nfitted(1).save({str(target)!r})\n")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    assert subprocess.run([sys.executable, "-c", script], check=False, env=env).returncode == -9
    assert not target.exists() and any(".old-" in n for n in leftovers(tmp_path))
    assert Recommender.load(target).popularity_.tolist() == fitted(0).popularity_.tolist()
    fitted(1).save(target)
    assert leftovers(tmp_path) == []


def test_recovery_touches_only_dead_writers_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "out"
    dead = dead_pid()
    names = [f".out.tmp-{dead}-0123abcd", f".out.old-{os.getpid()}-0123abcd", ".out.tmp-x",
             ".out.backup", ".other.tmp-1-0123abcd"]
    for name in names:
        (tmp_path / name).mkdir()
    recover(target)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == sorted(names[1:]) and not target.exists()  # a live writer's old copy
    (tmp_path / names[1]).rename(tmp_path / f".out.old-{dead}-0123abcd")
    recover(target)
    assert target.is_dir()  # restored from the dead writer's old copy


def test_atomic_path_guards_and_cleans(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("user's")
    with pytest.raises(OutputExistsError), atomic_path(target, owned=lambda p: False) as tmp:
        tmp.write_text("x")
    assert target.read_text() == "user's"
    (tmp_path / f".f.json.tmp-{dead_pid()}-0123abcd").write_text("half")
    with atomic_path(target, owned=lambda p: True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []


def _kill_at_random(command: list[str], rng: random.Random, low: float, high: float,
                    ready: bool = False) -> None:
    """Run ``command``, wait for its first output line when ``ready``, then kill -9 it after
    a random delay in ``[low, high]`` seconds."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env=env, text=True)
    if ready:
        child.stdout.readline()
    try:
        child.wait(rng.uniform(low, high))
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()


def test_kill_9_during_save_leaves_old_or_new(tmp_path: Path) -> None:
    target = tmp_path / "model"
    old, new = fitted(0), fitted(1)
    old.save(target)
    script = ("from test_hardening_persistence import fitted\nm = fitted(1)\n"
              f"print('ready', flush=True)\nwhile True: m.save({str(target)!r})\n")
    rng = random.Random(0)
    for _ in range(3):
        _kill_at_random([sys.executable, "-c", script], rng, 0.0, 0.3, ready=True)
        loaded = Recommender.load(target).popularity_.tolist()
        assert loaded in (old.popularity_.tolist(), new.popularity_.tolist())
    old.save(target)
    assert Recommender.load(target).popularity_.tolist() == old.popularity_.tolist()
    assert leftovers(tmp_path) == []


def test_kill_9_during_run_leaves_old_or_new(tmp_path: Path) -> None:
    experiment = tmp_path / "crash.toml"
    experiment.write_text(TINY_RUN)
    run = tmp_path / "run"
    assert main(["run", str(experiment), "--out", str(run)]) == 0
    before = verify_folder(run, "run")["created"]
    rng = random.Random(1)
    command = [sys.executable, "-m", "recforge.cli", "run", str(experiment), "--out", str(run)]
    for _ in range(3):
        _kill_at_random(command, rng, 0.5, 6.0)
        marker = verify_folder(run, "run")  # complete: every file there with its sum
        assert marker["created"] >= before and (run / "summary.json").is_file()
    assert main(["run", str(experiment), "--out", str(run)]) == 0
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------- damaged folders
def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x40
    file.write_bytes(bytes(data))


def _drop_array(file: Path) -> None:
    with zipfile.ZipFile(file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(file, "w") as archive:
        for name, data in list(members.items())[1:]:
            archive.writestr(name, data)


def _rewrite_meta(change: Callable[[dict], str]) -> Callable[[Path], None]:
    def apply(file: Path) -> None:
        file.write_text(change(json.loads(file.read_text())))
    return apply


DAMAGE = {
    "npz truncated": ("arrays.npz", _truncate, "arrays.npz"),
    "npz empty": ("arrays.npz", lambda f: f.write_bytes(b""), "arrays.npz"),
    "npz bit flip": ("arrays.npz", _flip, "arrays.npz"),
    "npz missing an array": ("arrays.npz", _drop_array, "arrays.npz|missing learned attribute"),
    "json a list": ("model.json", _rewrite_meta(lambda m: json.dumps([m])), "model.json"),
    "json not json": ("model.json", lambda f: f.write_text("{'model':"), "model.json"),
    "json missing sparse": ("model.json", _rewrite_meta(
        lambda m: json.dumps({k: v for k, v in m.items() if k != "sparse"})), "sparse"),
    "json deeply nested": ("model.json", _rewrite_meta(
        lambda m: f'{{"format_version": {m["format_version"]}, "params": '
                  f'{"[" * 100_000 + "]" * 100_000}}}'),
        "model.json: not valid JSON"),
    "json nested 40 deep": ("model.json", _rewrite_meta(
        lambda m: json.dumps(m | {"params": {"k": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
            ]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}})), "nested deeper"),
    "json params invalid": ("model.json", _rewrite_meta(
        lambda m: json.dumps(m | {"params": m["params"] | {"factors": -3}})), "factors"),
    "json state n_items_": ("model.json", _rewrite_meta(
        lambda m: json.dumps(m | {"state": m["state"] | {"n_items_": 7}})), "n_items_"),
    "catalogue deleted": ("catalogue.npz", lambda f: f.unlink(), "catalogue.npz"),
    "marker deleted": (MARKER, lambda f: f.unlink(), MARKER),
}


#: a folder of the format before markers has no marker and may lack a catalogue
CASES = [(case, legacy) for case in DAMAGE for legacy in (False, True)
         if not (legacy and DAMAGE[case][0] in (MARKER, "catalogue.npz"))]


@pytest.mark.parametrize(("case", "legacy"), CASES)
def test_damaged_model_folder_is_one_line_exit_2(model_dir: Path, capsys: pytest.CaptureFixture,
                                                 case: str, legacy: bool) -> None:
    """Sealed folders: the marker's sums name the damaged file; legacy folders: the checks
    of the file's content name what is wrong."""
    file, damage, named = DAMAGE[case]
    if legacy:
        make_legacy(model_dir)
    damage(model_dir / file)
    code, err = recommend(model_dir, capsys)
    assert code == 2, err
    assert one_line_naming(err, named if legacy else re.escape(file)), err


def test_arrays_of_the_wrong_size_fail_at_load(model_dir: Path) -> None:
    make_legacy(model_dir)
    with np.load(model_dir / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["item_factors_"] = arrays["item_factors_"][:-1]
    np.savez(model_dir / "arrays.npz", **arrays)
    with pytest.raises(CorruptFileError, match="inconsistent"):
        Recommender.load(model_dir)


def test_atomic_dir_without_exchange_still_replaces(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from recforge import io

    monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    fitted(0).save(tmp_path / "m")
    fitted(1).save(tmp_path / "m")
    assert Recommender.load(tmp_path / "m").popularity_.tolist() == fitted(1).popularity_.tolist()
    assert leftovers(tmp_path) == []
    with atomic_dir(tmp_path / "m", "model", update=True) as tmp:
        assert (tmp / "arrays.npz").is_file()  # update: starts with the current files


# ---------------------------------------------------------------------- earlier formats
def test_a_model_saved_before_markers_and_fingerprints_still_serves(
        model_dir: Path, logs: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    from recforge.data.loading import load_dataset

    expected = recommend(model_dir, capsys)
    make_legacy(model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    del meta["state"]["data_fingerprint_"]
    (model_dir / "model.json").write_text(json.dumps(meta))
    assert recommend(model_dir, capsys) == expected
    save_catalogue(model_dir, load_dataset(str(logs[0])))  # rewrites it as one sealed unit
    assert verify_folder(model_dir, "model") is not None
    assert recommend(model_dir, capsys) == expected


def test_checkpoints_are_checked_and_the_earlier_format_loads(tmp_path: Path) -> None:
    import torch

    from recforge.nn.checkpoint import STATE_FILE, TENSORS_FILE, load_checkpoint, save_checkpoint

    folder = save_checkpoint(tmp_path / "ckpt", {"w": torch.ones(3)}, {"epoch": 2})
    assert load_checkpoint(folder)[1]["epoch"] == 2
    (folder / MARKER).unlink()
    state = json.loads((folder / STATE_FILE).read_text())
    (folder / STATE_FILE).write_text(json.dumps(state | {"format_version": 1}))
    assert load_checkpoint(folder)[1]["epoch"] == 2  # before markers
    _truncate(folder / TENSORS_FILE)
    with pytest.raises(CorruptFileError, match=f"{TENSORS_FILE}: unreadable"):
        load_checkpoint(folder)
    save_checkpoint(folder, {"w": torch.zeros(3)}, {"epoch": 3})  # its own: replaced
    assert load_checkpoint(folder)[0]["w"].sum() == 0


def test_a_report_updates_a_run_folder_and_keeps_its_files(tmp_path: Path) -> None:
    from recforge.experiments.config import load_experiment
    from recforge.experiments.rundir import write_run
    from recforge.experiments.runner import run_experiment
    from recforge.report import write_report

    experiment = tmp_path / "crash.toml"
    experiment.write_text(TINY_RUN)
    record = run_experiment(load_experiment(experiment))
    run = tmp_path / "run"
    write_run(record, run)
    paths = write_report(record, run)
    assert paths["markdown"] == run / "report.md" and paths["markdown"].is_file()
    marker = verify_folder(run, "run")
    assert {"summary.json", "report.md", "report.html"} <= set(marker["files"])
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("out", ["", "/", ".", ".."])
def test_an_output_path_that_names_nothing_is_one_line(out: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--model", "most-popular", "--dataset", "synthetic",
                 "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a usable output path" in err
