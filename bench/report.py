"""Render the benchmarks' one results file as one Markdown table.

Usage: .venv/bin/python bench/report.py [--results PATH] [--out PATH] [--readme [README]]

Reads bench/results/bench.json (or --results / CONVEYOR_BENCH_RESULTS), writes bench/results/RESULTS.md
(--out; both git-ignored) and prints it. With --readme it also replaces the block between
`<!-- bench-results:begin -->` and `<!-- bench-results:end -->` in README.md with the same table: a
deliberate step, run after a full `make bench` on the build machine and committed, so the README
quotes numbers of one run and a developer's `make bench` never dirties it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from results import REPO, describe_machine, load, results_path

BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
# The table's order; a section of another name follows them, alphabetically.
ORDER = (
    "verdict",
    "promotion",
    "rollback",
    "scale",
    "scale-2clusters",  # bench/scale.py --clusters 2 (issue #16)
    "scale-2clusters-outage",  # ... --outage
    "failover",
    "dashboard",
    "notifications",
)


def verdict_mark(met: bool | None) -> str:
    """Met, NOT met, or a dash when nothing was measured."""
    return {True: "met", False: "**NOT met**", None: "-"}[met]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(data: dict[str, Any]) -> str:
    """The Markdown: one row per goal of every benchmark, then when, where and how each ran."""
    keys = [k for k in ORDER if k in data] + sorted(k for k in data if k not in ORDER)
    if not keys:
        return "No benchmark results yet: `make bench` (or `hack/bench bench/<name>.py`) writes them.\n"
    lines = ["| benchmark | what | goal | measured | goal met |", "|---|---|---|---|---|"]
    for key in keys:
        sec = data[key]
        date = (sec.get("when") or "")[:10]
        for row in sec.get("goals") or []:
            lines.append(
                f"| {key} ({date}) | {_cell(row['what'])} | {_cell(row['goal'])} | "
                f"{_cell(row['measured'])} | {verdict_mark(row.get('met'))} |"
            )
    lines += ["", "Runs (each benchmark's section is replaced when it runs again):", ""]
    for key in keys:
        sec = data[key]
        by = f", as part of `{sec['run_by']}`" if sec.get("run_by") else ""
        lines.append(
            f"- **{key}**: {sec.get('when', '?')}, commit `{sec.get('commit', '?')}`, "
            f"`{sec.get('command', '?')}`{by}; {describe_machine(sec.get('machine') or {})}"
        )
    return "\n".join(lines) + "\n"


def document(data: dict[str, Any], source: Path) -> str:
    """RESULTS.md: a title, where it came from, the table."""
    return (
        "# Benchmark results\n\n"
        f"Rendered by `bench/report.py` from `{_shown(source)}`; the goals are issue #11's. "
        "Generated: not in git (the README quotes a chosen run).\n\n" + table(data)
    )


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def replace_block(text: str, block: str) -> str:
    """`text` with the part between the markers replaced by `block` (the markers stay)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN} ... {END} not found (in this order)")
    return text[: start + len(BEGIN)] + "\n" + block + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, help="the results JSON (default: bench/results/bench.json)")
    parser.add_argument("--out", type=Path, help="the Markdown (default: RESULTS.md beside the results)")
    parser.add_argument(
        "--readme",
        nargs="?",
        type=Path,
        const=REPO / "README.md",
        help="also rewrite the quoted block of this README (default README.md)",
    )
    args = parser.parse_args()
    source = results_path(args.results)
    data = load(source)
    out = args.out or source.with_name("RESULTS.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = document(data, source)
    out.write_text(doc)
    print(doc)
    print(f"table: {out}")
    if args.readme:
        args.readme.write_text(replace_block(args.readme.read_text(), table(data)))
        print(f"quoted in: {args.readme}")


if __name__ == "__main__":
    main()
