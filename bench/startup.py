"""Prints how fast `newsletter` commands start, side by side with the floor of any click program.

    python bench/startup.py              # 9 runs of each, interleaved
    python bench/startup.py --runs 21

Each round runs, one after the other so that a busy machine weighs on all alike:

- the floor: `python -c "import click"`;
- `newsletter --help`;
- `newsletter build` of the sample issue (parse, render, write the four files).

It prints each one's median wall time and CPU time (user + system, of the child: steadier than the
wall time on a shared machine) and their ratio to the floor. Targets: `--help` within 4x the
floor, `build` within 10x. Then, from `python -X importtime`, what each command still imports:
how many of newsletter's modules, and the packages that cost the most, to show what is left.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "issues" / "2023-10-16.md"
CONFIG = ROOT / "newsletter.toml"
TARGETS = {"--help": 4.0, "build": 10.0}
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def commands(output: str) -> dict[str, list[str]]:
    newsletter = [sys.executable, "-m", "newsletter"]
    return {
        "floor": [sys.executable, "-c", "import click"],
        "--help": [*newsletter, "--help"],
        "build": [*newsletter, "--config", str(CONFIG), "build", str(ISSUE), "-o", output],
    }


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `command` (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heaviest_imports(command: list[str], count: int) -> tuple[list[tuple[int, str]], int, int]:
    """What `command` imports besides its own modules: the packages it loads, each by the
    cumulative time of its outermost import, the heaviest first; and how many of newsletter's own
    modules it loads, and their own time (microseconds)."""
    result = subprocess.run([command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    packages: dict[str, int] = {}
    own_modules = own_time = 0
    for line in result.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if not match:
            continue
        own, cumulative, module = int(match.group(1)), int(match.group(2)), match.group(4)
        package = module.split(".")[0]
        if package == "newsletter":
            own_modules, own_time = own_modules + 1, own_time + own
        else:
            packages[package] = max(packages.get(package, 0), cumulative)
    heaviest = sorted(((time, package) for package, time in packages.items()), reverse=True)[:count]
    return heaviest, own_modules, own_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="rounds (each runs every command once)")
    parser.add_argument("--imports", type=int, default=8, help="heaviest imports to list per command")
    options = parser.parse_args()
    print(f"load average (1, 5, 15 min): {' '.join(f'{load:.2f}' for load in os.getloadavg())}; "
          f"{os.cpu_count()} cores; {options.runs} runs each, interleaved")
    with tempfile.TemporaryDirectory() as output:
        runs = commands(output)
        for command in runs.values():  # warm the file cache and the bytecode
            timed(command)
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(options.runs):
            for name, command in runs.items():
                wall, cpu = timed(command)
                walls[name].append(wall)
                cpus[name].append(cpu)
        wall = {name: statistics.median(values) for name, values in walls.items()}
        cpu = {name: statistics.median(values) for name, values in cpus.items()}
        print(f"{'':8} {'wall (median)':>14} {'x floor':>8} {'CPU (median)':>13} {'x floor':>8}  target")
        for name in runs:
            target = f"within {TARGETS[name]:g}x" if name in TARGETS else ""
            print(f"{name:8} {wall[name] * 1000:11.0f} ms {wall[name] / wall['floor']:7.1f}x "
                  f"{cpu[name] * 1000:10.0f} ms {cpu[name] / cpu['floor']:7.1f}x  {target}")
        print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
        for name in TARGETS:
            heaviest, own_modules, own_time = heaviest_imports(runs[name], options.imports)
            print(f"\n`newsletter {name}` imports {own_modules} of newsletter's modules ({own_time / 1000:.0f} ms of their own), "
                  "and these packages the most (python -X importtime, cumulative):")
            print("  " + ", ".join(f"{package} {microseconds / 1000:.0f} ms" for microseconds, package in heaviest))


if __name__ == "__main__":
    main()
