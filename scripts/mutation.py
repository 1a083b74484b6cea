#!/usr/bin/env python3
"""Mutation testing of the library against the whole suite, with real Redis and real servers.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
    python3 scripts/mutation.py                          # every mutant of every module
    python3 scripts/mutation.py limits backends.redis    # the mutants of these modules
    python3 scripts/mutation.py --sample 0.1 broker      # a random tenth of them (seeded)
    python3 scripts/mutation.py --score                  # the scores so far, run nothing
    python3 scripts/mutation.py --again --mutants NAME   # test one mutant again

mutmut (in the dev extras) runs each mutant's tests in a process forked from mutmut's own;
most of a mutant's time is spent waiting (on servers, or a bounded wait that a mutant makes a
test run out), so twice as many at once as there are cores is the default.
It needs PostgreSQL (DATABASE_URL=postgres://...): each of the parallel sessions creates a
database of its own there. This script starts the one redis-server they share, and puts
scripts/mutation_site on PYTHONPATH, so that the uvicorn servers and writer processes a test
starts also report which functions they ran (mutmut only sees its own process). Results are
kept in mutants/ (gitignored): a mutant already tested is not tested again unless its function
changed. A mutant whose tests run past mutmut's time limit ([tool.mutmut] in pyproject.toml)
made them hang: it counts as detected. `.venv/bin/mutmut show NAME` shows one mutant.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
sys.path.insert(0, str(ROOT / "scripts"))

import dev  # noqa: E402

KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout"}
MISSED = {0: "survived", 33: "no tests", 5: "no tests"}


def results() -> dict[str, dict[str, int | None]]:
    """mutmut's exit code for each mutant, by module (None: not tested yet)."""
    found = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        module = meta.relative_to(MUTANTS).as_posix().removesuffix(".py.meta").replace("/", ".")
        found[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return found


def score(selected: set[str] | None = None) -> None:
    """Print detected/tested for each module, and the survivors, from mutmut's result files."""
    total_detected = total = 0
    survivors = []
    for module, codes in results().items():
        tested = {
            name: code
            for name, code in codes.items()
            if code is not None and (selected is None or name in selected)
        }
        if not tested:
            continue
        detected = sum(code in KILLED for code in tested.values())
        kinds: dict[str, int] = {}
        for name, code in tested.items():
            kind = KILLED.get(code) or MISSED.get(code) or f"exit {code}"
            kinds[kind] = kinds.get(kind, 0) + 1
            if code not in KILLED:
                survivors.append(f"  {kind:9} {name}")
        rest = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        share = detected / len(tested)
        print(f"{module:28} {detected:4}/{len(tested):<4} {100 * share:5.1f}%  ({rest})")
        total_detected += detected
        total += len(tested)
    if not total:
        print("No mutant tested yet.")
        return
    share = total_detected / total
    margin = 1.96 * math.sqrt(share * (1 - share) / total)  # the sample's 95% interval
    print(f"{'all':28} {total_detected:4}/{total:<4} {100 * share:5.1f}%  (±{100 * margin:.1f})")
    print("Not detected:", *survivors, sep="\n")


def forget_stale_stats() -> None:
    """Drop mutmut's map of which tests reach which functions once the library or tests change.

    mutmut refreshes it only for new tests: a function that moved or a call that changed would
    keep the tests of the old code (and a new function would have none).
    """
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("gql_pubsub/**/*.py"), *ROOT.glob("tests/**/*.py")]):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    stamp = MUTANTS / "sources.sha256"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest())


def forget_results(names: set[str]) -> None:
    """Mark these mutants untested in mutmut's result files."""
    for meta in MUTANTS.rglob("*.py.meta"):
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        if any(codes.get(name) is not None for name in names):
            codes.update({name: None for name in names if name in codes})
            meta.write_text(json.dumps(data, indent=4))


