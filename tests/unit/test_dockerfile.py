"""The Dockerfile, checked statically (no image can be built here: no engine, no registry)."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()


def stages() -> list[list[str]]:
    """Instructions per build stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def index_of(instructions: list[str], pattern: str) -> int:
    return next(i for i, line in enumerate(instructions) if re.search(pattern, line))


def test_multi_stage_with_dependencies_installed_before_the_source_is_copied():
    build = stages()[0]
    assert len(stages()) >= 2
    lock = index_of(build, r"^COPY .*pyproject\.toml.*uv\.lock")
    deps = index_of(build, r"uv sync .*--frozen.*--no-install-project")
    source = index_of(build, r"^COPY operator")
    assert lock < deps < source  # a code change does not invalidate the dependency layer


def test_the_final_image_runs_as_non_root_without_build_tools():
    final = stages()[-1]
    user = [line for line in final if line.upper().startswith("USER ")]
    assert user
    assert user[-1].split()[1].split(":")[0] not in ("0", "root")
    assert not any(re.search(r"\b(pip|uv|apt-get|gcc)\b", line) for line in final if line.startswith("RUN"))
    assert any(line.startswith("COPY --from=") for line in final)


def test_oci_labels_include_the_revision():
    final = " ".join(stages()[-1])
    for label in (
        "org.opencontainers.image.revision",
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
    ):
        assert label in final
