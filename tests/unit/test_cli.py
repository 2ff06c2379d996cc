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


def test_dashboard_commands_parse_their_options():
    from conveyor.cli import plugin

    args = plugin.build_parser().parse_args(["dashboard", "-n", "a", "-n", "b", "--port", "0", "--read-only"])
    assert (args.namespaces, args.port, args.read_only, args.address) == (["a", "b"], 0, True, "127.0.0.1")
    args = build_parser().parse_args(["dashboard", "--allowed-host", "conveyor.example.com"])
    # the chart's server: loopback unless told (the chart passes --address=0.0.0.0), never acts
    assert (args.address, args.port, args.allowed_hosts, args.read_only) == (
        "127.0.0.1",
        8642,
        ["conveyor.example.com"],
        True,
    )


def test_the_dashboard_answers_only_to_its_own_host_names():
    from conveyor.dashboard.run import hosts_for

    assert hosts_for("127.0.0.1", 8642, []) == {"127.0.0.1:8642", "localhost:8642", "[::1]:8642"}
    behind_proxy = hosts_for("0.0.0.0", 8642, ["conveyor.example.com"])  # noqa: S104
    assert "conveyor.example.com" in behind_proxy  # as given: a proxy on 443 sends no port
    assert "conveyor.example.com:8642" in behind_proxy
    assert "evil.example:8642" not in behind_proxy


def test_text_for_a_terminal_cannot_reorder_itself():
    from conveyor.views.text import printable

    assert printable("Mallory \u202eevil (declared by CI)") == "Mallory \ufffdevil (declared by CI)"
    assert printable("plain text, émoji 🚀") == "plain text, émoji 🚀"


def test_credentials_are_found_in_kubectls_order(tmp_path, monkeypatch):
    from kubernetes import config

    from conveyor.kube.client import load_api_client

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://person.example:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    # A Pod's ServiceAccount is there too: a person's kubeconfig still wins, as for kubectl
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert load_api_client().configuration.host == "https://person.example:6443"
    # Nothing but an empty KUBECONFIG and no ~/.kube/config: in-cluster is tried (and here fails)
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    with pytest.raises(config.ConfigException):
        load_api_client()