def generate(interpreter: Path) -> None:
    """Have mutmut write (or refresh) the mutants, so that they can be listed and sampled."""
    code = (
        "from mutmut.__main__ import copy_src_dir, copy_also_copy_files, setup_source_paths, "
        "create_mutants, set_mutant_under_test\n"
        "set_mutant_under_test('mutant_generation')\n"
        "copy_src_dir(); copy_also_copy_files(); setup_source_paths(); create_mutants(2)\n"
    )
    MUTANTS.mkdir(exist_ok=True)
    subprocess.run([interpreter, "-c", code], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def choose(modules: list[str], sample: float, seed: int) -> list[str]:
    """The mutants of ``modules`` (all when empty), a seeded random ``sample`` of each."""
    chosen = []
    for module, codes in results().items():
        name = module.removeprefix("gql_pubsub.")
        if modules and name not in modules:
            continue
        names = sorted(codes)
        count = math.ceil(len(names) * sample)
        chosen += random.Random(f"{seed}:{module}").sample(names, count)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "modules", nargs="*", help="gql_pubsub modules, e.g. broker.broker broker.backends.redis"
    )
    parser.add_argument("--sample", type=float, default=1.0, help="share of each module's mutants")
    parser.add_argument("--seed", type=int, default=0, help="which sample")
    parser.add_argument(
        "--jobs", type=int, default=2 * (os.cpu_count() or 1), help="mutants tested at once"
    )
    parser.add_argument("--again", action="store_true", help="test mutants already tested, too")
    parser.add_argument(
        "--retry-timeouts", action="store_true", help="test again mutants that timed out"
    )
    parser.add_argument("--score", action="store_true", help="print the scores, run nothing")
    parser.add_argument(
        "--mutants", nargs="+", default=[], metavar="NAME", help="test these mutants (by name)"
    )
    args = parser.parse_args()

    interpreter = dev.python()
    if Path(sys.executable).resolve() != interpreter.resolve():
        os.execv(interpreter, [str(interpreter), __file__, *sys.argv[1:]])
    if not args.score:
        generate(interpreter)
        forget_stale_stats()
    chosen = args.mutants or choose(args.modules, args.sample, args.seed)
    if args.score:
        score(set(chosen))
        return
    tested = results().values()
    done = {
        name
        for codes in tested
        for name, code in codes.items()
        if code is not None and not (args.retry_timeouts and KILLED.get(code) == "timeout")
    }
    pending = [name for name in chosen if args.again or name not in done]
    if args.again:
        forget_results(set(pending))  # stopped half-way, the score counts only this run
    print(f"{len(chosen)} mutants chosen, {len(pending)} to test", flush=True)

    if pending and not os.environ.get("DATABASE_URL", "").startswith(("postgres:", "postgresql:")):
        sys.exit(
            "The mutation run needs PostgreSQL: its parallel test sessions each create a database"
            " there. Set DATABASE_URL=postgres://user@host:5432/dbname (a user who may CREATE"
            " DATABASE)."
        )
    sys.path.insert(0, str(ROOT))
    from tests.services import redis_service

    returncode = 0
    with contextlib.ExitStack() as services, tempfile.TemporaryDirectory() as workdir:
        if pending:
            scale = "GQL_PUBSUB_TEST_TIMEOUT_SCALE"
            env = {
                **os.environ,
                "REDIS_URL": services.enter_context(redis_service()),
                "DJANGO_SETTINGS_MODULE": "example.settings",
                "GQL_PUBSUB_MUTATION_HITS": f"{workdir}/hits",
                "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts" / "mutation_site"), str(ROOT)]),
                # Each library call goes through mutmut's trampoline: give the suite's waits room.
                "GQL_PUBSUB_TEST_TIMEOUT_SCALE": os.environ.get(scale, "2"),
            }
            mutmut = [str(interpreter.parent / "mutmut"), "run", "--max-children", str(args.jobs)]
            returncode = subprocess.run([*mutmut, *pending], cwd=ROOT, env=env).returncode
    score(set(chosen))
    sys.exit(returncode)


if __name__ == "__main__":
    main()
