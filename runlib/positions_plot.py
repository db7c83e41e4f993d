"""The PNG of a run's scheduled per-position curves (eval/positions/step_<n>.json) through
training: written by the training loop at the end of a run, readable by anything above it."""
from __future__ import annotations

import glob
import json
import os
from typing import List

import numpy as np


def _load_steps(directory: str) -> List[dict]:
  """Every step_<n>.json of `directory`, by step."""
  rows = []
  for path in glob.glob(os.path.join(directory, 'step_*.json')):
    with open(path) as f:
      rows.append(json.load(f))
  return sorted(rows, key=lambda r: r['step'])


def plot_position_curves_through_training(directory: str, png_path: str) -> None:
  """Per-position curves (mean over seeds) at every evaluated step, light (early) to dark."""
  rows = _load_steps(directory)
  if not rows:
    return
  import matplotlib
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  names = list(rows[0]['curves'])
  fig = Figure(figsize=(6.4 * (len(names) + 1), 4.2))
  FigureCanvasAgg(fig)
  cmap = matplotlib.colormaps['viridis']
  for i, name in enumerate(names):
    ax = fig.add_subplot(1, len(names) + 1, i + 1)
    for j, row in enumerate(rows):
      curve = np.mean(np.asarray(row['curves'][name], np.float64), axis=0)
      ax.plot(np.arange(curve.size), curve, color=cmap(j / max(len(rows) - 1, 1)), lw=1.2,
              label=f'step {row["step"]}' if j in (0, len(rows) - 1) else None)
    ax.set_xlabel('position (in-context examples / token)')
    ax.set_ylabel(f'{name} (mean over {len(rows[0]["seeds"])} seed(s))')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  ax = fig.add_subplot(1, len(names) + 1, len(names) + 1)
  steps = [r['step'] for r in rows]
  if rows[0].get('icl_score') is not None:
    plot_icl_scores(ax, steps, [r['icl_score'] for r in rows], rows[0]['seeds'], 'training step')
  fig.suptitle('evaluation during training')
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def plot_icl_scores(ax, steps, scores_SxN, seeds, xlabel: str) -> None:
  """Each seed's ICL score (late - early) against the step, on a log axis."""
  scores = np.asarray(scores_SxN, np.float64)
  for s in range(scores.shape[1]):
    ax.plot(steps, scores[:, s], marker='o', ms=3, lw=1, label=f'seed {seeds[s]}')
  ax.set_xscale('log')
  ax.set_xlabel(xlabel)
  ax.set_ylabel('ICL score (late - early)')
  ax.axhline(0, color='gray', lw=0.8, ls='--')
  ax.grid(alpha=0.3)
  if scores.shape[1] <= 10:
    ax.legend(fontsize=7)
