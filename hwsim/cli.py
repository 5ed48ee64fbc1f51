"""The `hwsim` command line: run, compare, sweep, validate, schema, list, bench."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hwsim.config import Scenario, json_schema, load_scenario
from hwsim.config.load import PRESET_DIR, PROJECT_ROOT, read_yaml
from hwsim.config.units import format_quantity
from hwsim.errors import NOTHING, ConfigError


class ProgressBar:
    """A one-line progress bar with ETA on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, label: str, enabled: bool | None = None, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        elapsed = now - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        filled = int(30 * done / total)
        bar = "#" * filled + "-" * (30 - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}  {elapsed:5.1f}s elapsed, ETA {eta:5.1f}s{end}")
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"hwsim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwsim", description="Hardware-in-the-loop simulator for distributed training.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write its report")
    run.add_argument("scenario", help="scenario file (YAML)")
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
    run.set_defaults(func=_run)

    compare = sub.add_parser("compare", help="run several scenarios and compare time-to-accuracy, bytes and step time")
    compare.add_argument("items", nargs="+", metavar="SCENARIO|key=value", help="scenario files, then overrides applied to all")
    compare.add_argument("--out", default="reports/compare", help="folder for the reports and comparison.csv/.md/.png")
    compare.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bars on stderr")
    compare.set_defaults(func=_compare)

    validate = sub.add_parser(
        "validate",
        help="check a pipeline scenario's schedule (invariants, closed forms, the math), or 'published': hwsim against "
        "published Megatron figures",
    )
    validate.add_argument("scenario", help="scenario file (YAML) with system.kind: pipeline, or the word published")
    validate.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, as for run")
    validate.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress bars on stderr")
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
    bench.set_defaults(func=_bench)
    return parser


def _run(args: argparse.Namespace) -> int:
    from hwsim.build import check
    from hwsim.result import run

    scenario = load_scenario(args.scenario, args.overrides, args.seed)
    check(scenario, args.scenario)  # cross-field mistakes, named against the file
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
    print(_describe(result.summary))
    print(f"report: {folder}/report.html")
    return {"ok": 0, "interrupted": 130}.get(result.status, 1)


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
    from hwsim.compare import compare, markdown

    paths = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    if not paths:
        raise ConfigError("command line", "SCENARIO", " ".join(args.items), "at least one scenario file")
    writable_folder(args.out, "--out")
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    try:
        table = compare(paths, overrides, Path(args.out), lambda name: ProgressBar(name, enabled))
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
    from hwsim.validate import table, validate

    if args.scenario == "published":
        return _published(args)
    scenario = load_scenario(args.scenario, args.overrides)
    check(scenario, args.scenario)
    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    checks = validate(scenario, lambda what: ProgressBar(f"{scenario.name}: {what}", enabled))
    print(table(checks))
    failed = [c for c in checks if c.result == "FAIL"]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks did not fail" + (f"; FAILED: {len(failed)}" if failed else ""))
    return 1 if failed else 0


def _published(args: argparse.Namespace) -> int:
    """`hwsim validate published`: the Megatron / Korthikanti rows, predicted vs published; exit 1 if a goal is missed."""
    from hwsim.published import MEAN_GOAL, MEMORY_GOAL, TIME_GOAL, published, report

    enabled = {"auto": None, "on": True, "off": False}[args.progress]
    times, memory = published(ProgressBar("published figures", enabled))
    out = writable_folder("reports/published", "reports/published")
    print(report(times, memory, out))
    print(f"written: {out}/published.md, published_times.csv, published_memory.csv")
    met = times.error.abs().max() <= TIME_GOAL and times.error.abs().mean() <= MEAN_GOAL
    return 0 if met and memory.error.abs().max() <= MEMORY_GOAL else 1


