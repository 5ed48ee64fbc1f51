"""The `hwsim` command line: run, compare, sweep, validate, schema, list, bench."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hwsim.commands.progress import ProgressBar, stages
from hwsim.errors import NOTHING, WRITE_FAILED, ConfigError, ReportWriteError

# Only the standard library and these two small modules load before a command runs, so `hwsim --help`,
# `list` and `schema` start at once; each command imports what it needs.

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""hwsim's kernels call BLAS on small matrices (a layer of a micro-batch), where BLAS's threads only wait for
each other: one thread each unless the environment says otherwise. Measured (dense_backward, 8 x 512 by
512 x 512, float32, with another process on both cores): 32.7 ms a call with OpenBLAS's default threads,
0.76 ms with one; `hwsim bench kernels` has the idle-machine figures."""


def main(argv: list[str] | None = None) -> int:
    for name in BLAS_THREADS:  # before NumPy loads
        os.environ.setdefault(name, "1")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    listed = "overrides" if hasattr(args, "overrides") else "items" if hasattr(args, "items") else None
    if extra and (listed is None or any(x.startswith("-") or "=" not in x for x in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # overrides written after an option (`hwsim run S --out X system.steps=2`)
        setattr(args, listed, [*getattr(args, listed), *extra])
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"hwsim: error: {err}", file=sys.stderr)
        return 2
    except ReportWriteError as err:  # a full disk: no traceback, no half-written file, what was written named
        print(f"hwsim: error: {err}", file=sys.stderr)
        return WRITE_FAILED
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`hwsim list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # a sweep's or comparison's files on a full disk, a folder taken away: one line
        where = f" ({err.filename})" if err.filename else ""
        print(f"hwsim: error: could not read or write a file{where}: {err.strerror or err}", file=sys.stderr)
        return WRITE_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwsim", description="Hardware-in-the-loop simulator for distributed training.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a scenario and write its report",
        description="Run a scenario file, or ASTRA-sim's inputs directly (--network, --system and --workload, "
        "as `hwsim import astra` maps them; then the overrides apply to the imported scenario).",
    )
    run.add_argument("scenario", nargs="?", help="scenario file (YAML); omitted with --network/--system/--workload")
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help='dotted overrides, e.g. system.steps=50 hardware.nic.bandwidth="25 Gb/s"',
    )
    run.add_argument("--out", help="report folder (default: <report.out>/<scenario>/<run-id>/)")
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument(
        "--progress", choices=("auto", "on", "off"), default="auto", help="progress bar on stderr (auto: when a terminal)"
    )
    _astra_options(run, required=False)
    run.set_defaults(func=_run)

    compare = sub.add_parser("compare", help="run several scenarios and compare time-to-accuracy, bytes and step time")
    compare.add_argument("items", nargs="+", metavar="SCENARIO|key=value", help="scenario files, then overrides applied to all")
    compare.add_argument("--out", default="reports/compare", help="folder for the reports and comparison.csv/.md/.png")
    compare.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bars on stderr")
    compare.set_defaults(func=_compare)

    validate = sub.add_parser(
        "validate",
        help="check a scenario's run (what every run must hold; a pipeline's schedule: invariants, closed forms, the "
        "math), or 'published': hwsim against published Megatron figures",
    )
    validate.add_argument(
        "scenario",
        help="scenario file (YAML); the word published; or the word host (a real torch.distributed run on this "
        "machine against hwsim's prediction from a calibrated preset; needs the torch extra)",
    )
    validate.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, as for run")
    validate.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bars on stderr")
    validate.add_argument("--preset", help="host: the calibrated preset (default: run `hwsim calibrate --quick` first)")
    validate.add_argument("--steps", type=int, default=200, help="host: training steps of each run (default %(default)s)")
    validate.add_argument("--batch", type=int, default=16, help="host: samples per process per step (default %(default)s)")
    validate.add_argument("--out", default="reports/validate_host", help="host: folder for the table, CSV and plot")
    validate.add_argument(
        "--profile", action="store_true", help="host: also write each rank's PyTorch profiler trace of one step into --out"
    )
    validate.set_defaults(func=_validate)

    sweep = sub.add_parser(
        "sweep",
        help="run a scenario over a grid (or a sample) of parameters: one table row per point; resumable",
        description="Each point is one run of the scenario with overrides. Results: sweep.parquet, sweep.csv, "
        "plots and report.html in --out; each point's record in --out/points/ (a re-run skips finished points).",
    )
    sweep.add_argument(
        "scenario", help="scenario file, or a sweep file (YAML with a `sweep` mapping; see scenarios/sweep_*.yaml)"
    )
    sweep.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides applied to every point")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help='an axis: a list ("hardware.nic.bandwidth=1,10,100 Gb/s") or, with --samples, a range KEY=LOW..HIGH [log]',
    )
    sweep.add_argument(
        "--zip", action="append", default=[], metavar="KEY=V1,V2,...", help="axes that vary together (value i with value i)"
    )
    sweep.add_argument("--samples", type=int, help="draw N points by Latin hypercube sampling instead of the full grid")
    sweep.add_argument("--seed", type=int, help="seed of the sampling (default 0; each point keeps its scenario's seed)")
    sweep.add_argument("--executor", default="local", help="local (a process pool, the default) or dask://HOST:PORT")
    sweep.add_argument("--workers", type=int, help="local processes (default: one per core)")
    sweep.add_argument("--out", help="sweep folder (default: reports/sweeps/<name>); re-running into it resumes")
    sweep.add_argument("--reports", action="store_true", help="keep each point's full report in <out>/reports/<key>/")
    sweep.add_argument(
        "--metric", help="metric of the line plot and heatmap (default: time to target, step time or simulated time)"
    )
    sweep.add_argument("--x", help="parameter on the x axis (default: the first swept key)")
    sweep.add_argument("--by", help="parameter that draws one line per value (default: the second swept key)")
    sweep.add_argument("--pareto", help="two metrics A,B of the Pareto plot; prefix max: or min: to set which way is better")
    sweep.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bar on stderr")
    sweep.set_defaults(func=_sweep)

    export = sub.add_parser("export", help="write a scenario's workload in another tool's format")
    export.add_argument("format", choices=("chakra",), help="chakra: execution traces, one file per NPU (ASTRA-sim's input)")
    export.add_argument("scenario", help="scenario file (YAML)")
    export.add_argument("out", help="folder for the files (NAME.0.et, NAME.1.et, ...)")
    export.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, as for run")
    export.set_defaults(func=_export)

    importer = sub.add_parser(
        "import",
        help="write a hwsim scenario from another tool's inputs (astra: ASTRA-sim's network, system and workload)",
        description="Map ASTRA-sim's inputs onto a hwsim scenario: each setting and what it became is printed; "
        "a setting hwsim cannot mean is refused by name, and nothing is written.",
    )
    importer.add_argument("format", choices=("astra",), help="astra: ASTRA-sim's analytical-backend inputs")
    _astra_options(importer, required=True)
    importer.add_argument("--out", help="the scenario file to write (default: astra_<workload>.yaml here)")
    importer.set_defaults(func=_import)

    calibrate = sub.add_parser(
        "calibrate",
        help="measure this machine (GEMMs, element-wise ops, memory, loopback collectives) into a hardware preset",
        description="Measure this machine and write a hardware preset whose every constant says how it was measured, "
        "with the measurements (calibration.csv, .md) and a plot of measured vs fitted times beside it.",
    )
    calibrate.add_argument("--out", default="reports/calibrate/host.yaml", help="the preset to write (default %(default)s)")
    calibrate.add_argument("--quick", action="store_true", help="a smaller grid and shorter timings (under 30 s)")
    calibrate.add_argument(
        "--threads", type=int, default=1, help="threads each process computes on (default 1: one process per core)"
    )
    calibrate.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bar on stderr")
    calibrate.set_defaults(func=_calibrate)

    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    schema.set_defaults(func=_schema)

    listing = sub.add_parser("list", help="list shipped scenarios, models, hardware presets and codecs")
    listing.set_defaults(func=_list)

    bench = sub.add_parser("bench", help="measure the simulator's own speed and write a table")
    bench.add_argument(
        "what",
        nargs="?",
        choices=("engine", "kernels", "all"),
        default="all",
        help="engine vs bare SimPy, kernels vs memory bandwidth, or both",
    )
    bench.add_argument("--ops", type=int, default=200_000, help="simulated operations per engine measurement")
    bench.add_argument("--quick", action="store_true", help="a smoke run of the engine bench: short runs, once each")
    bench.add_argument("--size", default="256 MiB", help='float32 input size of the kernel benchmark (default "256 MiB")')
    bench.add_argument("--out", default="reports/bench", help="folder for bench.csv and bench.md")
    bench.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress on stderr")
    bench.set_defaults(func=_bench)
    return parser


def _calibrate(args: argparse.Namespace) -> int:
    import pandas as pd

    from hwsim.commands.calibrate import calibrate, plot, preset_yaml, table

    out = Path(args.out)
    if out.is_dir():
        raise ConfigError("command line", "--out", args.out, "a preset file to write (this is a folder)")
    if args.threads < 1:
        raise ConfigError("command line", "--threads", args.threads, "at least 1")
    folder = writable_folder(str(out.parent), "--out")
    bar = ProgressBar("calibrate", {"auto": None, "on": True, "off": False}[args.progress])
    cal = calibrate("quick" if args.quick else "full", args.threads, bar)
    text = table(cal)
    pd.DataFrame(cal.rows).to_csv(folder / "calibration.csv", index=False)
    (folder / "calibration.md").write_text(text + "\n", encoding="utf-8")
    plot(cal, folder / "calibration.png")
    out.write_text(preset_yaml(cal, out.stem), encoding="utf-8")
    print(text)
    print(f"wrote {out} (a hardware preset: hardware: {out}), {folder}/calibration.csv, calibration.md, calibration.png")
    return 0


def _astra_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--network", required=required, help="ASTRA-sim's network YAML (analytical backend)")
    parser.add_argument("--system", required=required, help="ASTRA-sim's system JSON")
    parser.add_argument("--workload", required=required, help="the Chakra trace prefix: files PREFIX.0.et, PREFIX.1.et, ...")
    parser.add_argument("--memory", help="ASTRA-sim's remote-memory JSON (only NO_MEMORY_EXPANSION is modelled)")
    parser.add_argument(
        "--backend",
        choices=("congestion_unaware", "congestion_aware"),
        default="congestion_unaware",
        help="the analytical backend whose network model to use (default congestion_unaware)",
    )


def _import(args: argparse.Namespace) -> int:
    from hwsim.build import check
    from hwsim.commands.astra import astra_scenario
    from hwsim.config import load_scenario

    name = Path(args.workload).name
    out = Path(args.out or f"astra_{name}.yaml")
    if out.is_dir():
        raise ConfigError("command line", "--out", str(out), "a scenario file to write (this is a folder)")
    imported = astra_scenario(args.network, args.system, args.workload, args.memory, args.backend, out.parent)
    text = imported.yaml()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    try:
        check(load_scenario(partial), str(out))  # what is written runs
    except ConfigError:
        partial.unlink()
        raise
    partial.replace(out)
    for line in imported.lines:
        print(f"  {line}")
    print(f"wrote {out}; run it with: hwsim run {out}")
    return 0


def _astra_file(args: argparse.Namespace):
    """`hwsim run`'s scenario file and the temporary folder that holds it (None for a file named): the file named,
    or ASTRA-sim's inputs imported into a temporary one (removed once the scenario is loaded)."""
    import tempfile

    from hwsim.commands.astra import astra_scenario

    given = [option for option in ("network", "system", "workload") if getattr(args, option)]
    if args.scenario is not None and "=" in args.scenario and given:  # an override in the scenario's place
        args.overrides, args.scenario = [args.scenario, *args.overrides], None
    if args.scenario is not None:
        if given or args.memory:
            raise ConfigError(
                "command line",
                f"--{(given or ['memory'])[0]}",
                getattr(args, (given or ["memory"])[0]),
                "a scenario file or ASTRA-sim's inputs, not both",
            )
        return args.scenario, None
    if len(given) < 3:
        missing = [f"--{o}" for o in ("network", "system", "workload") if o not in given]
        raise ConfigError(
            "command line", "SCENARIO", NOTHING, f"a scenario file, or ASTRA-sim's inputs (missing {', '.join(missing)})"
        )
    imported = astra_scenario(args.network, args.system, args.workload, args.memory, args.backend)
    for line in imported.lines:
        print(f"  {line}")
    folder = tempfile.TemporaryDirectory(prefix="hwsim-astra-")
    path = Path(folder.name) / f"{imported.scenario['name']}.yaml"
    path.write_text(imported.yaml(), encoding="utf-8")
    return str(path), folder


def _run(args: argparse.Namespace) -> int:
    from hwsim.build import check
    from hwsim.config import load_scenario
    from hwsim.report.console import describe
    from hwsim.result import run

    args.scenario, temporary = _astra_file(args)
    try:
        scenario = load_scenario(args.scenario, args.overrides, args.seed)
        check(scenario, args.scenario)  # cross-field mistakes, named against the file
    finally:
        if temporary is not None:
            temporary.cleanup()
    if args.out is not None:
        writable_folder(args.out, "--out")
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    bar = ProgressBar(scenario.name, enabled)
    result = run(scenario, bar)
    if result.status == "interrupted":
        if bar.enabled:
            bar.stream.write("\n")  # the bar stopped mid-line
        print("hwsim: interrupted; writing the report of what was simulated (Ctrl-C again to stop at once)", file=sys.stderr)
    folder = result.write(args.out)
    print(describe(result.summary))
    print(f"report: {folder}/report.html")
    return {"ok": 0, "interrupted": 130}.get(result.status, 1)


def _export(args: argparse.Namespace) -> int:
    from hwsim.build import check
    from hwsim.commands.export import check_exportable, export_chakra
    from hwsim.config import load_scenario

    scenario = load_scenario(args.scenario, args.overrides)
    check(scenario, args.scenario)
    check_exportable(scenario, args.scenario)
    from hwsim.commands.progress import ProgressBar

    files = export_chakra(scenario, writable_folder(args.out, "out"), ProgressBar("export"))
    traces = [f for f in files if f.suffix == ".et"]
    print(f"wrote {len(traces)} Chakra ET files: {files[0].parent / scenario.name}.{{0..{len(traces) - 1}}}.et")
    if len(files) > len(traces):
        print(f"and their process groups (pg_name -> NPUs): {files[-1]}; a replay finds it beside the traces")
    return 0


def writable_folder(path: str, option: str) -> Path:
    """`path` as a folder this process can write into (made if missing); a ConfigError (exit 2) if not,
    before anything runs."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError("command line", option, path, "a folder to write into (this is a file)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("command line", option, path, f"a folder that can be made ({err.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError("command line", option, path, "a folder this user can write into")
    return folder


def _compare(args: argparse.Namespace) -> int:
    from hwsim.commands.compare import compare, markdown

    paths = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    if not paths:
        raise ConfigError("command line", "SCENARIO", " ".join(args.items), "at least one scenario file")
    writable_folder(args.out, "--out")
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    try:
        table = compare(paths, overrides, Path(args.out), stages("", enabled))
    except ValueError as err:
        raise ConfigError("command line", "SCENARIO", " ".join(paths), str(err)) from None
    print(markdown(table))
    extra = "".join(
        f", {name}"
        for name in ("pipelines.png", "schedules.png", "online.png", "federated.png")
        if (Path(args.out) / name).is_file()
    )
    print(f"written: {args.out}/comparison.csv, comparison.md, comparison.png{extra} (reports in {args.out}/<scenario>/)")
    return 0 if (table.status == "ok").all() else 1


def _validate(args: argparse.Namespace) -> int:
    from hwsim.build import check
    from hwsim.commands.validate import table, validate
    from hwsim.config import load_scenario

    if args.scenario == "published":
        return _published(args)
    if args.scenario == "host":
        return _host(args)
    scenario = load_scenario(args.scenario, args.overrides)
    check(scenario, args.scenario)
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    checks = validate(scenario, stages(f"validate {scenario.name}", enabled))
    print(table(checks))
    failed = [c for c in checks if c.result == "FAIL"]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks did not fail" + (f"; FAILED: {len(failed)}" if failed else ""))
    return 1 if failed else 0


def _host(args: argparse.Namespace) -> int:
    """`hwsim validate host`: real DDP training on 1 and 2 processes against hwsim's prediction (exit 1 if a goal
    is missed)."""
    import pandas as pd

    from hwsim.commands import host

    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("command line", "host", "torch not installed", "the torch extra: pip install -e '.[torch]'") from None
    if args.steps <= host.WARMUP + 1:
        raise ConfigError(
            "command line", "--steps", args.steps, f"more than {host.WARMUP + 1} (the first {host.WARMUP} are warm-up)"
        )
    if args.batch < 1:
        raise ConfigError("command line", "--batch", args.batch, "at least 1")
    out = writable_folder(args.out, "--out")
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    preset = Path(args.preset) if args.preset else None
    if preset is None:
        from hwsim.commands.calibrate import calibrate, preset_yaml

        preset = out / "host.yaml"
        preset.write_text(preset_yaml(calibrate("quick", 1, ProgressBar("calibrate --quick", enabled)), "host"), encoding="utf-8")
    elif not preset.is_file():
        raise ConfigError("command line", "--preset", args.preset, "a hardware preset file (hwsim calibrate writes one)")
    rows = host.validate_host(
        preset, args.steps, args.batch, ProgressBar("validate host", enabled), out if args.profile else None
    )
    text = host.table(rows)
    (out / "host.md").write_text(text + "\n", encoding="utf-8")
    pd.DataFrame(
        [
            {"processes": r.processes, "step": i, "measured_s": t, "measured_loss": ml, "predicted_loss": pl}
            for r in rows
            for i, (t, ml, pl) in enumerate(zip(r.measured_steps, r.measured_losses, r.predicted_losses, strict=False))
        ]
    ).to_csv(out / "host.csv", index=False)
    host.plot(rows, out / "host.png")
    print(text)
    print(f"preset: {preset}; written: {out}/host.md, host.csv, host.png")
    met = all(abs(r.error) <= host.STEP_GOAL and r.loss_difference <= host.LOSS_GOAL for r in rows)
    return 0 if met else 1


def _published(args: argparse.Namespace) -> int:
    """`hwsim validate published`: iteration times (Korthikanti, MegaScale, BLOOM, Llama 3, DeepSeek-V3) and memory
    against the published figures, hwsim's collectives against nccl-tests and DeepEP, its GEMMs against the cookbook
    and DeepGEMM (exit 1 if a goal is missed); then the mechanisms' published claims next to hwsim's figures (no
    goal: the gap is shown)."""
    import concurrent.futures

    from hwsim.commands import claims
    from hwsim.commands.alltoall import all_to_alls
    from hwsim.commands.fp8 import fp8_gemms
    from hwsim.commands.gemms import gemms
    from hwsim.commands.nccl import collectives
    from hwsim.commands.published import ENERGY_GOAL, energy, energy_report, goals_met, published, report

    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    out = writable_folder("reports/published", "reports/published")
    # the breadth-first layout search (the longest part) runs in a second process while this one does the rest
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        search = pool.submit(claims.breadth_first)
        times, memory = published(ProgressBar("published figures", enabled))
        print(report(times, memory, out, collectives(), gemms(), all_to_alls(), fp8_gemms()))
        energy_table = energy()
        print(energy_report(energy_table, out))
        zeropp = claims.zeropp(progress=ProgressBar("ZeRO++ vs ZeRO-3", enabled))
        fill = claims.pipefill(progress=ProgressBar("bubble filling", enabled))
        ProgressBar("breadth-first vs Megatron-LM layouts (second process)", enabled)(0, 1)
        layouts = search.result()
    print(claims.report(layouts, out))
    print(claims.zeropp_report(zeropp, out))
    print(claims.pipefill_report(fill, out))
    print(
        f"written: {out}/published.md, published_times.csv, published_memory.csv, published_collectives.csv, "
        "published_gemms.csv, published_all_to_all.csv, published_fp8_gemms.csv, published_energy.csv, breadth_first.csv, "
        "zeropp.csv, pipefill.csv"
    )
    energy_met = energy_table[energy_table.goal].error.abs().max() <= ENERGY_GOAL
    return 0 if goals_met(times, memory) and energy_met else 1


def _sweep(args: argparse.Namespace) -> int:
    from hwsim.commands import sweep as engine
    from hwsim.config.sweep import sweep_from
    from hwsim.report.console import CONSOLE_ITEMS
    from hwsim.report.sweep import maximized

    sweep = sweep_from(args.scenario, args.overrides, args.grid, args.zip, args.samples, args.seed)
    plots = {k: getattr(args, k) for k in ("metric", "x", "by", "pareto") if getattr(args, k) is not None}
    planned, resolved, units = engine.plan(sweep)  # every key and value checked before any point runs
    invalid = [p for p in planned if p.invalid]
    for p in invalid[:CONSOLE_ITEMS]:
        print(f"hwsim: point {p.point.index} is not a valid combination, recorded as invalid: {p.invalid}", file=sys.stderr)
    if len(invalid) == len(planned):
        raise ConfigError("command line", "--grid", NOTHING, "at least one valid combination (every point is invalid)")
    folder = writable_folder(args.out or f"reports/sweeps/{sweep.name}", "--out")
    executor, renew, where, slots = _executor(args)
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    print(
        f"sweep {sweep.name}: {len(planned)} points, {len({p.key for p in planned if p.key})} distinct runs, on {where}; out {folder}"
    )
    try:
        done = engine.run_sweep(
            sweep, planned, resolved, folder, executor, in_flight=2 * slots, reports=args.reports, renew=renew,
            progress=ProgressBar(f"sweep {sweep.name}", enabled), log=lambda m: print(f"hwsim: {m}", file=sys.stderr),
        )  # fmt: skip
    finally:
        engine.shutdown(executor)
    counts = done.table.status.value_counts().to_dict()
    print(f"  ran {done.ran}, finished before {done.skipped}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if done.interrupted:
        print(f"hwsim: interrupted; {done.pending} runs not finished. Re-run the same command to resume.", file=sys.stderr)
        return 130
    chosen = engine.write_report(folder, sweep, planned, units, done.table, plots)
    metric = maximized(chosen["metric"])[0]
    for dim in engine.no_effect(sweep, done.table):
        print(f"hwsim: warning: {engine.NO_EFFECT.format(keys=' + '.join(dim), metric=metric)}", file=sys.stderr)
    print(_best(done.table, chosen["metric"], units))
    print(f"written: {folder}/sweep.parquet, sweep.csv, sweep.json, report.html and plots")
    return 1 if "error" in counts else 0


def _executor(args: argparse.Namespace):
    """(executor, renew, description, task slots) for --executor and --workers."""
    from hwsim.commands.sweep import dask_executor, local_executor

    if args.workers is not None and args.workers < 1:
        raise ConfigError("command line", "--workers", args.workers, "a whole number of at least 1")
    if args.executor == "local":
        workers = args.workers or os.cpu_count() or 1
        return local_executor(workers), lambda: local_executor(workers), f"{workers} local processes", workers
    if args.executor.startswith("dask://"):
        if args.workers is not None:
            raise ConfigError("command line", "--workers", args.workers, "no --workers with Dask (the cluster has its own)")
        executor, threads = dask_executor("tcp://" + args.executor.removeprefix("dask://"))
        return executor, None, f"Dask at {args.executor} ({threads} threads)", threads
    raise ConfigError("command line", "--executor", args.executor, "local or dask://HOST:PORT")


def _best(table, metric: str, units: dict) -> str:
    """The console line of the best point on `metric`: its value and parameters; the tied points when
    several share the best value; "all points equal" when every ok point does."""
    import numpy as np

    from hwsim.report.sweep import maximized, show

    column, higher = maximized(metric)
    ok = table[(table.status == "ok") & table[column].notna()] if column in table else table.iloc[0:0]
    if ok.empty:
        return f"  no ok point has {column}"
    values = ok[column].astype(float)
    top = values.max() if higher else values.min()
    tied = ok[np.isclose(values, top, rtol=1e-9, atol=0.0)]
    if len(tied) == len(ok) > 1:  # nothing to choose: no point is "best"
        return f"  all points equal: {column} = {top:.4g} at every one of the {len(ok)} ok points"
    keys = table.columns[1 : table.columns.get_loc("status")]

    def value(k: str) -> str:
        shown = [show(v, units.get(k, "")) for v in dict.fromkeys(tied[k])]
        return shown[0] if len(shown) == 1 else "any of " + " / ".join(shown)

    params = ", ".join(f"{k}={value(k)}" for k in keys)
    where = f"point {tied.point.iloc[0]}" if len(tied) == 1 else "points " + ", ".join(map(str, tied.point))
    return f"  best {column}: {top:.4g} at {where} ({params})"


def _schema(args: argparse.Namespace) -> int:
    from hwsim.config import Scenario, json_schema

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **json_schema(Scenario)}
    print(json.dumps(schema, indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    from hwsim.config.load import FRAMEWORK_DIR, PRESET_DIR, PROJECT_ROOT, read_yaml

    sections = {
        "scenarios": sorted((PROJECT_ROOT / "scenarios").glob("*.yaml")),
        "models": sorted((PROJECT_ROOT / "models").glob("*.yaml")),
        "hardware presets": sorted(PRESET_DIR.glob("*.yaml")),
    }
    for title, files in sections.items():
        print(f"{title}:")
        names = [str(f.relative_to(PROJECT_ROOT) if f.is_relative_to(PROJECT_ROOT) else f) for f in files]
        width = max(map(len, names), default=0)
        for file, shown in zip(files, names, strict=True):
            data = read_yaml(file)
            data = data if isinstance(data, dict) else {}
            # a scenario's title (one line that tells it from its siblings), else the start of its description
            about = data.get("title") or " ".join(str(data.get("description", "")).split())[:90]
            print(f"  {shown:{width}s}  {about or data.get('kind', '') or data.get('name', '')}")
    print("framework profiles (system.framework of a megatron system; the switches each sets):")
    for file in sorted(FRAMEWORK_DIR.glob("*.yaml")):
        data = read_yaml(file)
        switches = ", ".join(f"{k} {v}" for k, v in data.items() if k != "name")
        print(f"  {file.stem:14s} {switches}")
    from hwsim.codecs import describe

    print("codecs (wire bits per element at 2^20 elements; parameters with defaults):")
    for row in describe():
        flag = "unbiased" if row["unbiased"] else "biased"
        print(f"  {row['codec']:9s} {row['bits_per_element']:7.3f} b  {flag:8s}  {row['what']}  [{row['parameters']}]")
    from hwsim.policies import SCHEDULES

    print("pipeline schedules:")
    for name, kind in SCHEDULES.items():
        print(f"  {name:14s} {kind.about}")
        print(f"  {'':14s} placement: {kind.placement or 'any'}; source: {kind.source or '-'}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from hwsim.commands.bench.engine import run_bench
    from hwsim.commands.bench.kernels import run_kernel_bench
    from hwsim.config.units import parse_quantity

    writable_folder(args.out, "--out")
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    if args.what in ("engine", "all"):
        print(run_bench(args.ops, Path(args.out), ProgressBar("bench engine", enabled), quick=args.quick))
        print(f"written: {args.out}/bench.csv, {args.out}/bench.md")
    if args.what in ("kernels", "all"):
        try:
            nbytes = int(parse_quantity(args.size, "size"))
        except ValueError as err:
            raise ConfigError("command line", "--size", args.size, f"a size such as 256 MiB ({err})") from None
        print(run_kernel_bench(nbytes, Path(args.out), progress=ProgressBar("bench kernels", enabled)))
        print(f"written: {args.out}/kernels.csv, {args.out}/kernels.md")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
