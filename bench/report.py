"""Results -> bench/results/latest.json, latest.md (tables with the targets) and latency.png."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

# The targets of issue 8, next to every measured value.
TARGET_P50 = 1.25
TARGET_P99 = 1.5
TARGET_THROUGHPUT_32 = 0.8
TARGET_COLD = 1.3
TARGET_RSS_MIB = 128.0
TARGET_GROWTH = 0.05
TARGET_S3_BATCH = 2.0
TARGET_PUBSUB_VS_ACK = 0.8
NEVER_IMPORTED = {
    "http": ["boto3", "botocore", "google.cloud.pubsub", "google.cloud.pubsub_v1"],
    "s3": ["functions_framework", "google.cloud.pubsub", "google.cloud.pubsub_v1"],
}


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: what, the target, the measured value, met or not."""
    rows: list[dict[str, Any]] = []
    latency = results.get("latency")
    if latency:
        for q, goal in (("p50", TARGET_P50), ("p99", TARGET_P99)):
            value = latency["ratio"][q]
            rows.append(
                {
                    "what": f"warm {q}, HTTP function / direct",
                    "target": f"≤ {goal}x",
                    "measured": f"{value}x ({latency['http'][q]} / {latency['direct'][q]} ms)",
                    "ok": value <= goal,
                }
            )
    for row in results.get("throughput", []):
        if row["concurrency"] == 32:
            rows.append(
                {
                    "what": "throughput at concurrency 32, HTTP / direct",
                    "target": f"≥ {TARGET_THROUGHPUT_32}x",
                    "measured": f"{row['ratio']}x ({row['http_per_s']} / {row['direct_per_s']} /s)",
                    "ok": row["ratio"] >= TARGET_THROUGHPUT_32,
                }
            )
    pubsub = results.get("pubsub")
    if pubsub and "ratio_vs_ack_only" in pubsub:
        rows.append(
            {
                "what": "Pub/Sub push path / an acknowledge-only function",
                "target": f"≥ {TARGET_PUBSUB_VS_ACK}x",
                "measured": f"{pubsub['ratio_vs_ack_only']}x ({pubsub['messages_per_s']} / "
                f"{pubsub['ack_only_per_s']} /s)",
                "ok": pubsub["ratio_vs_ack_only"] >= TARGET_PUBSUB_VS_ACK,
            }
        )
    batch = results.get("s3_batch")
    if batch:
        rows.append(
            {
                "what": "S3: SQS batch of 10 / one record "
                f"(engine +{batch['added_engine_latency_ms']:g} ms)",
                "target": f"≤ {TARGET_S3_BATCH:g}x",
                "measured": f"{batch['ratio']}x ({batch['batch_of_10_ms']} / "
                f"{batch['single_record_ms']} ms)",
                "ok": batch["ratio"] <= TARGET_S3_BATCH,
            }
        )
    floor = results.get("cold_start", {}).get("floor")
    floor_aio = results.get("cold_start", {}).get("floor_aio")
    for name in ("http", "pubsub"):
        entry = results.get("cold_start", {}).get(name)
        if entry and floor_aio:
            rows.append(
                {
                    "what": f"cold start, {name} / hello-world aio function",
                    "target": f"≤ {TARGET_COLD}x",
                    "measured": f"{entry['vs_floor_aio']}x ({entry['median_ms']} / "
                    f"{floor_aio['median_ms']} ms)",
                    "ok": entry["vs_floor_aio"] <= TARGET_COLD,
                }
            )
    for name in ("http", "pubsub", "s3"):
        entry = results.get("cold_start", {}).get(name)
        if entry and floor:
            rows.append(
                {
                    "what": f"cold start, {name} / floor",
                    "target": f"≤ {TARGET_COLD}x",
                    "measured": f"{entry['vs_floor']}x ({entry['median_ms']} / "
                    f"{floor['median_ms']} ms)",
                    "ok": entry["vs_floor"] <= TARGET_COLD,
                }
            )
    for name, samples in memory_series(results).items():
        if not samples:
            continue
        first, last = samples[0], samples[-1]
        peak = max(s.get("peak_rss", 0.0) for s in samples)
        rows.append(
            {
                "what": f"peak RSS, {name}",
                "target": f"≤ {TARGET_RSS_MIB:g} MiB",
                "measured": f"{peak} MiB",
                "ok": peak <= TARGET_RSS_MIB,
            }
        )
        if len(samples) > 1 and first.get("peak_rss"):
            growth = last["peak_rss"] / first["peak_rss"] - 1
            now = last["rss"] / first["rss"] - 1
            rows.append(
                {
                    "what": f"peak RSS growth, {name}, {first['completions']} → "
                    f"{last['completions']}",
                    "target": f"≤ {TARGET_GROWTH:.0%}",
                    "measured": f"{growth:+.1%} ({first['peak_rss']} → {last['peak_rss']} MiB; "
                    f"current RSS {now:+.1%})",
                    "ok": growth <= TARGET_GROWTH,
                }
            )
    for name, never in NEVER_IMPORTED.items():
        entry = results.get("imports", {}).get(name)
        if entry:
            loaded = [m for m in never if m in entry["heavy_modules"]]
            rows.append(
                {
                    "what": f"{name} function imports none of {', '.join(never)}",
                    "target": "none",
                    "measured": ", ".join(loaded) or "none",
                    "ok": not loaded,
                }
            )
    return rows


