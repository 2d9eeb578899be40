"""Crash soak: kill a writer with SIGKILL many times and check the store after every kill.

The long run of the conformance suite's crash check (`agentledger.testing._crash`, the same
writer and the same checks): a writer process appends three-event batches and creates
sessions in a loop, reporting each write once the store acknowledged it; it is killed at a
random point, the store is reopened, and every acknowledged write must be there, no batch
partly there, the snapshot equal to the projection of the ledger. Run from the project root:

    .venv/bin/python benchmarks/crash_soak.py --kills 1000                    # a fresh SQLite file
    .venv/bin/python benchmarks/crash_soak.py --store sqlite:///soak.db?durability=normal
    .venv/bin/python benchmarks/crash_soak.py --store URL --import my_store --seed 42

The store must be persistent and allow several processes (`memory://` is neither). Exit
status 0 when every check held, 1 with the failed check (and the seed to replay it) when
one did not, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from agentledger.stores.base import SessionStore, open_store
from agentledger.testing._crash import CrashReport, CrashRounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL; default: a new SQLite file in a temp folder")
    parser.add_argument("--kills", type=int, default=1000, help="writers to kill (default 1000)")
    parser.add_argument("--seed", type=int, help="seed of the kill points, to replay a run")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module that registers the store's URL scheme (repeatable)",
    )
    parser.add_argument(
        "--start-method",
        default="fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn",
        choices=multiprocessing.get_all_start_methods(),
        help="how writer processes start (default: fork where available)",
    )
    parser.add_argument(
        "--rounds-per-ledger",
        type=int,
        default=100,
        help="rounds that append to one session before moving to a fresh one (default 100)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.rounds_per_ledger < 1:
        parser.error("--kills and --rounds-per-ledger must be at least 1")

    for module in args.imports:
        importlib.import_module(module)
    with tempfile.TemporaryDirectory(prefix="crash-soak-") as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'soak.db'}"

        def reopen() -> SessionStore:
            return open_store(url)

        probe = reopen()
        capabilities = probe.capabilities
        probe.close()
        if not (capabilities.persistent and capabilities.multi_process):
            print(f"{url} is not persistent and multi-process: {capabilities}", file=sys.stderr)
            return 2

        rounds = CrashRounds(
            url,
            reopen,
            multiprocessing.get_context(args.start_method),
            imports=tuple(args.imports),
            seed=args.seed,
            rounds_per_ledger=args.rounds_per_ledger,
        )
        step = max(args.kills // 10, 1)

        def progress(report: CrashReport) -> None:
            if not args.json and report.kills % step == 0:
                print(f"  {report.kills:>6} kills, {report.acknowledged_appends:>7} appends and "
                      f"{report.acknowledged_creates:>6} creates acknowledged, all found",
                      flush=True)

        if not args.json:
            print(f"crash soak: {args.kills} kills on {url} (seed {rounds.seed})", flush=True)
        try:
            report = rounds.run(args.kills, progress)
        except AssertionError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"store": url, **asdict(report)}, indent=2))
    else:
        print(
            f"ok: {report.kills} kills ({report.early_kills} while the writer opened the store), "
            f"{report.acknowledged_appends} appends and {report.acknowledged_creates} creates "
            f"acknowledged and found, {report.unacknowledged_writes} writes found that were "
            f"not yet acknowledged, {report.events} events in the ledgers, "
            f"{report.seconds:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
