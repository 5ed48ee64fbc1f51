"""What `hwsim run` prints: a run's summary in a few lines, in the figures that mean something for its system."""

from __future__ import annotations

import statistics

from hwsim.config.units import format_quantity

CONSOLE_ITEMS = 10
"""The most units (busiest) and banks (fullest) the run line lists; summary.json has them all."""


NO_FLOPS = "work given as times (layers, recorded traces) carries no FLOP count"
NO_MEMORY = "work given as times (layers, recorded traces) holds nothing in the banks"


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
    if kind == "jobs" and "jobs" in s:
        jobs = s["jobs"]["jobs"]
        return f"  {simulated}: {len(jobs)} jobs took {sum(j['steps'] for j in jobs.values()):,} steps in all; {wall}"
    step = f"{format_quantity(s['step_time_s'], 'time')}/step, " if s["step_time_s"] is not None else ""
    return f"  {simulated} in {s['steps']:,} steps ({step}{s['samples_per_s']:,.0f} samples/s); {wall}"


def _utilization(units: dict) -> str:
    """The busy units, busiest first; with more than CONSOLE_ITEMS, one entry per kind of unit (many
    identical devices would fill the line with identical numbers)."""
    busy = sorted(((u["util"], name) for name, u in units.items() if u["util"] > 0), reverse=True)
    if len(busy) <= CONSOLE_ITEMS:
        return ", ".join(f"{name} {u:.0%}" for u, name in busy) or "none"
    kinds: dict[str, list[float]] = {}
    for u, name in busy:
        kinds.setdefault(units[name]["kind"], []).append(u)
    return ", ".join(
        f"{kind} {statistics.median(utils):.0%} median of {len(utils)} ({min(utils):.0%} to {max(utils):.0%})"
        for kind, utils in kinds.items()
    )


def _memory(banks: dict) -> str:
    """Peak occupancy of the fullest banks; with more than CONSOLE_ITEMS, the fullest bank of each name
    (`working` of every device, ...)."""
    if banks and all(m["peak_bytes"] is None for m in banks.values()):
        return f"n/a ({NO_MEMORY})"
    fullest = sorted(banks.items(), key=lambda bm: -(bm[1]["peak_bytes"] or 0) / bm[1]["capacity_bytes"])
    size = lambda m: f"{format_quantity(m['peak_bytes'], 'size')}/{format_quantity(m['capacity_bytes'], 'size')}"  # noqa: E731
    if len(fullest) <= CONSOLE_ITEMS:
        return ", ".join(f"{b} {size(m)}" for b, m in fullest)
    names: dict[str, list[str]] = {}
    for b, _ in fullest:
        names.setdefault(b.rsplit(".", 1)[-1], []).append(b)
    return ", ".join(f"{held[0]} {size(banks[held[0]])} (fullest of {len(held)} {name})" for name, held in names.items())


def _energy(e: dict) -> str:
    """Energy per step and per sample, average and peak power per NPU and of the cluster, and any cap exceeded."""
    j, w = (lambda x: format_quantity(x, "energy")), (lambda x: format_quantity(x, "power"))
    step = f"{j(e['per_step_j'])} per step, " if e["per_step_j"] is not None else ""
    sample = f"{j(e['per_sample_j'])} per sample, " if e["per_sample_j"] is not None else ""
    peak = max(d["peak_power_w"] for d in e["devices"].values())
    text = f"  energy: {step}{sample}{j(e['total_j'])} in all; power {w(e['average_power_per_npu_w'])} per NPU on average (peak {w(peak)})"
    if e["npus"] > 1:
        text += f", cluster {w(e['average_power_w'])} over {e['npus']:,} NPUs (peak {w(e['peak_power_w'])})"
    if e.get("to_target_j") is not None:
        text += f"; to the target accuracy {j(e['to_target_j'])}"
    if e["over_cap"]:
        text += f"; OVER the power cap: {', '.join(e['over_cap'][:3])}"
    return text


def describe(summary: dict) -> str:
    """The console lines of a run: status, headline, utilization, FLOP/s, memory, learning, and the system's own."""
    s = summary
    lines = [f"{s['scenario']}: {s['status']}" + (f" - {s['diagnosis']}" if s["diagnosis"] else ""), _headline(s)]
    lines.append(f"  utilization: {_utilization(s['units'])}")
    flops = s["flops"]
    if flops["fraction_of_peak"] is not None:
        lines.append(
            f"  FLOP/s: {format_quantity(flops['achieved_flop_per_s'], 'flop_rate')} achieved of "
            f"{format_quantity(flops['peak_flop_per_s'], 'flop_rate')} peak ({flops['fraction_of_peak']:.0%})"
        )
    elif flops["achieved_flop_per_s"] is None:
        lines.append(f"  FLOP/s: n/a ({NO_FLOPS}) of {format_quantity(flops['peak_flop_per_s'], 'flop_rate')} peak")
    lines.append(f"  peak memory: {_memory(s['memory'])}")
    if s.get("energy"):
        lines.append(_energy(s["energy"]))
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
    if "network_failures" in s:
        lines.append(_describe_failures(s["network_failures"]))
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
        if "stragglers" in dp:
            st = dp["stragglers"]
            lines.append(
                f"  {st['count']} straggler{'s' if st['count'] != 1 else ''} (compute x{st['slowdown']:g}): "
                f"{format_quantity(st['compute_s'], 'time')} of compute per step; the others wait "
                f"{format_quantity(st['healthy_wait_s'], 'time')} per step for them"
            )
    if "replay" in s:
        rp = s["replay"]
        lines.append(
            f"  replay of {rp['traces']} ({rp['npus']} NPUs, {rp['nodes']:,} nodes, compute {rp['compute']}, {rp['mode']}): "
            f"{rp['collectives_per_iteration']} collectives per iteration taking {format_quantity(rp['collective_s'], 'time')}"
        )
    if "jobs" in s:
        lines.extend(_describe_jobs(s["jobs"]))
    if "online" in s:
        lines.append(_describe_online(s["online"]))
    if "federated" in s:
        lines.append(_describe_federated(s["federated"]))
    return "\n".join(lines)


