"""``recforge serve`` refuses bad input with one line and exit status 2 before starting."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app_support import registry_dir

from recforge.cli import main


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "/no/such/folder"], "no such folder"),
    (["--port", "70000"], "--port"),
    (["--workers", "0"], "--workers"),
    (["--host", "bad host"], "--host"),
    (["--config", "/no/such.toml"], "no such file"),
])
def test_bad_options_exit_2(args: list[str], message: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    full = ["serve", "--model", str(registry_dir()), *args] if args[0] != "--model" \
        else ["serve", *args]
    assert main(full) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("text", "message"), [
    ("[serve]\ncandidats = 3\n", "serve.candidats: unknown key (did you mean 'candidates'?)"),
    ("[rerank]\nmethod = 'mrr'\n", "rerank.method: must be one of"),
    ("[rerank]\nlambda_ = 1.5\n", "rerank.lambda_"),
    ("[auth]\nprotect_reads = 'yes'\n", "auth.protect_reads"),
    ("[ab]\nexperiments = [{name = 'x', arms = {a = 0.5}, versions = {b = 'tt-a'}}]\n",
     "'b' is not an arm"),
    ("[serving]\n", "unknown section"),
    ("[serve\n", "not valid TOML"),
])
def test_bad_config_exit_2(tmp_path: Path, text: str, message: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(text, encoding="utf-8")
    assert main(["serve", "--model", str(registry_dir()), "--config", str(config)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and str(config) in err
