"""Section 8 ("History" on the page): this run's headline metrics beside earlier recorded runs', and the
summary's "since the last recorded run" line. The record is `tunepipe.runs.earlier_runs(...)`'s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.report.sections import as_dict, as_list, difference
from tunepipe.runs import HEADLINE


def _short(entry: dict[str, Any]) -> str:
    return entry.get("short") or str(entry.get("commit") or "")[:7]


def earlier_runs(record: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    record = as_dict(record)
    metrics = as_dict(inputs.get("metrics"))
    current = {key: metrics.get(key) for key in HEADLINE}  # the metrics each earlier run recorded
    rows = []
    for entry in as_list(record.get("entries")):
        entry = as_dict(entry)
        values = as_dict(entry.get("metrics")) if entry.get("metrics") is not None else None
        rows.append({
            "commit": entry.get("commit"),
            "short": _short(entry),
            "date": entry.get("date"),
            "subject": entry.get("subject"),
            "metrics": values,
            "accuracy_diff": difference(values.get("accuracy"), current["accuracy"]) if values else None,
            "status": entry.get("status"),
            "same": bool(entry.get("same_as_current")),
            "changes": [str(change) for change in as_list(entry.get("changes"))],
        })
    return {
        "collected": bool(record),
        "available": bool(record.get("available")),
        "reason": record.get("reason"),
        "current": current,
        "rows": rows,
    }


def since_last(record: Any, inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """What changed since the newest earlier recorded run: its commit, the params that differ, the accuracy change."""
    record = as_dict(record)
    entries = as_list(record.get("entries"))
    if not record.get("available") or not entries:
        return None
    last = as_dict(entries[0])
    earlier = as_dict(last.get("metrics"))
    changes = record.get("since_last")
    return {
        "short": _short(last),
        "subject": last.get("subject"),
        "changes": [str(change) for change in as_list(changes)] if changes is not None else None,
        "accuracy_diff": difference(as_dict(inputs.get("metrics")).get("accuracy"), earlier.get("accuracy")) if earlier else None,
        # the paired test on the two runs' test predictions (tunepipe.trust.significance), in words
        "comparison": as_dict(record.get("since_last_comparison")).get("sentence"),
    }
