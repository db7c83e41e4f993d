"""Across-seed summaries and the plots of evaluations through training.

* `across_seeds`: mean and 95% Student-t interval over the seeds of a run, per position.
* `plot_seed_curves`: every seed's curve (thin) with the across-seed mean and interval.
* `plot_checkpoint_heatmaps`: step x position heatmaps over all checkpoints of a run.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def _figure(width=6.4, height=4.2, ncols=1):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width * ncols, height))
  FigureCanvasAgg(fig)
  return fig


def across_seeds(curves_NxP: Sequence[Sequence[float]], level: float = 0.95) -> Dict[str, list]:
  """Mean over seeds with a Student-t interval at each position (None where undefined)."""
  from scipy import stats
  values = np.array([[np.nan if v is None else v for v in c] for c in curves_NxP], np.float64)
  n = np.sum(np.isfinite(values), axis=0)
  with np.errstate(invalid='ignore', divide='ignore'):
    mean = np.nanmean(values, axis=0) if values.size else values
    sd = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(values.shape[1])
    half = stats.t.ppf((1 + level) / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1))
  half = np.where(n > 1, half, np.nan)
  clean = lambda a: [None if not np.isfinite(v) else float(v) for v in a]
  return {'mean': clean(mean), 'lo': clean(mean - half), 'hi': clean(mean + half),
          'num_seeds': int(values.shape[0]), 'per_seed': [clean(v) for v in values]}


def plot_seed_curves(summary: Dict[str, dict], title: str, png_path: str) -> None:
  """One panel per curve: thin line per seed, bold mean, shaded 95% interval over seeds."""
  names = list(summary)
  fig = _figure(ncols=len(names))
  for i, name in enumerate(names):
    ax = fig.add_subplot(1, len(names), i + 1)
    entry = summary[name]
    x = np.asarray(entry['x'])
    as_array = lambda v: np.array([np.nan if a is None else a for a in v], np.float64)
    for s, curve in enumerate(entry['per_seed']):
      ax.plot(x, as_array(curve), lw=0.8, alpha=0.6, color=f'C{s % 10}',
              label=f'seed {entry["seeds"][s]}' if len(entry['per_seed']) <= 10 else None)
    ax.plot(x, as_array(entry['mean']), color='black', lw=2.4, label='mean')
    ax.fill_between(x, as_array(entry['lo']), as_array(entry['hi']), color='black', alpha=0.15,
                    lw=0, label='95% interval (t)')
    ax.set_xlabel('position' if 'error' not in name else 'number of in-context examples')
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def plot_checkpoint_heatmaps(result: dict, png_path: str) -> None:
  """Step x position heatmap (mean over seeds) per metric, and each seed's ICL score."""
  names = list(result['curves'])
  steps = result['steps']
  fig = _figure(width=5.2, ncols=len(names) + 1)
  for i, name in enumerate(names):
    ax = fig.add_subplot(1, len(names) + 1, i + 1)
    grid = np.mean(np.asarray(result['curves'][name], np.float64), axis=1)  # steps x P
    image = ax.imshow(grid, aspect='auto', origin='lower', cmap='magma_r' if name not in ('accuracy', 'top1')
                      else 'magma', interpolation='nearest')
    ax.set_yticks(range(len(steps)))
    ax.set_yticklabels([str(s) for s in steps], fontsize=7)
    ax.set_xlabel('position')
    ax.set_ylabel('checkpoint step')
    ax.set_title(f'{name} (mean over {len(result["seeds"])} seed(s))')
    fig.colorbar(image, ax=ax)
  ax = fig.add_subplot(1, len(names) + 1, len(names) + 1)
  if result.get('icl_score') is not None:
    from runlib.positions_plot import plot_icl_scores
    plot_icl_scores(ax, steps, result['icl_score'], result['seeds'], 'checkpoint step')
  fig.suptitle(f'{result["task"]}: every checkpoint ({result["num_prompts"]} prompts)')
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)