def memory_series(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        "HTTP function (gunicorn worker)": results.get("memory", {}).get("http", []),
        "Pub/Sub function (gunicorn worker)": results.get("memory", {}).get("pubsub", []),
        "S3 function (handler process)": results.get("s3", {}).get("memory", []),
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# activity-completer bench ({results['size']} run, {results['started']})",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['implementation']} {m['python']}, "
        f"{m['os']}. Load average at start {results['load_average_start']}, at end "
        f"{results['load_average_end']}. Whole run {results['seconds']} s.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        "## Targets",
        "",
        "| what | target | measured | |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['what']} | {r['target']} | {r['measured']} | {verdict(r['ok'])} |"
        for r in targets(results)
    ]
    latency = results.get("latency")
    if latency:
        lines += [
            "",
            f"## Warm latency (sequential, {latency['http']['n']} completions each, ms)",
            "",
            "| path | p50 | p90 | p99 | mean | max |",
            "|---|---|---|---|---|---|",
        ]
        rows = [("HTTP function (functions-framework, gunicorn)", latency["http"])]
        if "http_engine" in latency:
            rows.append(
                (
                    "… of which inside the completion client (its `engine_ms`)",
                    latency["http_engine"],
                )
            )
        rows.append(("direct client (`AsyncActivityHandle.complete`)", latency["direct"]))
        if "naive" in results:
            rows.append(
                ("naive function (connect per request)", results["naive"]["latency"]["naive"])
            )
        for name, s in rows:
            lines.append(
                f"| {name} | {s['p50']} | {s['p90']} | {s['p99']} | {s['mean']} | {s['max']} |"
            )
        ratio = latency["ratio"]
        lines.append(
            f"| ratio HTTP / direct | {ratio['p50']}x | {ratio['p90']}x | {ratio['p99']}x | | |"
        )
    if results.get("throughput"):
        lines += [
            "",
            "## Throughput (completions/s)",
            "",
            "| concurrency | HTTP function | direct | ratio | HTTP p50 ms | direct p50 ms "
            "| CPU ms per completion, HTTP: function / Temporal / load | direct: Temporal / "
            "client |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results["throughput"]:
            http, direct = r["cpu_ms_per_completion"]["http"], r["cpu_ms_per_completion"]["direct"]
            lines.append(
                f"| {r['concurrency']} | {r['http_per_s']} | {r['direct_per_s']} | {r['ratio']}x "
                f"| {r['http_p50_ms']} | {r['direct_p50_ms']} "
                f"| {http['function']} / {http['temporal']} / {http['bench']} "
                f"| {direct['temporal']} / {direct['bench']} |"
            )
    if results.get("gunicorn"):
        lines += [
            "",
            "## gunicorn settings (HTTP function at concurrency 32; default is 1 uvicorn "
            "worker, one event loop)",
            "",
            "| settings | HTTP function /s | direct /s | ratio |",
            "|---|---|---|---|",
        ]
        for r in results["gunicorn"]:
            lines.append(
                f"| {r['settings']} | {r['http_per_s']} | {r['direct_per_s']} | {r['ratio']}x |"
            )
    naive = results.get("naive")
    if naive:
        r = naive["latency_ratio_naive_vs_ours"]
        lines += [
            "",
            "## Naive function (connect per request) against ours",
            "",
            f"Latency naive / ours: p50 {r['p50']}x, p90 {r['p90']}x, p99 {r['p99']}x.",
            "",
            "| concurrency | naive /s | ours /s | direct /s | ours / naive |",
            "|---|---|---|---|---|",
        ]
        for t in naive["throughput"]:
            lines.append(
                f"| {t['concurrency']} | {t['naive_per_s']} | {t['ours_per_s']} | "
                f"{t['direct_per_s']} | {t['ours_vs_naive']}x |"
            )
    if results.get("cold_start"):
        lines += [
            "",
            "## Cold start (process start to first completed activity, ms)",
            "",
            "| function | median | min | runs | / floor |",
            "|---|---|---|---|---|",
        ]
        for name, c in results["cold_start"].items():
            lines.append(
                f"| {name} | {c['median_ms']} | {c['min_ms']} | {c['runs_ms']} | {c['vs_floor']}x |"
            )
    if results.get("imports"):
        lines += [
            "",
            "## Imports (`python -X importtime`, best of runs)",
            "",
            "| module | load ms | import ms | heaviest top-level imports (ms) | heavy packages |",
            "|---|---|---|---|---|",
        ]
        for name, i in results["imports"].items():
            heaviest = ", ".join(f"{k} {v}" for k, v in i["heaviest_ms"].items())
            lines.append(
                f"| {name} | {i['load_ms']} | {i['import_ms']} | {heaviest} | "
                f"{', '.join(i['heavy_modules'])} |"
            )
    series = {k: v for k, v in memory_series(results).items() if v}
    if series:
        lines += [
            "",
            "## Memory (MiB)",
            "",
            "| process | after | RSS | peak RSS | requests/s (8 at once) |",
            "|---|---|---|---|---|",
        ]
        for name, samples in series.items():
            for s in samples:
                lines.append(
                    f"| {name} | {s['completions']} | {s.get('rss')} | {s.get('peak_rss')} "
                    f"| {s.get('requests_per_s', '')} |"
                )
    pubsub = results.get("pubsub")
    s3 = results.get("s3")
    if pubsub or s3:
        lines += [
            "",
            "## Trigger paths",
            "",
            "| path | per s | direct per s | ratio |",
            "|---|---|---|---|",
        ]
        if pubsub and "skipped" in pubsub:
            lines.append(f"| Pub/Sub: skipped ({pubsub['skipped']}) | | | |")
        elif pubsub:
            lines.append(
                f"| Pub/Sub: publish → emulator push → function → completed "
                f"({pubsub['completed']}/{pubsub['messages']}) | {pubsub['messages_per_s']} | "
                f"{pubsub['direct_per_s']} (concurrency {pubsub['direct_concurrency']}) | "
                f"{pubsub['ratio']}x |"
            )
            lines.append(
                f"| Pub/Sub: the same emulator pushing to a function that only acknowledges "
                f"| {pubsub['ack_only_per_s']} | | {pubsub['ratio_vs_ack_only']}x (ours / it) |"
            )
        if s3:
            lines.append(
                f"| S3: notification (SQS batches of 10) → handler → completed "
                f"({s3['completed']}/{s3['uploads']}) | {s3['uploads_per_s']} | "
                f"{s3['direct_per_s']} (concurrency 1) | {s3['ratio']}x |"
            )
    lines += client_lines(results.get("client"))
    lines += ledger_lines(results.get("ledger"))
    return "\n".join(lines) + "\n"


def client_lines(client: dict[str, Any] | None) -> list[str]:
    """A warm completion without HTTP: the SDK, our client, the whole chain (ms)."""
    if not client:
        return []
    added = client["added_p50_ms"]
    lines = [
        "",
        f"## Completion client in-process, no HTTP (sequential, {client['direct']['n']} "
        "completions each, interleaved, ms)",
        "",
        "| path | p50 | p90 | p99 | p50 added |",
        "|---|---|---|---|---|",
    ]
    names = {
        "direct": "SDK: `AsyncActivityHandle.complete`",
        "client": "`CompletionClient.execute` (target, size check, breaker, deadline)",
        "chain": "the functions' chain: keys → in-process ledger → client",
    }
    for name, label in names.items():
        row = client[name]
        lines.append(
            f"| {label} | {row['p50']} | {row['p90']} | {row['p99']} | {added.get(name, 0.0)} |"
        )
    return lines


def ledger_lines(ledger: dict[str, Any] | None) -> list[str]:
    """The completion ledger's cost: warm latency per ledger, store operations per request."""
    if not ledger:
        return []
    latency = ledger["latency"]
    names = [name for name in latency if name != "added_p50_ms"]
    lines = [
        "",
        f"## Completion ledger (HTTP function, sequential, {latency['none']['n']} completions "
        "each, ms)",
        "",
        "| ledger | p50 | p90 | p99 | p50 added |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        row = latency[name]
        added = latency["added_p50_ms"].get(name, 0.0)
        lines.append(f"| {name} | {row['p50']} | {row['p90']} | {row['p99']} | {added} |")
    lines += [
        "",
        "Store operations per request: create = one conditional write (DynamoDB: a refused "
        "put returns the held item; Firestore: a refused create is followed by one read of "
        "the held document), get = one read, replace = one write:",
        "",
        "| store | first completion | identical repeat | different request (conflict) |",
        "|---|---|---|---|",
    ]
    for name, counted in ledger["operations"].items():
        cells = [
            ", ".join(f"{n} {op}" for op, n in counted[case].items()) or "none"
            for case in ("first", "repeat", "conflict")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def chart(results: dict[str, Any], path: Path) -> bool:
    """Latency distributions (CDF) and throughput; needs the optional `bench` extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    latency = results.get("latency")
    if not latency:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    series = [("HTTP function", latency["raw_ms"]["http"]), ("direct", latency["raw_ms"]["direct"])]
    if "naive" in results:
        series.append(("naive function", results["naive"]["raw_ms"]))
    for name, values in series:
        ordered = sorted(values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        left.plot(ordered, fractions, label=name)
    left.set_xscale("log")
    left.set_xlabel("latency (ms, log)")
    left.set_ylabel("fraction of completions")
    left.set_title("warm latency, sequential")
    left.legend()
    left.grid(alpha=0.3)
    rows = results.get("throughput", [])
    if rows:
        xs = range(len(rows))
        right.bar(
            [x - 0.2 for x in xs], [r["http_per_s"] for r in rows], 0.4, label="HTTP function"
        )
        right.bar([x + 0.2 for x in xs], [r["direct_per_s"] for r in rows], 0.4, label="direct")
        right.set_xticks(list(xs), [str(r["concurrency"]) for r in rows])
        right.set_xlabel("concurrency")
        right.set_ylabel("completions/s")
        right.set_title("throughput")
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    written = {}
    png = out / "latency.png"
    if chart(results, png):
        written["chart"] = png
    stored = json.loads(json.dumps(results))
    with contextlib.suppress(KeyError):
        del stored["latency"]["raw_ms"]
    with contextlib.suppress(KeyError):
        del stored["naive"]["raw_ms"]
    stored["targets"] = targets(results)
    json_path = out / "latest.json"
    json_path.write_text(json.dumps(stored, indent=2) + "\n")
    md_path = out / "latest.md"
    md_path.write_text(markdown(results))
    return {"json": json_path, "markdown": md_path, **written}
