"""Watching in-context learning emerge: attention maps, induction / previous-token scores
per head, and linear probes of the residual stream, on any trained run.

  python -m analysis.diagnostics --workdir DIR [--checkpoint STEP]
  python -m analysis.diagnostics --workdir DIR --all-checkpoints

Instruments (usable from Python too):

* `attention_maps(model, inputs)`: (attention layers, B, heads, T, T) causal softmax
  probabilities of every softmax-attention layer (`attention`, `momentum_attention`: any
  mixer with an `attention_probs` method); other mixers have no attention matrix and are
  skipped (`attention_layers(model)` names the block indices kept).
* `induction_scores` / `previous_token_scores` (Olsson et al. 2022, "In-context learning and
  induction heads") on repeated sequences [s_1..s_P, s_1..s_P]: per layer and head, the mean
  attention from each position i of the second copy to i - P + 1 (the position right after
  the earlier occurrence of the current token: an induction head's target), resp. to i - 1.
  Token models: s is a sequence of P distinct random tokens (ids other than pad and
  separator). Vector (regression) models: s is the first half of a real prompt in the
  model's own x, y layout, so P = 2 * (pairs); the induction score there is taken at the x
  positions of the second copy (target: the y of the same x in the first copy, i.e. the
  head that copies a seen label) and the previous-token score at every second-copy position.
* Linear probes (`analysis.probes`) for regression runs: ridge read-outs of w, of the
  least-squares solution so far, and of the query's label y (a positive control) from every
  layer's stream at chosen x positions; held-out R^2 per layer x number of examples.

Writes DIR/eval/diagnostics.json and PNGs (attention maps of a repeated and a task prompt,
scores per layer x head, probe R^2); with --all-checkpoints, the per-head scores at every
kept checkpoint beside the run's in-context-learning score
(DIR/eval/diagnostics_checkpoints.{json,png}).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from runlib.positions import attention_target_scores


# ---- hidden states and attention maps -------------------------------------------------------

def attention_layers(model) -> List[int]:
  """Indices of the blocks whose mixer exposes softmax attention probabilities."""
  return model.attention_layers()


_JITTED: Dict[str, Any] = {}


def _jitted(name: str):
  """nnx.jit-compiled inspection functions, built once (compiled per model structure/shape)."""
  if name not in _JITTED:
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit
    def maps(model, inputs):
      hidden = model.hidden_states(inputs)
      out = [model.blocks[i].mixer.attention_probs(model.blocks[i].mixer_input(hidden[i]))
             .astype(jnp.float32) for i in attention_layers(model)]
      return jnp.stack(out)

    @nnx.jit
    def hidden(model, inputs):
      return jnp.stack([h.astype(jnp.float32) for h in model.hidden_states(inputs)])

    _JITTED.update(maps=maps, hidden=hidden)
  return _JITTED[name]


def attention_maps(model, inputs) -> np.ndarray:
  """probs (layers_with_attention, B, heads, T, T) as float32 NumPy: row t of a head holds the
  weights position t gives positions 0..t (zero above the diagonal, rows sum to 1). A model
  without softmax-attention layers gives an array with 0 layers."""
  if not attention_layers(model):
    T = inputs.shape[1]
    return np.zeros((0, inputs.shape[0], 0, T, T), np.float32)
  return np.asarray(_jitted('maps')(model, inputs))


def hidden_states(model, inputs) -> np.ndarray:
  """Residual streams (num_layers + 1, B, T, D) as float32 NumPy (index 0: after read-in)."""
  return np.asarray(_jitted('hidden')(model, inputs))


# ---- repeated-sequence probes ---------------------------------------------------------------

def repeated_token_prompts(rng: np.random.Generator, batch_size: int, period: int,
                           token_ids: Sequence[int]) -> np.ndarray:
  """tokens (B, 2 * period): a random sequence then itself. The sequence has distinct tokens
  when `period` <= len(token_ids) (so 'the earlier occurrence' is unique), else i.i.d."""
  ids = np.asarray(token_ids, np.int32)
  if period <= len(ids):
    first = np.stack([rng.permutation(ids)[:period] for _ in range(batch_size)])
  else:
    first = rng.choice(ids, size=(batch_size, period))
  return np.concatenate([first, first], axis=1).astype(np.int32)


def repeated_regression_prompts(task, key, batch_size: int, pairs: int, step: int = 0):
  """features (B, 4 * pairs, F) in the task's layout: the first `pairs` (x, y) examples of a
  real prompt, then the same examples again. Returns (features, period = 2 * pairs)."""
  import jax.numpy as jnp
  batch = task.sample(key, batch_size, step)
  half = {'xs_BxNxD': batch['xs_BxNxD'][:, :pairs], 'ys_BxN': batch['ys_BxN'][:, :pairs]}
  repeated = {k: jnp.concatenate([v, v], axis=1) for k, v in half.items()}
  return np.asarray(task.model_inputs(repeated)), 2 * pairs


def second_copy_positions(period: int, vector_layout: bool = False) -> np.ndarray:
  """Query positions of the second copy: all of them, or only x positions (even offsets)."""
  positions = np.arange(period, 2 * period)
  return positions[::2] if vector_layout else positions


def _score(maps_LxBxHxTxT, queries, targets) -> np.ndarray:
  maps = np.asarray(maps_LxBxHxTxT)
  if maps.shape[-1] < 1 or maps.shape[0] == 0:
    return np.zeros(maps.shape[:1] + maps.shape[2:3])
  queries, targets = np.asarray(queries), np.asarray(targets)
  if queries.size == 0 or targets.min() < 0 or queries.max() >= maps.shape[-1]:
    raise ValueError(f'query positions {queries.min()}..{queries.max()} with targets '
                     f'{targets.min()}..{targets.max()} do not fit {maps.shape[-1]} positions')
  return maps[..., queries, targets].astype(np.float64).mean(axis=(1, 3))


def induction_scores(maps_LxBxHxTxT, period: int, query_positions=None) -> np.ndarray:
  """(L, H): mean attention from query i (default: every second-copy position) to
  i - period + 1, the token after the earlier occurrence of the current one."""
  queries = second_copy_positions(period) if query_positions is None else query_positions
  queries = np.asarray(queries)
  return _score(maps_LxBxHxTxT, queries, queries - period + 1)


def previous_token_scores(maps_LxBxHxTxT, period: Optional[int] = None,
                          query_positions=None) -> np.ndarray:
  """(L, H): mean attention from query i to i - 1 (default queries: the second copy when
  `period` is given, else every position >= 1)."""
  if query_positions is None:
    T = np.asarray(maps_LxBxHxTxT).shape[-1]
    query_positions = second_copy_positions(period) if period else np.arange(1, T)
  queries = np.asarray(query_positions)
  return _score(maps_LxBxHxTxT, queries, queries - 1)


# ---- plots ----------------------------------------------------------------------------------

def _figure(width, height):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width, height))
  FigureCanvasAgg(fig)
  return fig


def plot_attention_maps(maps_LxBxHxTxT, png_path: str, *, prompt_index: int = 0,
                        layer_names: Optional[Sequence[str]] = None,
                        title: Optional[str] = None, period: Optional[int] = None,
                        max_positions: int = 256) -> None:
  """A grid (layers x heads) of one prompt's attention maps (query rows, key columns).
  `period` draws the boundary of a repeated sequence's two copies."""
  maps = np.asarray(maps_LxBxHxTxT)
  num_layers, _, num_heads, T, _ = maps.shape
  T = min(T, max_positions)
  if num_layers == 0:
    return
  fig = _figure(2.4 * num_heads + 0.6, 2.3 * num_layers + 0.6)
  for layer in range(num_layers):
    for head in range(num_heads):
      ax = fig.add_subplot(num_layers, num_heads, layer * num_heads + head + 1)
      ax.imshow(maps[layer, prompt_index, head, :T, :T], cmap='viridis', vmin=0.0,
                vmax=max(float(maps[layer, prompt_index, :, :T, :T].max()), 1e-6),
                interpolation='nearest')
      if period:
        for v in (period - 0.5,):
          ax.axhline(v, color='white', lw=0.5, alpha=0.6)
          ax.axvline(v, color='white', lw=0.5, alpha=0.6)
      name = layer_names[layer] if layer_names else f'layer {layer}'
      ax.set_title(f'{name}, head {head}', fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def plot_head_scores(scores: Dict[str, np.ndarray], png_path: str, *,
                     layer_names: Optional[Sequence[str]] = None, title: str = '') -> None:
  """One heatmap per score (layers x heads), values written in the cells."""
  names = [n for n in scores if np.asarray(scores[n]).size]
  if not names:
    return
  first = np.asarray(scores[names[0]])
  fig = _figure(1.2 * first.shape[1] * len(names) + 2.5 * len(names), 0.55 * first.shape[0] + 2)
  for k, name in enumerate(names):
    values = np.asarray(scores[name])
    ax = fig.add_subplot(1, len(names), k + 1)
    image = ax.imshow(values, cmap='magma', vmin=0.0, vmax=1.0, aspect='auto')
    for (i, j), v in np.ndenumerate(values):
      ax.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=7,
              color='white' if v < 0.6 else 'black')
    ax.set_xticks(range(values.shape[1]))
    ax.set_xlabel('head')
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels(layer_names or [str(i) for i in range(values.shape[0])], fontsize=7)
    ax.set_title(name.replace('_', ' '))
    fig.colorbar(image, ax=ax, fraction=0.05)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def plot_probes(probes: Dict[str, Any], png_path: str, title: str = '') -> None:
  """Held-out R^2 against the number of in-context examples, one line per layer."""
  names = list(probes)
  if not names:
    return
  fig = _figure(5.2 * len(names), 3.8)
  for k, name in enumerate(names):
    entry = probes[name]
    ax = fig.add_subplot(1, len(names), k + 1)
    r2 = np.asarray(entry['r2'], np.float64)
    for layer in range(r2.shape[0]):
      ax.plot(entry['examples'], r2[layer], marker='o', ms=3,
              color=f'C{layer % 10}', label='read-in' if layer == 0 else f'block {layer}')
    ax.set_xlabel('number of in-context examples')
    ax.set_ylabel('held-out R^2')
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(f'probe: {name}')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


