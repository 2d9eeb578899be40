"""Every framework adapter against that framework's own store, in one run.

Runs, one after the other in this process, `bench_integrations_adk.py` (ADK's
`DatabaseSessionService`), `bench_integrations_openai_agents.py` (the OpenAI Agents SDK's
`SQLiteSession`) and `bench_integrations_langgraph.py` (LangGraph's `SqliteSaver`), each with
`--quick`/`--json` passed through. A framework that is not installed is skipped with a line
saying so (`pip install -e '.[test]'` installs all three).

    .venv/bin/python benchmarks/bench_integrations.py [--quick] [--json] [--only adk,langgraph]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

FRAMEWORKS = {
    "adk": ("bench_integrations_adk", "google.adk"),
    "openai-agents": ("bench_integrations_openai_agents", "agents"),
    "langgraph": ("bench_integrations_langgraph", "langgraph.checkpoint.sqlite"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke runs of a few seconds each")
    parser.add_argument("--json", action="store_true", help="one JSON object, by framework")
    parser.add_argument("--only", default=",".join(FRAMEWORKS), help="comma-separated frameworks")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(FRAMEWORKS))
    if unknown:
        parser.error(f"unknown framework(s) {unknown}; choose from {sorted(FRAMEWORKS)}")
    passed = [flag for flag, on in (("--quick", args.quick), ("--json", args.json)) if on]
    results: dict[str, object] = {}
    status = 0
    for name in chosen:
        module_name, needs = FRAMEWORKS[name]
        try:
            importlib.import_module(needs)
        except ImportError:
            print(f"{name}: skipped ({needs} is not installed)", file=sys.stderr)
            results[name] = None
            continue
        module = importlib.import_module(module_name)
        if args.json:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status |= module.main(passed)
            results[name] = json.loads(out.getvalue())
        else:
            print(f"== {name} ==")
            status |= module.main(passed)
    if args.json:
        print(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
