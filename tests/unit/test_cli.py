"""The `conveyor` command line parses what the docs promise."""

from __future__ import annotations

import pytest

from conveyor.cli.main import build_parser, main


def test_version_prints_the_package_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("conveyor ")


def test_run_accepts_namespaces_liveness_and_metrics_port():
    args = build_parser().parse_args(
        ["run", "-n", "a", "-n", "b", "--liveness", "http://127.0.0.1:1/h", "--metrics-port", "0"]
    )
    assert (args.namespace, args.liveness, args.metrics_port) == (["a", "b"], "http://127.0.0.1:1/h", 0)


def test_a_command_is_required():
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