def plot_scores_through_training(result: Dict[str, Any], png_path: str) -> None:
  """Per seed: every head's induction and previous-token score against the step, and the
  in-context-learning score of the same checkpoints."""
  steps = np.asarray(result['steps'], np.float64)
  seeds = result['seeds'][:4]
  has_icl = result.get('icl_score') is not None
  cols = 3 if has_icl else 2
  fig = _figure(5.0 * cols, 3.4 * len(seeds))
  x = np.maximum(steps, 1.0)
  for s in range(len(seeds)):
    for c, name in enumerate(('induction', 'previous_token')):
      ax = fig.add_subplot(len(seeds), cols, s * cols + c + 1)
      values = np.asarray(result[name], np.float64)   # steps x seeds x layers x heads
      if values.ndim == 4:
        for layer in range(values.shape[2]):
          for head in range(values.shape[3]):
            ax.plot(x, values[:, s, layer, head], marker='o', ms=2.5, color=f'C{layer % 10}',
                    ls=['-', '--', ':', '-.'][head % 4],
                    label=f'L{result["attention_layers"][layer]} h{head}')
      ax.set_xscale('log')
      ax.set_xlabel('step')
      ax.set_ylabel(f'{name.replace("_", " ")} score')
      ax.set_ylim(-0.02, 1.02)
      ax.set_title(f'seed {seeds[s]}')
      ax.grid(alpha=0.3)
      if values.ndim == 4 and values.shape[2] * values.shape[3] <= 16:
        ax.legend(fontsize=6, ncol=2)
    if has_icl:
      ax = fig.add_subplot(len(seeds), cols, s * cols + 3)
      ax.plot(x, np.asarray(result['icl_score'], np.float64)[:, s], marker='o', color='black')
      ax.set_xscale('log')
      ax.set_xlabel('step')
      ax.set_ylabel(f'ICL score ({result["icl_metric"]}: late - early)')
      ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)


