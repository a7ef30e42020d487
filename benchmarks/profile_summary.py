"""Where the device time goes in the traces `benchmarks/accelerator.py --profile DIR` wrote.

  /tmp/venv-prof/bin/python benchmarks/profile_summary.py accel_out/profile.tgz      # or the folder
  /tmp/venv-prof/bin/python benchmarks/profile_summary.py DIR --top 40 --tool framework_op_stats

Runs with the `xprof` package (kept out of the project venv: `python -m venv /tmp/venv-prof &&
/tmp/venv-prof/bin/pip install xprof`); imports nothing of ours, so the GPU machine's traces are read
here. For each part (a sub-folder holding `plugins/profile/*/*.xplane.pb`, e.g. decode/ and train/),
xprof's `hlo_stats` tool gives one row per HLO op: occurrences, total self time, the FLOP rate and
memory bandwidth xprof derives, and what bounds the op. Printed: total device self time, time per
category (fusion, convolution/matmul, custom-call, ...), then the --top ops by self time with their
per-occurrence time. `--tool framework_op_stats` groups by JAX op instead. xprof derives no op rows
from an XLA:CPU trace (both tables are empty there), so this reads GPU and TPU traces only.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import tarfile
import tempfile


def table_rows(data: bytes | str) -> list[dict]:
  """Rows of an xprof DataTable JSON (one table, or the first of a list) as {column id: value}."""
  table = json.loads(data)
  if isinstance(table, list):
    table = table[0] if table else {}
  ids = [c["id"] for c in table.get("cols", [])]
  return [{k: (cell or {}).get("v") for k, cell in zip(ids, row.get("c", []))} for row in table.get("rows", [])]


def summarize(rows: list[dict], top: int) -> str:
  """Text table: total self time, per-category totals, the top ops (hlo_stats or framework_op_stats rows)."""
  self_us = lambda r: float(r.get("total_self_time") or 0.0)
  total = sum(self_us(r) for r in rows)
  if not rows or total <= 0:
    return "  (no op rows: xprof derives none from an XLA:CPU trace)"
  by_cat = collections.Counter()
  for r in rows:
    by_cat[r.get("category") or r.get("type") or "?"] += self_us(r)
  lines = [f"  device self time {total / 1e3:.2f} ms over {len(rows)} ops"]
  lines += [f"    {cat:<28}{us / 1e3:>10.2f} ms {100 * us / total:>6.1f} %" for cat, us in by_cat.most_common()]
  lines.append(f"  {'self ms':>9} {'%':>6} {'count':>7} {'us/each':>8} {'bound by':<10} op")
  for r in sorted(rows, key=self_us, reverse=True)[:top]:
    count = int(r.get("occurrences") or 0)
    name = r.get("hlo_op_name") or r.get("operation") or "?"
    source = r.get("tf_op_name") or ""
    lines.append(f"  {self_us(r) / 1e3:>9.3f} {100 * self_us(r) / total:>6.1f} {count:>7} "
                 f"{self_us(r) / max(count, 1):>8.1f} {str(r.get('bound_by') or '-'):<10} "
                 f"{name[:40]}  {source[-70:]}")
  return "\n".join(lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("path", help="folder or .tgz with <part>/plugins/profile/*/*.xplane.pb")
  ap.add_argument("--top", type=int, default=25)
  ap.add_argument("--tool", default="hlo_stats", choices=("hlo_stats", "framework_op_stats"))
  args = ap.parse_args()
  from xprof.convert import raw_to_tool_data

  root = args.path
  if os.path.isfile(root):
    root = tempfile.mkdtemp(prefix="profile_summary_")
    with tarfile.open(args.path) as tar:
      tar.extractall(root, filter="data")
  traces = sorted(glob.glob(os.path.join(root, "**", "plugins", "profile", "*", "*.xplane.pb"), recursive=True))
  if not traces:
    raise SystemExit(f"no */plugins/profile/*/*.xplane.pb under {args.path}")
  for path in traces:
    part = os.path.relpath(path, root).split(os.sep + "plugins" + os.sep)[0]
    data, _ = raw_to_tool_data.xspace_to_tool_data([path], args.tool, {})
    print(f"== {part} ({os.path.relpath(path, root)}), {args.tool}")
    print(summarize(table_rows(data) if data else [], args.top))


if __name__ == "__main__":
  main()