def _sweep(args: argparse.Namespace) -> int:
    from hwsim import sweep as engine
    from hwsim.config.sweep import sweep_from

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
    print(_best(done.table, chosen["metric"], units))
    print(f"written: {folder}/sweep.parquet, sweep.csv, sweep.json, report.html and plots")
    return 1 if "error" in counts else 0


def _executor(args: argparse.Namespace):
    """(executor, renew, description, task slots) for --executor and --workers."""
    from hwsim.sweep import dask_executor, local_executor

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
    from hwsim.report.sweep import maximized, show

    column, higher = maximized(metric)
    ok = table[(table.status == "ok") & table[column].notna()] if column in table else table.iloc[0:0]
    if ok.empty:
        return f"  no ok point has {column}"
    row = ok.loc[ok[column].idxmax() if higher else ok[column].idxmin()]
    params = ", ".join(f"{k}={show(row[k], units.get(k, ''))}" for k in table.columns[1 : table.columns.get_loc("status")])
    return f"  best {column}: {row[column]:.4g} at point {row['point']} ({params})"


CONSOLE_ITEMS = 10
"""The most units (busiest) and banks (fullest) the run line lists; summary.json has them all."""


def _more(count: int) -> str:
    return f" and {count - CONSOLE_ITEMS} more" if count > CONSOLE_ITEMS else ""


def _headline(s: dict) -> str:
    """What was simulated, in the figures that mean something for the system that ran."""
    wall = f"wall {s['provenance']['wall_time_s']:.1f} s"
    simulated = f"simulated {format_quantity(s['sim_time_s'], 'time')}"
    kind = s["provenance"]["scenario"]["system"]["kind"]
    if kind == "federated":
        fed = s.get("federated")
        rounds = (
            f" in {fed['rounds']} rounds (median round {format_quantity(fed['round_duration_s']['p50'], 'time')})" if fed else ""
        )
        return f"  {simulated}{rounds}; clients trained {s['steps']:,} local steps on {s['samples']:,} samples; {wall}"
    if kind == "online":
        return f"  {simulated} of the stream; training workers took {s['steps']:,} steps; {wall}"
    step = f"{format_quantity(s['step_time_s'], 'time')}/step, " if s["step_time_s"] is not None else ""
    return f"  {simulated} in {s['steps']:,} steps ({step}{s['samples_per_s']:,.0f} samples/s); {wall}"