# ---- on a restored run -----------------------------------------------------------------------

def _token_ids(task, io) -> List[int]:
  excluded = {getattr(task, 'pad_id', None), getattr(task, 'separator_id', None)}
  return [t for t in range(io.vocab_size) if t not in excluded]


class Probe:
  """The fixed repeated-sequence prompts of a run, and its scores on any model of that run."""

  def __init__(self, setup, *, num_prompts: int, period: Optional[int], seed: int,
               batch_size: int = 16):
    import jax
    io = setup.task.io()
    self.vector = io.input_kind == 'vectors'
    max_len = setup.model.max_len
    self.batch_size = batch_size
    self.targets = None
    task = setup.task
    if getattr(task, 'attention_split', None) and hasattr(task, 'attention_targets'):
      # The task's own circuit (e.g. Reddy's induction head for classification) on prompts of
      # its attention split, instead of repeated sequences.
      batch = task.sample_split(jax.random.key(seed), num_prompts, task.attention_split)
      self.inputs = np.asarray(task.model_inputs(batch))
      self.targets = {name: (np.asarray(q), np.asarray(mask))
                      for name, (q, mask) in task.attention_targets(batch).items()}
      self.period = 0
      self.split = task.attention_split
    elif self.vector:
      pairs = (period // 2) if period else setup.task.n_points // 2
      pairs = max(1, min(pairs, max_len // 4))
      self.inputs, self.period = repeated_regression_prompts(
          setup.task, jax.random.key(seed), num_prompts, pairs, setup.config.train.num_steps)
    else:
      self.period = max(1, min(period or 64, max_len // 2))
      self.inputs = repeated_token_prompts(np.random.default_rng(seed), num_prompts,
                                           self.period, _token_ids(setup.task, io))
    self.induction_queries = second_copy_positions(self.period, self.vector)
    self.previous_queries = second_copy_positions(self.period)

  def label(self) -> str:
    if self.targets is not None:
      return f'{self.split} prompts'
    return f'repeated sequences (period {self.period})'

  def describe(self) -> Dict[str, Any]:
    if self.targets is not None:
      return {'kind': 'task targets', 'split': self.split,
              'num_prompts': int(self.inputs.shape[0]), 'length': int(self.inputs.shape[1]),
              'scores': sorted(self.targets)}
    return {'kind': 'vectors' if self.vector else 'tokens', 'period': int(self.period),
            'num_prompts': int(self.inputs.shape[0]), 'length': int(self.inputs.shape[1]),
            'induction_queries': ('x positions of the second copy' if self.vector else
                                  'every position of the second copy'),
            'previous_token_queries': 'every position of the second copy'}

  def scores(self, model) -> Dict[str, np.ndarray]:
    """{'induction', 'previous_token'}: (attention layers, heads), over all prompts."""
    total = {'induction': 0.0, 'previous_token': 0.0}
    n = self.inputs.shape[0]
    for start in range(0, n, self.batch_size):
      chunk = self.inputs[start:start + self.batch_size]
      maps = attention_maps(model, chunk)
      weight = chunk.shape[0] / n
      if self.targets is not None:
        for name, (queries, mask) in self.targets.items():
          total[name] = total[name] + weight * np.asarray(attention_target_scores(
              maps, queries, mask[start:start + self.batch_size]))
        continue
      total['induction'] = total['induction'] + weight * induction_scores(
          maps, self.period, self.induction_queries)
      total['previous_token'] = total['previous_token'] + weight * previous_token_scores(
          maps, self.period, self.previous_queries)
    return {k: np.asarray(v, np.float64) for k, v in total.items()}


def _layer_names(model) -> List[str]:
  return [f'L{i} {model.mixer_names[i]}' for i in attention_layers(model)]


def _probe_examples(n_points: int, n_dims: int, count: int = 10) -> List[int]:
  picks = set(np.unique(np.linspace(0, n_points - 1, count).round().astype(int)).tolist())
  picks |= {e for e in (n_dims - 1, n_dims, n_dims + 1) if 0 <= e < n_points}
  return sorted(picks)


def regression_probes(model, task, *, num_prompts: int, seed: int, step: int,
                      examples: Optional[Sequence[int]] = None,
                      batch_size: int = 128) -> Dict[str, Any]:
  """Ridge probes from every layer's stream at the x position of example i (having seen
  examples 0..i-1) to w, to the least-squares solution on examples 0..i-1, and to the label
  y_i (a positive control: the model's own target). Half the
  prompts train the probes, half score them (held-out R^2, per layer x example count)."""
  import jax
  from analysis import probes as probes_lib
  batch, params = task.sample_with_functions(jax.random.key(seed), num_prompts, step)
  batch = {k: np.asarray(v) for k, v in batch.items()}
  params = jax.tree.map(np.asarray, params)
  n_points = batch['xs_BxNxD'].shape[1]
  examples = list(examples) if examples is not None else _probe_examples(
      n_points, batch['xs_BxNxD'].shape[2])
  positions = np.asarray(examples) * 2      # x_i sits at position 2i (Garg's layout)
  inputs = np.asarray(task.model_inputs(batch))
  chunks = [hidden_states(model, inputs[s:s + batch_size])[:, :, positions]
            for s in range(0, num_prompts, batch_size)]
  hidden_LxNxPxD = np.concatenate(chunks, axis=1)
  targets = probes_lib.regression_probe_targets(batch, params)
  out = {}
  for name, target in targets.items():
    result = probes_lib.layer_position_probes(
        hidden_LxNxPxD, target if target.ndim == 2 else target[:, examples],
        positions=range(len(examples)))
    out[name] = {'examples': examples, 'r2': result['r2'].tolist(),
                 'nmse': result['nmse'].tolist()}
  return out


def diagnose(run: Dict[str, Any], out_dir: str, *, num_prompts: int = 64,
             period: Optional[int] = None, seed: int = 0, probe_prompts: int = 512,
             probes: bool = True, log=print) -> Dict[str, Any]:
  """Attention maps, head scores and (regression) probes of every seed of a restored run at
  its checkpoint; writes out_dir/diagnostics.json and diagnostics_*.png."""
  import jax
  from runlib.restored import seed_model
  setup = run['setup']
  os.makedirs(out_dir, exist_ok=True)
  probe = Probe(setup, num_prompts=num_prompts, period=period, seed=seed)
  vector = probe.vector
  num_seeds = setup.num_seeds
  result = {'task': setup.task.name, 'checkpoint_step': run['step'], 'seeds': setup.seeds,
            'mixers': list(setup.model.mixer_names),
            'attention_layers': attention_layers(setup.model),
            'layer_names': _layer_names(setup.model),
            'repeated_prompts': probe.describe(),
            # per seed: 'induction' / 'previous_token' [attention layer][head]; 'probes':
            # name -> {'examples', 'r2' [layer (0: read-in)][example count], 'nmse'}
            'per_seed': []}
  if not result['attention_layers']:
    log('no softmax-attention layer in this model: no attention maps or head scores')
  for i in range(num_seeds):
    suffix = '' if num_seeds == 1 else f'_seed{i}'
    model = seed_model(run, i)
    task = setup.task.bind({k: v[i] for k, v in setup.task_values().items()})
    entry: Dict[str, Any] = {'seed': setup.seeds[i]}
    names = _layer_names(model)
    if result['attention_layers']:
      scores = probe.scores(model)
      entry.update({k: v.tolist() for k, v in scores.items()})
      best = np.unravel_index(np.argmax(scores['induction']), scores['induction'].shape)
      entry['max_induction'] = {'layer': result['attention_layers'][best[0]],
                                'head': int(best[1]),
                                'score': float(scores['induction'][best])}
      plot_head_scores(scores, os.path.join(out_dir, f'diagnostics_head_scores{suffix}.png'),
                       layer_names=names,
                       title=f'{setup.task.name} step {run["step"]} seed {setup.seeds[i]}: '
                             f'{probe.label()}')
      maps = attention_maps(model, probe.inputs[:1])
      plot_attention_maps(maps, os.path.join(out_dir, f'diagnostics_attention_repeated{suffix}.png'),
                          layer_names=names, period=probe.period,
                          title=f'{probe.label()}, step {run["step"]}')
      batch = task.sample(jax.random.key(seed), 1, setup.config.train.num_steps)
      maps = attention_maps(model, np.asarray(task.model_inputs(batch)))
      plot_attention_maps(maps, os.path.join(out_dir, f'diagnostics_attention_task{suffix}.png'),
                          layer_names=names, title=f'a {setup.task.name} prompt, step {run["step"]}')
    if probes and vector and hasattr(task, 'sample_with_functions'):
      entry['probes'] = regression_probes(model, task, num_prompts=probe_prompts, seed=seed,
                                          step=setup.config.train.num_steps)
      plot_probes(entry['probes'], os.path.join(out_dir, f'diagnostics_probes{suffix}.png'),
                  title=f'{setup.task.name} step {run["step"]} seed {setup.seeds[i]}')
    result['per_seed'].append(entry)
    if 'max_induction' in entry:
      m = entry['max_induction']
      log(f'seed {setup.seeds[i]}: strongest induction head L{m["layer"]} h{m["head"]} '
          f'score {m["score"]:.3f}; max previous-token score '
          f'{np.max(entry["previous_token"]):.3f}')
    for name, p in entry.get('probes', {}).items():
      log(f'seed {setup.seeds[i]}: probe {name}: best held-out R^2 at {p["examples"][-1]} '
          f'examples {np.nanmax(np.asarray(p["r2"])[:, -1]):.3f} '
          f'(layer {int(np.nanargmax(np.asarray(p["r2"])[:, -1]))})')
  path = os.path.join(out_dir, 'diagnostics.json')
  _write_json(path, result)
  log(f'wrote {path} and diagnostics_*.png')
  return result


def diagnose_all_checkpoints(run: Dict[str, Any], out_dir: str, *, num_prompts: int = 64,
                             period: Optional[int] = None, seed: int = 0,
                             eval_prompts: Optional[int] = None, log=print) -> Dict[str, Any]:
  """Head scores of every kept checkpoint on the same repeated prompts, beside the ICL score
  of the run's scheduled evaluation (the same prompts at every step); writes
  out_dir/diagnostics_checkpoints.{json,png}."""
  import jax
  from runlib.positions import icl_score, make_eval_fn
  from runlib.restored import load_checkpoint_params, seed_model
  setup, config = run['setup'], run['config']
  os.makedirs(out_dir, exist_ok=True)
  probe = Probe(setup, num_prompts=num_prompts, period=period, seed=seed)
  eval_prompts = eval_prompts or config.eval.train_prompts
  eval_fn = make_eval_fn(setup, run['graphdef'], eval_prompts, config.eval.seed)
  metric = setup.task.icl_metric
  steps, scores, icl, late = [], {'induction': [], 'previous_token': []}, [], {}
  for step in run['steps']:
    params = run['params'] if step == run['step'] else load_checkpoint_params(run, step, log)
    if params is None:
      continue
    per_seed = [probe.scores(seed_model(dict(run, params=params), i))
                for i in range(setup.num_seeds)]
    for name in scores:
      scores[name].append([s[name].tolist() for s in per_seed])
    curves = {k: np.asarray(v) for k, v in jax.device_get(eval_fn(params, run['rest'])).items()}
    if metric in curves:
      icl.append(icl_score(curves[metric]).tolist())
    for name, curve in curves.items():
      if curve.ndim == 2:
        quarter = max(curve.shape[1] // 4, 1)
        late.setdefault(name, []).append(np.nanmean(curve[:, -quarter:], axis=1).tolist())
    steps.append(int(step))
    best = ', '.join(f'{np.max(s["induction"]):.3f}' if s['induction'].size else 'n/a'
                     for s in per_seed)
    icl_text = f'; ICL score {", ".join(f"{v:.3f}" for v in icl[-1])}' if metric in curves else ''
    log(f'step {step}: max induction score per seed {best}{icl_text}')
  result = {'task': setup.task.name, 'steps': steps, 'seeds': setup.seeds,
            'mixers': list(setup.model.mixer_names),
            'attention_layers': attention_layers(setup.model),
            'repeated_prompts': probe.describe(),
            # [step][seed][attention layer][head]
            'induction': scores['induction'], 'previous_token': scores['previous_token'],
            'icl_metric': metric, 'icl_score': icl if len(icl) == len(steps) else None,
            'eval_prompts': eval_prompts,
            'late_metrics': late}     # name -> [step][seed]: mean of the last quarter
  path = os.path.join(out_dir, 'diagnostics_checkpoints.json')
  _write_json(path, result)
  if steps:
    plot_scores_through_training(result, os.path.join(out_dir, 'diagnostics_checkpoints.png'))
  log(f'all checkpoints: {len(steps)} steps; wrote {path} and diagnostics_checkpoints.png')
  return result


def _write_json(path: str, obj) -> None:
  def clean(value):
    if isinstance(value, float) and not np.isfinite(value):
      return None
    if isinstance(value, dict):
      return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return [clean(v) for v in value]
    if isinstance(value, np.generic):
      return clean(value.item())
    return value
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(clean(obj), f, indent=1)
  os.replace(tmp, path)


# ---- command line ---------------------------------------------------------------------------

def main(argv):
  from absl import flags
  from cli import fail, quiet_logs
  quiet_logs()
  FLAGS = flags.FLAGS
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  workdir = FLAGS.workdir
  if not workdir:
    fail('--workdir is required: a directory written by train.py')
  if not os.path.isdir(workdir):
    fail(f'--workdir={workdir} does not exist or is not a directory')
  if FLAGS.checkpoint is not None and FLAGS.checkpoint < 0:
    fail(f'--checkpoint={FLAGS.checkpoint} is invalid: must be a step >= 0')
  if FLAGS['all-checkpoints'].value and FLAGS.checkpoint is not None:
    fail('--all-checkpoints and --checkpoint exclude each other')
  for name in ('num_prompts', 'probe_prompts'):
    if getattr(FLAGS, name) < 4:
      fail(f'--{name}={getattr(FLAGS, name)} is invalid: must be an integer >= 4')
  if FLAGS.period is not None and FLAGS.period < 2:
    fail(f'--period={FLAGS.period} is invalid: must be an integer >= 2')
  from core import ConfigError
  from training.loop import restore_run   # main() is an entry point: it may restore
  from training.workdir import WorkdirError
  try:
    run = restore_run(workdir, FLAGS.checkpoint)
  except (ConfigError, WorkdirError) as e:
    fail(str(e))
  out_dir = os.path.join(workdir, 'eval')
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    fail(f'cannot write {out_dir}: {e.strerror}')
  common = dict(num_prompts=FLAGS.num_prompts, period=FLAGS.period, seed=FLAGS.seed)
  if FLAGS['all-checkpoints'].value:
    diagnose_all_checkpoints(run, out_dir, **common)
  else:
    diagnose(run, out_dir, probe_prompts=FLAGS.probe_prompts, probes=FLAGS.probes, **common)


def _define_flags():
  from absl import flags
  flags.DEFINE_string('workdir', None, 'Directory of a training run.')
  flags.DEFINE_integer('checkpoint', None, 'Checkpoint step (default: latest intact).')
  flags.DEFINE_bool('all-checkpoints', False, 'Head scores at every kept checkpoint, beside '
                    'the ICL score.')
  flags.DEFINE_integer('num_prompts', 64, 'Repeated-sequence prompts for the head scores.')
  flags.DEFINE_integer('period', None, 'Length of the repeated sequence in positions '
                       '(default: 64 tokens, capped at max_len / 2; regression: half the '
                       'prompt).')
  flags.DEFINE_integer('probe_prompts', 512, 'Prompts for the linear probes (half train, '
                       'half held out; regression runs).')
  flags.DEFINE_bool('probes', True, 'Fit linear probes (regression runs).')
  flags.DEFINE_integer('seed', 0, 'Seed of the diagnostic prompts.')


if __name__ == '__main__':
  from absl import app
  from cli import parse_flags
  _define_flags()
  app.run(main, flags_parser=parse_flags)
