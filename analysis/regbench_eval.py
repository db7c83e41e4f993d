"""REGBENCH evaluation (Akyurek et al. 2024): a trained model against in-context n-gram
baselines and the true automaton, on held-out languages.

Suites:
  test   the frozen test prompts (data/regbench_tfds.py; one prompt per test automaton,
         languages disjoint from training), built on first use under task.test_data_dir.
         If the model can generate, each prompt is also cut after its first
         `eval.num_prefix_strings` strings and continued by sampling (eval.temperature,
         eval.top_k) for `eval.num_generated_strings` strings' worth of tokens; the generated
         strings are checked against the automaton.
  train  fresh prompts of training automata (seeded), the in-distribution reference.

For the model and each baseline (unigram, bigram, trigram with backoff: baselines/ngram.py;
automaton: the true distribution, the floor) the result holds accuracy, total variation and
perplexity over all targets and per string index (analysis/language_metrics.py).
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from analysis import language_metrics
from analysis.base import GENERATION_BLOCK, ModelFns, draw_in_blocks
from baselines import ngram
from core import ConfigError

SUITES: Tuple[str, ...] = ('test', 'train')
SUITE_DESCRIPTIONS = {
    'test': 'frozen prompts of held-out automata',
    'train': 'fresh prompts of training automata',
}
# Baselines are O(B T^2) in memory; they run on sub-batches of at most this many prompts.
BASELINE_ROWS = 16
EVAL_DEFAULTS = dict(num_prefix_strings=5, num_generated_strings=5, temperature=1.0, top_k=0,
                     ngram_delta=0.0)


def _eval_option(config, key: str):
  section = config.get('eval', None) if hasattr(config, 'get') else getattr(config, 'eval', None)
  if section is None:
    return EVAL_DEFAULTS[key]
  value = section.get(key, None) if hasattr(section, 'get') else getattr(section, key, None)
  return EVAL_DEFAULTS[key] if value is None else value


# ---- prompts ---------------------------------------------------------------------------

def _test_arrays(task, num_prompts: int) -> Dict[str, np.ndarray]:
  from data import regbench_tfds  # TFDS import is slow; only when the suite needs it
  arrays = regbench_tfds.load_test_set(task.cfg, task.test_data_dir())
  count = min(num_prompts, arrays['tokens_BxT'].shape[0])
  return {k: v[:count] for k, v in arrays.items()}


def _train_arrays(task, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  sample = jax.jit(task.sample, static_argnums=1)
  arrays = draw_in_blocks(lambda key: sample(key, GENERATION_BLOCK), num_prompts, seed)
  pool = task.pool('train')
  arrays['tables_BxSxV'] = pool.tables_PxSxV[arrays['dfa_id_B']]
  arrays['num_states_B'] = pool.num_states_P[arrays['dfa_id_B']]
  return arrays


def _chunks(num_rows: int, batch_size: int):
  """(rows_R, row_weight_R): fixed-size index chunks, the last padded with its first row."""
  size = min(batch_size, num_rows)
  for start in range(0, num_rows, size):
    rows = np.arange(start, start + size)
    weight = (rows < num_rows).astype(np.float64)
    yield np.where(rows < num_rows, rows, start), weight


# ---- next-token metrics ----------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _metrics_fn(param_items: Tuple[Tuple[str, Any], ...], delta: float):
  """Jitted (batch, logits) -> {name: per-target metrics} for the model and every baseline.

  Baselines are O(T^2) in memory per prompt, so they run over rows in chunks (lax.map).
  Cached by the language parameters so repeated suites compile once.
  """
  params = dict(param_items)
  keys = ('tokens_BxT', 'loss_mask_BxT', 'tables_BxSxV', 'state_BxT', 'position_in_string_BxT')

  def one_row(row):
    arrays = {k: v[None] for k, v in row.items()}
    true = language_metrics.automaton_next_token_probs(
        arrays['tables_BxSxV'], arrays['state_BxT'], arrays['position_in_string_BxT'], **params)
    probs = ngram.all_baseline_probs(arrays, delta=delta, **params)
    return {name: jax.tree.map(lambda a: a[0], language_metrics.metrics_from_probs(
        p, true, arrays['tokens_BxT'], arrays['loss_mask_BxT'])) for name, p in probs.items()}

  @jax.jit
  def fn(batch, logits):
    true = language_metrics.automaton_next_token_probs(
        batch['tables_BxSxV'], batch['state_BxT'], batch['position_in_string_BxT'], **params)
    out = {'model': language_metrics.metrics_from_logits(logits, true, batch['tokens_BxT'],
                                                         batch['loss_mask_BxT'])}
    out.update(jax.lax.map(one_row, {k: batch[k] for k in keys}, batch_size=BASELINE_ROWS))
    return out

  return fn


def _score(model: ModelFns, task, arrays: Dict[str, np.ndarray], batch_size: int,
           delta: float, desc: str) -> Dict[str, Dict[str, Any]]:
  params = task.language_params()
  metrics_fn = _metrics_fn(tuple(sorted(params.items())), delta)
  names = ('model',) + ngram.BASELINES
  num_strings = int(task.cfg['strings_max'])
  accumulators = {name: language_metrics.Accumulator(num_strings) for name in names}
  num_rows = arrays['tokens_BxT'].shape[0]
  chunks = list(_chunks(num_rows, batch_size))
  for rows, weight in tqdm(chunks, desc=desc, disable=len(chunks) < 4):
    batch = {k: jnp.asarray(v[rows]) for k, v in arrays.items()}
    logits = model.predict(batch)
    if logits.shape[-1] != task.num_tokens:
      raise ValueError(f'model outputs {logits.shape[-1]} logits per position; regbench needs '
                       f'{task.num_tokens} (one per token id)')
    metrics = jax.device_get(metrics_fn(batch, logits))
    string_index = arrays['string_index_BxT'][rows]
    for name in names:
      accumulators[name].add(metrics[name], string_index, weight)
  return {name: acc.result() for name, acc in accumulators.items()}


# ---- generation ------------------------------------------------------------------------

def _prompt_lengths(tokens_BxT: np.ndarray, separator_id: int, num_strings: int) -> np.ndarray:
  """Length of the prefix holding the first `num_strings` strings with their separators
  (fewer if the prompt has fewer complete strings; 0 if it has none)."""
  lengths = np.zeros(tokens_BxT.shape[0], np.int32)
  for b, row in enumerate(tokens_BxT):
    seps = np.flatnonzero(row == separator_id)
    if len(seps):
      lengths[b] = seps[min(num_strings, len(seps)) - 1] + 1
  return lengths


def check_generated(tokens: np.ndarray, table: np.ndarray, vocab_size: int,
                    max_strings: int) -> Dict[str, Any]:
  """Splits generated tokens into strings at separators (stopping after `max_strings`
  complete ones) and checks them against the automaton (every state accepts, so a string is
  in the language iff it can be read from the start state; an unfinished last string is
  checked as a prefix, which is the same test).

  Returns counts: complete, complete_accepted, partial, partial_accepted, tokens,
  legal_tokens (a symbol is legal iff its string so far is still readable, a separator is
  always legal, <pad> never), lengths (of complete strings).
  """
  separator = vocab_size + 1
  out = dict(complete=0, complete_accepted=0, partial=0, partial_accepted=0, tokens=0,
             legal_tokens=0, lengths=[])
  state, length = 0, 0
  for token in np.asarray(tokens).tolist():
    if out['complete'] >= max_strings:
      break
    out['tokens'] += 1
    if token == separator:
      out['legal_tokens'] += 1
      out['complete'] += 1
      out['complete_accepted'] += int(state >= 0)
      out['lengths'].append(length)
      state, length = 0, 0
      continue
    length += 1
    if 1 <= token <= vocab_size and state >= 0:
      state = int(table[state, token - 1])
    else:
      state = -1
    out['legal_tokens'] += int(state >= 0)
  if length > 0 and out['complete'] < max_strings:
    out['partial'] += 1
    out['partial_accepted'] += int(state >= 0)
  return out


def _generation(model: ModelFns, task, config, arrays: Dict[str, np.ndarray], batch_size: int,
                seed: int, desc: str) -> Dict[str, Any]:
  num_prefix = int(_eval_option(config, 'num_prefix_strings'))
  num_strings = int(_eval_option(config, 'num_generated_strings'))
  temperature = float(_eval_option(config, 'temperature'))
  top_k = int(_eval_option(config, 'top_k'))
  settings = dict(num_prefix_strings=num_prefix, num_generated_strings=num_strings,
                  temperature=temperature, top_k=top_k)
  if num_strings <= 0 or num_prefix <= 0:
    return dict(settings, skipped='num_generated_strings or num_prefix_strings is 0')
  tokens = arrays['tokens_BxT']
  prompt_len_B = _prompt_lengths(tokens, task.separator_id, num_prefix)
  width = int(prompt_len_B.max())
  num_new = min(num_strings * (int(task.cfg['max_string_len']) + 1), task.seq_len - width)
  if num_new < 1 or width < 1:
    return dict(settings, skipped=f'no room to generate after a {width}-token prompt')
  totals = dict(complete=0, complete_accepted=0, partial=0, partial_accepted=0, tokens=0,
                legal_tokens=0)
  lengths: List[int] = []
  examples = []
  base_key = jax.random.fold_in(jax.random.key(seed), 7)
  chunks = list(_chunks(tokens.shape[0], batch_size))
  for i, (rows, weight) in enumerate(tqdm(chunks, desc=desc, disable=len(chunks) < 4)):
    out = np.asarray(model.generate(jnp.asarray(tokens[rows, :width]),
                                    jnp.asarray(prompt_len_B[rows]), num_new,
                                    jax.random.fold_in(base_key, i), temperature, top_k))
    for r, row in enumerate(rows):
      if weight[r] == 0 or prompt_len_B[row] == 0:
        continue
      start = int(prompt_len_B[row])
      generated = out[r, start:start + num_new]
      table = arrays['tables_BxSxV'][row]
      counts = check_generated(generated, table, task.vocab_size, num_strings)
      for k in totals:
        totals[k] += counts[k]
      lengths.extend(counts['lengths'])
      if len(examples) < 5:
        examples.append(dict(dfa_id=int(arrays['dfa_id_B'][row]),
                             generated=[int(t) for t in generated]))
  rate = lambda a, b: float(totals[a] / totals[b]) if totals[b] else None
  return dict(
      settings, num_new_tokens=num_new, prompt_width=width,
      num_complete_strings=totals['complete'],
      string_accept_rate=rate('complete_accepted', 'complete'),
      num_partial_strings=totals['partial'],
      partial_accept_rate=rate('partial_accepted', 'partial'),
      token_legal_rate=rate('legal_tokens', 'tokens'),
      mean_string_length=float(np.mean(lengths)) if lengths else None,
      examples=examples)


# ---- interface -------------------------------------------------------------------------

def run_suite(suite: str, model: ModelFns, task, config, *, num_prompts: int, seed: int,
              batch_size: int) -> Dict[str, Any]:
  """Metrics of `model` and the baselines on `suite` (JSON-serialisable). The test suite has
  num_test_dfas prompts; asking for more uses them all (`num_prompts` in the result)."""
  if suite not in SUITES:
    raise ConfigError(f'suite={suite!r} is invalid: allowed {", ".join(SUITES)}')
  if num_prompts < 1 or batch_size < 1:
    raise ConfigError(f'num_prompts={num_prompts}, batch_size={batch_size} are invalid: '
                      'both must be >= 1')
  if suite == 'test':
    arrays = _test_arrays(task, num_prompts)
  else:
    arrays = _train_arrays(task, num_prompts, seed)
  delta = float(_eval_option(config, 'ngram_delta'))
  result: Dict[str, Any] = dict(
      suite=suite, description=SUITE_DESCRIPTIONS[suite],
      num_prompts=int(arrays['tokens_BxT'].shape[0]), requested_prompts=int(num_prompts),
      seed=int(seed), seq_len=task.seq_len, ngram_delta=delta,
      predict_separator=task.predict_separator,
      mean_automaton_states=float(np.mean(arrays['num_states_B'])))
  result['metrics'] = _score(model, task, arrays, batch_size, delta, f'regbench {suite}')
  if suite == 'test' and model.generate is not None:
    result['generation'] = _generation(model, task, config, arrays, batch_size, seed,
                                       'regbench generation')
  return result


def summary(result: Dict[str, Any]) -> str:
  lines = [f'{result["suite"]}: {result["num_prompts"]} prompts']
  for name, m in result['metrics'].items():
    lines.append(f'  {name:10s} accuracy {m["accuracy"]:.3f}  tv {m["tv"]:.3f}  '
                 f'perplexity {m["perplexity"]:.3f}')
  gen = result.get('generation')
  if gen and 'skipped' not in gen:
    fmt = lambda v: 'n/a' if v is None else f'{v:.3f}'
    lines.append(f'  generation: {gen["num_complete_strings"]} strings, accepted '
                 f'{fmt(gen["string_accept_rate"])}, legal tokens '
                 f'{fmt(gen["token_legal_rate"])}')
  ref = result.get('reference_generation')
  if ref and 'skipped' not in ref:
    fmt = lambda v: 'n/a' if v is None else f'{v:.3f}'
    lines.append(f'  reference generation: {ref["num_complete_strings"]} strings, accepted '
                 f'{fmt(ref["string_accept_rate"])}, legal tokens '
                 f'{fmt(ref["token_legal_rate"])}')
  return '\n'.join(lines)


def plot(result: Dict[str, Any], png_path: str) -> None:
  """Accuracy, TV and NLL against the string index of the target, model vs baselines."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  panels = (('accuracy', 'accuracy (greedy token legal)'), ('tv', 'total variation'),
            ('nll', 'NLL (nats)'))
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
  styles = {'model': dict(color='black', linewidth=2.2), 'automaton': dict(linestyle='--'),
            'reference': dict(color='gray', linewidth=2.2, linestyle=':')}  # before fine-tuning
  for ax, (key, label) in zip(axes, panels):
    for name, metrics in result['metrics'].items():
      values = metrics['by_string'][key]
      xs = [i for i, v in enumerate(values) if v is not None]
      ys = [values[i] for i in xs]
      overall = metrics[key]
      ax.plot(xs, ys, marker='o', markersize=3,
              label=f'{name} ({overall:.3f})' if overall is not None else name,
              **styles.get(name, {}))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel('string index in prompt')
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  title = f'REGBENCH {result["suite"]}: {result["num_prompts"]} prompts'
  gen = result.get('generation')
  if gen and 'skipped' not in gen and gen['string_accept_rate'] is not None:
    title += (f' | generated strings accepted {gen["string_accept_rate"]:.3f}'
              f' (T={gen["temperature"]}, top_k={gen["top_k"]})')
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  plt.close(fig)


def seed_curves(result: Dict[str, Any]) -> Dict[str, Tuple[list, list]]:
  """The model's accuracy and TV by string index: what eval.py averages across seeds."""
  by_string = result['metrics']['model']['by_string']
  return {f'model {key}': (list(range(len(by_string[key]))), by_string[key])
          for key in ('accuracy', 'tv')}
