"""Evaluation of next-symbol prediction on piecewise-stationary sources (eval family
'piecewise'; data/piecewise.py, Genewein et al. 2023).

Suites:
  in_distribution   sequences of the training source
  stationary        one segment per sequence (no switches): the stationary Dirichlet predictor
                    is the Bayes predictor here, the training source's Bayes predictor is not

Predictors (baselines/changepoint.py), each giving a distribution over the K symbols at every
position from the symbols before it:
  model        the trained model (its read-out over the K symbols, softmax)
  bayes        the exact Bayes predictor of the training source (run-length filter)
  stationary   the Dirichlet(concentration) predictive ignoring switches (KT at 1/2)
  window_<w>   the same on the last w symbols
  oracle       the true distribution of each symbol's segment (the floor; knows theta)

Metrics, per predictor, each with a 95% percentile-bootstrap interval over sequences
(analysis/stats.py):
  loss            log loss -log P(x_n) per position and averaged over positions (nats)
  regret          per position, the expected log loss under the true segment distribution
                  theta_n minus its entropy, i.e. KL(theta_n || P_n) (Genewein et al.'s
                  instantaneous regret, measured against the oracle), and its sum over the
                  sequence ('cumulative_regret')
  excess_over_bayes   cumulative regret minus that of the Bayes predictor on the same
                  sequence (their 'cumulative regret above optimal')
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from analysis.base import GENERATION_BLOCK, ModelFns, draw_in_blocks
from analysis.stats import ci_entry as _ci, scalar_ci_entry as _scalar_ci
from baselines import changepoint
from core import ConfigError

SUITES: Tuple[str, ...] = ('in_distribution', 'stationary')
WINDOWS: Tuple[int, ...] = (8, 32)


@functools.lru_cache(maxsize=32)
def _sampler(task, split: str):
  return jax.jit(lambda key: task.sample_split(key, GENERATION_BLOCK, split))


def suite_prompts(task, split: str, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  """`num_prompts` sequences of `split`, deterministic in `seed` (independent of batch sizes)."""
  return draw_in_blocks(_sampler(task, split), num_prompts, seed)


def predictor_probs(task, batch) -> Dict[str, jax.Array]:
  """Predictive distributions (B x N x K) of every reference predictor."""
  symbols_BxN = batch['symbols_BxN']
  k, alpha = task.num_symbols, task.concentration
  probs = {'bayes': task.bayes_probs(batch),
           'stationary': changepoint.stationary(symbols_BxN, k, alpha)}
  for window in WINDOWS:
    probs[f'window_{window}'] = changepoint.sliding_window(symbols_BxN, k, alpha, window)
  probs['oracle'] = batch['params_BxNxK']
  return probs


@functools.lru_cache(maxsize=32)
def _scorer(task):
  @jax.jit
  def score(outputs, batch):
    """{name: (log loss B x N, expected log loss under theta B x N)}, and the entropy."""
    symbols_BxN, params_BxNxK = batch['symbols_BxN'], batch['params_BxNxK']
    log_probs = {'model': task.symbol_log_probs(outputs)}
    for name, probs in predictor_probs(task, batch).items():
      log_probs[name] = jnp.log(jnp.maximum(probs, 0.0))
    out = {}
    for name, lp_BxNxK in log_probs.items():
      picked_BxN = jnp.take_along_axis(lp_BxNxK, symbols_BxN[..., None], -1)[..., 0]
      out[f'{name}/loss'] = -picked_BxN
      out[f'{name}/expected'] = changepoint.cross_entropy(lp_BxNxK, params_BxNxK)
    out['entropy'] = changepoint.entropy(params_BxNxK)
    return out
  return score


def score_prompts(model: ModelFns, task, arrays: Dict[str, np.ndarray],
                  batch_size: int) -> Dict[str, np.ndarray]:
  """Per-sequence, per-position scores of the model and every predictor (float64 S x N)."""
  num_prompts = arrays['tokens_BxT'].shape[0]
  score = _scorer(task)
  size = min(batch_size, num_prompts)
  parts = []
  for start in range(0, num_prompts, size):
    rows = np.arange(start, start + size)
    rows = np.where(rows < num_prompts, rows, start)       # pad the last chunk; cut below
    batch = {k: jnp.asarray(v[rows]) for k, v in arrays.items()}
    outputs = model.predict(batch)
    if outputs.shape[-1] != task.num_symbols:
      raise ValueError(f'model outputs {outputs.shape[-1]} values per position; the task '
                       f'needs {task.num_symbols} (one per symbol)')
    scores = jax.device_get(score(outputs, batch))
    keep = min(size, num_prompts - start)
    parts.append({k: np.asarray(v)[:keep] for k, v in scores.items()})
  return {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in parts[0]}


def run_suite(suite: str, model: ModelFns, task, config, *, num_prompts: int, seed: int,
              batch_size: int) -> Dict[str, Any]:
  """Log loss and regret of `model` and the reference predictors on `suite`, with 95%
  bootstrap intervals over sequences (JSON-serialisable)."""
  del config
  if suite not in SUITES:
    raise ConfigError(f'suite={suite!r} is invalid: allowed {", ".join(SUITES)}')
  if num_prompts < 1 or batch_size < 1:
    raise ConfigError(f'num_prompts={num_prompts}, batch_size={batch_size} are invalid: '
                      'both must be >= 1')
  arrays = suite_prompts(task, suite, num_prompts, seed)
  scores = score_prompts(model, task, arrays, batch_size)
  entropy_SxN = scores['entropy']
  bayes_regret_S = np.sum(scores['bayes/expected'] - entropy_SxN, axis=1)
  names = [k[:-len('/loss')] for k in scores if k.endswith('/loss')]
  metrics: Dict[str, Dict[str, Any]] = {}
  for name in names:
    loss_SxN = scores[f'{name}/loss']
    regret_SxN = scores[f'{name}/expected'] - entropy_SxN
    cumulative_S = np.sum(regret_SxN, axis=1)
    metrics[name] = {
        'loss': _scalar_ci(loss_SxN.mean(1), seed),
        'cumulative_regret': _scalar_ci(cumulative_S, seed),
        'excess_over_bayes': _scalar_ci(cumulative_S - bayes_regret_S, seed),
        'by_position': {'loss': _ci(loss_SxN, seed), 'regret': _ci(regret_SxN, seed)},
    }
  starts = arrays['segment_start_BxN']
  return dict(suite=suite, task=task.name, description=task.split_description(suite),
              num_prompts=int(num_prompts), seed=int(seed), num_symbols=task.num_symbols,
              seq_len=task.num_positions, switch=task.switch, hazard=float(task.hazard),
              concentration=float(task.concentration),
              mean_segments=float(np.mean(np.sum(starts, axis=1))), metrics=metrics)


def summary(result: Dict[str, Any]) -> str:
  lines = [f'{result["suite"]}: {result["num_prompts"]} sequences of {result["seq_len"]} '
           f'symbols ({result["description"]}; {result["mean_segments"]:.2f} segments on '
           'average)']
  for name, m in result['metrics'].items():
    loss, regret, excess = m['loss'], m['cumulative_regret'], m['excess_over_bayes']
    lines.append(f'  {name:12s} loss {loss["mean"]:.4f}  cumulative regret {regret["mean"]:7.3f}'
                 f' [{regret["lo"]:.3f}, {regret["hi"]:.3f}]  over bayes '
                 f'{excess["mean"]:7.3f} [{excess["lo"]:.3f}, {excess["hi"]:.3f}]')
  return '\n'.join(lines)


def plot(result: Dict[str, Any], png_path: str) -> None:
  """Log loss and instantaneous regret per position, and cumulative regret, per predictor."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  metrics = result['metrics']
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
  fixed = {'model': dict(color='black', linewidth=2.2, zorder=3),
           'bayes': dict(color='C3', linestyle='--', linewidth=1.8, zorder=4),
           'oracle': dict(color='C7', linestyle=':')}
  for i, (name, m) in enumerate(metrics.items()):
    style = fixed.get(name, dict(color=f'C{i % 3}', linewidth=1.2))
    for ax, key in zip(axes[:2], ('loss', 'regret')):
      if key == 'regret' and name == 'oracle':
        continue                                   # zero by definition
      entry = m['by_position'][key]
      mean = np.asarray(entry['mean'])
      xs = np.arange(1, len(mean) + 1)
      ax.plot(xs, mean, label=name, **style)
      if name == 'model':
        ax.fill_between(xs, entry['lo'], entry['hi'], alpha=0.2, color='black', linewidth=0)
    if name == 'oracle':
      continue
    cumulative = np.cumsum(m['by_position']['regret']['mean'])
    axes[2].plot(np.arange(1, len(cumulative) + 1), cumulative, label=name, **style)
  axes[0].set_ylabel('log loss (nats)')
  axes[1].set_ylabel('regret: KL(theta_n || prediction) (nats)')
  axes[1].set_yscale('log')
  axes[2].set_ylabel('cumulative regret (nats)')
  for ax in axes:
    ax.set_xlabel('symbol position n')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  excess = metrics['model']['excess_over_bayes'] if 'model' in metrics else None
  title = (f'{result["task"]} {result["suite"]}: K={result["num_symbols"]}, '
           f'switch={result["switch"]}' + (f' (h={result["hazard"]:g})'
                                           if result['switch'] == 'hazard' else '')
           + f', {result["num_prompts"]} sequences')
  if excess is not None:
    title += (f'; model cumulative regret above Bayes {excess["mean"]:.2f} '
              f'[{excess["lo"]:.2f}, {excess["hi"]:.2f}] nats')
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)


def seed_curves(result: Dict[str, Any]) -> Dict[str, Tuple[list, list]]:
  """The model's log loss and regret per position: what eval.py averages across seeds."""
  by_position = result['metrics']['model']['by_position']
  x = list(range(1, len(by_position['loss']['mean']) + 1))
  return {'model loss': (x, by_position['loss']['mean']),
          'model regret': (x, by_position['regret']['mean'])}