def _describe(summary: dict) -> str:
    s = summary
    lines = [f"{s['scenario']}: {s['status']}" + (f" - {s['diagnosis']}" if s["diagnosis"] else ""), _headline(s)]
    busy = sorted(((u["util"], name) for name, u in s["units"].items() if u["util"] > 0), reverse=True)
    util = ", ".join(f"{name} {u:.0%}" for u, name in busy[:CONSOLE_ITEMS]) + _more(len(busy))
    lines.append(f"  utilization: {util or 'none'}")
    flops = s["flops"]
    if flops["fraction_of_peak"] is not None:
        lines.append(
            f"  FLOP/s: {format_quantity(flops['achieved_flop_per_s'], 'flop_rate')} achieved of "
            f"{format_quantity(flops['peak_flop_per_s'], 'flop_rate')} peak ({flops['fraction_of_peak']:.0%})"
        )
    fullest = sorted(s["memory"].items(), key=lambda bm: -bm[1]["peak_bytes"] / bm[1]["capacity_bytes"])
    mem = ", ".join(
        f"{b} {format_quantity(m['peak_bytes'], 'size')}/{format_quantity(m['capacity_bytes'], 'size')}"
        for b, m in fullest[:CONSOLE_ITEMS]
    ) + _more(len(fullest))
    lines.append(f"  peak memory: {mem}")
    learn = s["learning"]
    finals = [f"{what} {learn[key]:{form}}" for what, key, form in LEARNING if learn[key] is not None]
    if finals:
        lines.append("  final " + ", ".join(finals))
    if learn["target_accuracy"] is not None:
        t = learn["time_to_target_s"]
        reached = f"after {format_quantity(t, 'time')}" if t is not None else "not reached"
        lines.append(f"  test accuracy {learn['target_accuracy']:g}: {reached}")
    if "network" in s:
        net = s["network"]
        lines.append(
            f"  network: {format_quantity(net['up_bytes'], 'size')} up ({net['uplink']}), "
            f"{format_quantity(net['down_bytes'], 'size')} down ({net['downlink']}): {net['fraction_of_fp32']:.1%} of fp32 messages"
        )
    if "pipeline" in s:
        pipe = s["pipeline"]
        lines.append(
            f"  pipeline {pipe['schedule']} (p={pipe['devices']}, v={pipe['stages_per_device']}, m={pipe['microbatches']}, "
            f"D={pipe['data_parallel']}): makespan {format_quantity(pipe['makespan_s'], 'time')}, "
            f"bubble {pipe['bubble_fraction']:.1%} of device time; all-reduce exposed "
            f"{format_quantity(pipe['exposed_allreduce_s'], 'time')}, overlapped {format_quantity(pipe['overlapped_allreduce_s'], 'time')}"
        )
    if "megatron" in s:
        lines.extend(_describe_megatron(s["megatron"]))
    if "fill" in s:
        fill = s["fill"]
        loss = (
            "" if fill["fill_loss_start"] is None else f"; its loss {fill['fill_loss_start']:.3f} -> {fill['fill_loss_end']:.3f}"
        )
        lines.append(
            f"  fill {fill['model']} by {fill['policy']}: {fill['microbatches_placed']} of {fill['microbatches_asked']} "
            f"micro-batches placed, utilization {fill['utilization_before']:.1%} -> {fill['utilization_after']:.1%}, "
            f"first instance slowdown {round(fill['primary_slowdown'], 12) + 0.0:.2%} (budget {fill['slowdown_budget']:.1%}), "
            f"{fill['fill_throughput_samples_per_s']:,.0f} samples/s{loss}"
        )
    if "data_parallel" in s:
        dp = s["data_parallel"]
        c = dp["collective"]
        how = ("hierarchical " if c["hierarchical"] else "") + str(c["algorithm"])
        codec = c["codec"] if isinstance(c["codec"], str) or c["codec"] is None else c["codec"].get("name")
        lines.append(
            f"  data parallel over {dp['replicas']} replicas ({how} all-reduce of {format_quantity(dp['gradient_bytes'], 'size')}): "
            f"compute {format_quantity(dp['compute_s'], 'time')}, all-reduce {format_quantity(dp['allreduce_s'], 'time')} "
            f"of which exposed {format_quantity(dp['exposed_allreduce_s'], 'time')}, optimizer {format_quantity(dp['optimizer_s'], 'time')} per step; "
            f"each NPU sends {format_quantity(dp['wire_bytes'], 'size')} per step" + (f" ({codec})" if codec else "")
        )
    if "online" in s:
        lines.append(_describe_online(s["online"]))
    if "federated" in s:
        lines.append(_describe_federated(s["federated"]))
    return "\n".join(lines)


LEARNING = [
    ("loss", "final_loss", ".4f"),
    ("test loss", "final_test_loss", ".4f"),
    ("test accuracy", "final_test_accuracy", ".3f"),
]


def _describe_megatron(m: dict) -> list[str]:
    lay = m["layout"]
    q = lambda x: format_quantity(x, "time")  # noqa: E731
    parts = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {q(v)}" for k, v in m["breakdown"].items() if v > 0)
    worst = max(m["memory"], key=lambda x: x["total_bytes"])
    mem = ", ".join(
        f"{k.removesuffix('_bytes')} {format_quantity(worst[k], 'size')}"
        for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes")
    )
    out = [
        f"  megatron t={lay['tensor']} p={lay['pipeline']} d={lay['data']} v={lay['virtual']}"
        f"{' +sequence' if lay['sequence'] else ''}, {m['schedule']}, m={m['microbatches']}, recompute {m['recompute']}, "
        f"optimizer {m['optimizer']}: step {q(m['step_s'])}, MFU {m['mfu']:.1%}, HFU {m['hfu']:.1%}",
        f"  {m['breakdown_device']}: {parts}",
        f"  memory per NPU ({worst['device']}): {mem} = {format_quantity(worst['total_bytes'], 'size')} of "
        f"{format_quantity(worst['capacity_bytes'], 'size')}",
        "  placement: " + "; ".join(f"{axis} {where}" for axis, where in m["placement"].items()),
    ]
    return out


