"""Baselines (`mlp baselines`): one row per trained model, for the report to show beside the sweep
of the same split."""
from __future__ import annotations

import time
from typing import Any

from mlp.runs.store.records import encode_json
from mlp.runs.store.schema import _BASELINE_SELECT, BASELINE_FIELDS, _baseline_dict

__all__ = ["Baselines"]


class Baselines:
    """The baselines table (a part of `Store`)."""

    # ---------------------------------------------------------------- baselines
    def add_baseline(self, **fields: Any) -> str:
        """Record one trained baseline model (every name of BASELINE_FIELDS; ``sweep_id``,
        ``run_id``, ``library``, accuracies and ``val_fraction`` may be None); returns its id."""
        missing = sorted(set(BASELINE_FIELDS) - set(fields))
        unknown = sorted(set(fields) - set(BASELINE_FIELDS))
        if missing or unknown:
            raise ValueError(f"add_baseline: missing {missing}, unknown {unknown}")
        values = {("settings_json" if k == "settings" else k): (encode_json(fields[k] or {}) if k == "settings"
                                                                else fields[k]) for k in BASELINE_FIELDS}
        for key in ("val_accuracy", "test_accuracy", "train_seconds", "val_fraction"):
            if values[key] is not None:
                values[key] = float(values[key])
        values.update(host=self._host, created_at=time.time())
        with self._write() as db:
            if values["sweep_id"] is not None:
                self._require_sweep(db, values["sweep_id"])
            return self._insert(db, "baselines", "baseline", values)

    def list_baselines(self, dataset: str | None = None, val_rows_sha256: str | None = None) -> list[dict]:
        """Baseline rows, oldest first, optionally only those of a dataset and of exactly the
        validation rows `val_rows_sha256`; ``settings`` decoded."""
        where, params = [], []
        for column, value in (("dataset", dataset), ("val_rows_sha256", val_rows_sha256)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = (_BASELINE_SELECT
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created_at, rowid")
        with self._read() as db:
            return [_baseline_dict(row) for row in db.execute(sql, params).fetchall()]