def _describe_failures(section: dict) -> str:
    """The cables that failed mid-run and what their flows did."""
    t = lambda x: format_quantity(x, "time")  # noqa: E731
    how = (
        f"reroute after {t(section['reroute_delay_s'])}"
        if section["on_failure"] == "reroute"
        else f"abort after {t(section['timeout_s'])}"
    )
    parts = [
        f"{f['link']} down at {t(f['at_s'])}"
        + (f" to {t(f['until_s'])}" if f["until_s"] is not None else "")
        + f": {f['flows_stalled']} flows stalled, {f['flows_rerouted']} rerouted, {t(f['stalled_s'])} of flow time lost"
        for f in section["failures"]
    ]
    return f"  network failures ({how}): " + "; ".join(parts)


def _describe_jobs(section: dict) -> list[str]:
    """One line per job of a shared cluster: where, when, its step time in the mix and alone."""
    t = lambda x: format_quantity(x, "time")  # noqa: E731
    lines = [f"  {len(section['jobs'])} jobs, placement {section['placement']}, scheduler {section['scheduler']}:"]
    for name, j in section["jobs"].items():
        if j["start_s"] is None:
            lines.append(f"    {name}: never started")
            continue
        alone = f", alone {t(j['alone_step_time_s'])} (x{j['slowdown']:.3f})" if j["slowdown"] is not None else ""
        hot = f"; {j['hot_link_share']:.0%} of its busiest link {j['hot_link']}" if j["hot_link"] else ""
        lines.append(
            f"    {name}: {len(j['npus'])} NPUs on {j['nodes']} node{'s' if j['nodes'] != 1 else ''}, queued {t(j['queued_s'])}, "
            f"ran {t(j['start_s'])} to {t(j['end_s'])}; {j['steps']} step{'s' if j['steps'] != 1 else ''} of {t(j['step_time_s'])} in the mix{alone}{hot}"
        )
    return lines


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
        for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "gathered_bytes", "fill_bytes")
        if k not in ("gathered_bytes", "fill_bytes") or worst.get(k)
    )
    out = [
        f"  megatron {layout_label(lay)}, {m['schedule']}, m={m['microbatches']}, recompute {m['recompute']}, "
        f"optimizer {m['optimizer']}: step {q(m['step_s'])}, MFU {m['mfu']:.1%}, HFU {m['hfu']:.1%}",
        f"  {m['breakdown_device']}: {parts}"
        + (f" (tensor comm beside GEMMs {q(m['tensor_comm_hidden_s'])})" if m.get("tensor_comm_hidden_s") else ""),
        f"  framework {m['framework']['name']}: " + ", ".join(f"{k} {v}" for k, v in m["framework"].items() if k != "name"),
        f"  memory per NPU ({worst['device']}): {mem} = {format_quantity(worst['total_bytes'], 'size')} of "
        f"{format_quantity(worst['capacity_bytes'], 'size')}",
        "  placement: " + "; ".join(f"{axis} {where}" for axis, where in m["placement"].items()),
    ]
    if "fill" in m:
        out.append(_describe_fill(m["fill"], lay["tensor"] * lay["pipeline"] * lay["data"]))
    if "straggler" in m:
        st = m["straggler"]
        waits = [w["wait_s"] for w in st["waits"]]
        out.append(
            f"  straggler NPU {st['npu']} ({st['rank']}, kernels x{st['slowdown']:g}): step {q(st['step_s'])} against "
            f"{q(st['healthy_step_s'])} without it (x{st['cost']:.3f}); the healthy replicas wait {q(min(waits))} to "
            f"{q(max(waits))} per step for its gradients"
        )
    return out


def _describe_fill(f: dict, gpus: int) -> str:
    placed = f["microbatches_placed"]
    count = f"{min(placed)}" if min(placed) == max(placed) else f"{min(placed)} to {max(placed)}"
    return (
        f"  fill {f['model']} ({f['mode']}, {f['policy']}): {count} of {f['microbatches_requested']} micro-batches per "
        f"GPU; {f['samples_per_s']:,.0f} samples/s over {gpus:,} GPUs ({format_quantity(f['flop_per_s'], 'flop_rate')}); "
        f"bubble {f['bubble_before_mean']:.1%}, idle {f['idle_before_mean']:.1%} -> {f['idle_after_mean']:.1%}, "
        f"utilization +{f['utilization_gain']:.1%}; main job slowdown "
        f"{f['slowdown']:.2%} (budget {f['budget']:.0%}); headroom used up to {max(f['headroom_used']):.1%}"
    )


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


def layout_label(lay: dict) -> str:
    """A 3D layout in a few characters: t=8 p=16 c=16 d=8 v=8 e=8 et=2 +sequence (c only when above 1; e and et
    with MoE)."""
    context = f" c={lay['context']}" if lay.get("context", 1) > 1 else ""
    experts = f" e={lay['expert']} et={lay['expert_tensor']}" if "expert" in lay else ""
    sequence = " +sequence" if lay["sequence"] else ""
    return f"t={lay['tensor']} p={lay['pipeline']}{context} d={lay['data']} v={lay['virtual']}{experts}{sequence}"