def _describe_online(on: dict) -> str:
    ups = on["updates"]
    sent = ", ".join(f"{k} {format_quantity(ups[k]['sent_bytes'], 'size')}" for k in ups if ups[k]["sent_messages"])
    stale = max((v["mean"] or 0.0) for v in on["staleness_s"].values())
    lat = on["latency_s"]
    after = on["accuracy_after_drift"]
    return (
        f"  online: {on['requests']:,} requests, prequential accuracy {on['prequential_accuracy']:.3f}"
        + (f" ({after:.3f} in the second after each drift)" if after is not None else "")
        + f"; staleness mean up to {format_quantity(stale, 'time')}; latency p50 {format_quantity(lat['p50'], 'time')}, "
        f"p99 {format_quantity(lat['p99'], 'time')}; sent {sent}"
    )


def _describe_federated(fed: dict) -> str:
    part, mem, sent = fed["participation"], fed["memory"], fed["bytes"]
    return (
        f"  federated: {fed['rounds']} rounds of {fed['per_round']} of {fed['clients']} clients, test accuracy "
        f"{fed['final_test_accuracy']:.3f} (best {fed['best_test_accuracy']:.3f}); round {format_quantity(fed['round_duration_s']['p50'], 'time')} "
        f"median; {part['aggregated']} updates aggregated, {part['late']} late, {part['dropped']} dropped, {part['failed']} failed; "
        f"{format_quantity(sent['sent_down'], 'size')} down, {format_quantity(sent['sent_up'], 'size')} up; client peak memory "
        f"{format_quantity(mem['client_peak_bytes']['max'] or 0, 'size')} ({mem['decompression']})"
    )


def _schema(args: argparse.Namespace) -> int:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **json_schema(Scenario)}
    print(json.dumps(schema, indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    sections = {
        "scenarios": sorted((PROJECT_ROOT / "scenarios").glob("*.yaml")),
        "models": sorted((PROJECT_ROOT / "models").glob("*.yaml")),
        "hardware presets": sorted(PRESET_DIR.glob("*.yaml")),
    }
    for title, files in sections.items():
        print(f"{title}:")
        for file in files:
            data = read_yaml(file)
            about = data.get("description", "") if isinstance(data, dict) else ""
            if not about and isinstance(data, dict):
                about = data.get("kind", "") or data.get("name", "")
            shown = file.relative_to(PROJECT_ROOT) if file.is_relative_to(PROJECT_ROOT) else file
            print(f"  {str(shown):40s} {' '.join(str(about).split())[:90]}")
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
    from hwsim.bench import run_bench
    from hwsim.bench_kernels import run_kernel_bench
    from hwsim.config.units import parse_quantity

    writable_folder(args.out, "--out")
    if args.what in ("engine", "all"):
        print(run_bench(args.ops, Path(args.out), ProgressBar("bench engine"), quick=args.quick))
        print(f"written: {args.out}/bench.csv, {args.out}/bench.md")
    if args.what in ("kernels", "all"):
        try:
            nbytes = int(parse_quantity(args.size, "size"))
        except ValueError as err:
            raise ConfigError("command line", "--size", args.size, f"a size such as 256 MiB ({err})") from None
        print(run_kernel_bench(nbytes, Path(args.out), progress=ProgressBar("bench kernels")))
        print(f"written: {args.out}/kernels.csv, {args.out}/kernels.md")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
