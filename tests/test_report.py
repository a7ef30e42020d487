"""Report figures and tables: PNGs that open as images with titles, axis labels and legends, the
comparison table of several runs, Lambda(n) from a trainer metrics JSONL, and the CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from simko_jax import report
from simko_jax.eval.config import k_values
from simko_jax.metrics import plots


def _fake_results(scale: float, benchmarks=("math500", "aime24"), n=16, conc=None) -> dict:
  ks = k_values(n)
  bench = {}
  for i, b in enumerate(benchmarks):
    curve = {str(k): min(1.0, scale * (0.2 + 0.1 * i) * (1 + np.log2(k)) / 3) for k in ks}
    bench[b] = {"num_problems": 10, "num_samples": n, "pass@k": curve, "maj@k": dict(curve),
                "mean_response_tokens": 100.0 + i, "truncated_frac": 0.05}
  avg = {"benchmarks": list(benchmarks),
         "pass@k": {k: float(np.mean([bench[b]["pass@k"][k] for b in benchmarks])) for k in map(str, ks)},
         "maj@k": {k: 0.1 for k in map(str, ks)}, "mean_response_tokens": 100.5, "truncated_frac": 0.05}
  out = {"benchmarks": bench, "average": avg, "paper_average": avg}
  if conc:
    out["concentration"] = conc
  return out


@pytest.fixture
def captured(monkeypatch):
  """Figures passed to plots._save (still written to disk)."""
  figs = []
  real_save = plots._save

  def save(fig, path):
    figs.append(fig)
    return real_save(fig, path)
  monkeypatch.setattr(plots, "_save", save)
  return figs


def _check_png(path, min_size=(300, 200)):
  with Image.open(path) as im:
    im.verify()
  with Image.open(path) as im:
    assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
    assert np.asarray(im.convert("L")).std() > 5  # not blank


def _check_axes(fig, xlabel_part, ylabel_part, num_lines=None):
  axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
  assert axes and all(ax.get_title() for ax in axes)
  for ax in axes:
    assert xlabel_part in ax.get_xlabel() and ylabel_part in ax.get_ylabel() and ax.get_title()
    legend = ax.get_legend()
    assert legend is not None
    if num_lines is not None:
      assert len(legend.get_texts()) == num_lines


def test_plots_have_labels_legends_titles(tmp_path, captured):
  curves = report.pass_at_k_curves({"base": _fake_results(1.0), "simko": _fake_results(1.3)})
  assert list(curves) == ["math500", "aime24", "average"]
  _check_png(plots.plot_pass_at_k(curves, str(tmp_path / "pass.png")))
  _check_axes(captured[-1], "k", "pass@k", num_lines=2)
  assert all(ax.get_xscale() == "log" for ax in captured[-1].axes if ax.axison)
  conc = {"grpo": {f"rank{r}_prob": p for r, p in zip(range(1, 6), (0.93, 0.06, 0.0, 0.0, 0.0))},
          "simko": {f"rank{r}_prob": p for r, p in zip(range(1, 6), (0.47, 0.23, 0.10, 0.05, 0.03))}}
  _check_png(plots.plot_rank_probs(conc, str(tmp_path / "ranks.png")))
  _check_axes(captured[-1], "rank", "probability", num_lines=2)
  metrics = tmp_path / "metrics.jsonl"
  rows = [{"step": s, "lambda_1": -0.1 / (s + 1), "lambda_2": -3 - s / 10, "lambda_3": -5 - s / 5,
           "rank1_prob": 0.8} for s in range(20)]
  metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 20, \"lambda_1\"")  # torn tail
  assert len(plots.read_metrics_jsonl(str(metrics))) == 20
  _check_png(plots.plot_lambda_over_steps({"grpo": plots.read_metrics_jsonl(str(metrics)),
                                           "simko": rows[:10]}, str(tmp_path / "lambda.png")))
  _check_axes(captured[-1], "step", "Lambda", num_lines=2)
  assert [ax.get_title() for ax in captured[-1].axes] == ["Lambda(1)", "Lambda(2)", "Lambda(3)"]


def test_report_cli_compares_runs(tmp_path, capsys):
  runs = {"base": _fake_results(1.0), "grpo": _fake_results(1.1, conc={"rank1_prob": 0.9, "rank2_prob": 0.05,
                                                                        "lambda_1": -0.1}),
          "simko": _fake_results(1.3, conc={"rank1_prob": 0.5, "rank2_prob": 0.2, "lambda_1": -0.7})}
  dirs = []
  for name, res in runs.items():
    d = tmp_path / name
    d.mkdir()
    conc = res.pop("concentration", None)
    (d / "results.json").write_text(json.dumps(res))
    if conc:
      (d / "concentration.json").write_text(json.dumps(conc))
    dirs.append(f"{name}={d}")
  metrics = tmp_path / "m.jsonl"
  metrics.write_text("\n".join(json.dumps({"step": s, "lambda_1": -s / 10, "lambda_2": -s}) for s in range(5)))
  written = report.main(["--runs", ",".join(dirs), "--out", str(tmp_path / "out"), "--ks", "1,4,16",
                         "--train_metrics", f"simko={metrics}"])
  assert set(written) == {"pass_at_k", "rank_probs", "lambda_steps", "report"}
  for key in ("pass_at_k", "rank_probs", "lambda_steps"):
    _check_png(written[key])
  md = (tmp_path / "out" / "report.md").read_text()
  header = "| benchmark | run | problems | n | pass@1 | pass@4 | pass@16 | maj@16 | mean tokens | truncated % |"
  assert header in md and "![pass_at_k](pass_at_k.png)" in md
  for name in runs:
    assert f"| math500 | {name} | 10 | 16 |" in md and f"| **avg** (2) | {name} |" in md
  p1 = 100 * runs["simko"]["benchmarks"]["aime24"]["pass@k"]["1"]
  assert f"| aime24 | simko | 10 | 16 | {p1:.1f} |" in md
  assert "| simko | 0.500 | 0.200 |" in md and "| base |" not in md.split("## Concentration")[1]
  assert md in capsys.readouterr().out
  with pytest.raises(FileNotFoundError, match="results.json"):
    report.load_run(str(tmp_path))


def test_example_plots_for_review(tmp_path):
  """Writes example figures to /tmp/eval_plots (for a human look; also checked here as PNGs)."""
  out = "/tmp/eval_plots"
  runs = {"base": _fake_results(1.0, ("math500", "aime24", "amc23", "minerva"), n=256,
                                conc={f"rank{r}_prob": p for r, p in zip(range(1, 6), (.7, .12, .05, .03, .02))}),
          "grpo": _fake_results(1.4, ("math500", "aime24", "amc23", "minerva"), n=256,
                                conc={f"rank{r}_prob": p for r, p in zip(range(1, 6), (.93, .06, .0, .0, .0))}),
          "simko": _fake_results(1.5, ("math500", "aime24", "amc23", "minerva"), n=256,
                                 conc={f"rank{r}_prob": p for r, p in zip(range(1, 6), (.47, .23, .1, .05, .03))})}
  steps = range(0, 141, 5)
  train = {"grpo": [{"step": s, "lambda_1": -0.5 * np.exp(-s / 30), "lambda_2": -4 - s / 25,
                     "lambda_3": -6 - s / 20} for s in steps],
           "simko": [{"step": s, "lambda_1": -0.6 - s / 1000, "lambda_2": -2.5 - s / 200,
                      "lambda_3": -3.5 - s / 150} for s in steps]}
  written = report.write_report(runs, out, train_metrics=train, title="Example: base vs GRPO vs SimKO")
  for key in ("pass_at_k", "rank_probs", "lambda_steps"):
    _check_png(written[key])


def test_report_cli_bad_input_is_one_line(tmp_path):
  """Unknown flag, missing run dir, damaged results.json, unwritable --out: one `error:` line, exit 1."""
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def cli(*args):
    proc = subprocess.run([sys.executable, "-m", "simko_jax.report", *args], cwd=root, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=root, MPLBACKEND="Agg"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]

  good = tmp_path / "good"
  good.mkdir()
  (good / "results.json").write_text(json.dumps(_fake_results(1.0, ("math500",), n=4)))
  out = str(tmp_path / "out")
  assert "unrecognized arguments: --bogus" in cli("--runs", f"a={good}", "--out", out, "--bogus")
  assert cli("--runs", f"a={tmp_path / 'nope'}", "--out", out).startswith("error: ")
  assert "results.json not found" in cli("--runs", f"a={tmp_path / 'nope'}", "--out", out)
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "results.json").write_text('{"benchmarks": ')
  assert "results.json is damaged" in cli("--runs", f"a={bad}", "--out", out)
  (tmp_path / "a_file").write_text("x")
  line = cli("--runs", f"a={good}", "--out", str(tmp_path / "a_file" / "sub"))
  assert line.startswith("error: --out = ") and "cannot be created" in line and "choose a writable" in line
  assert not os.path.exists(out)
