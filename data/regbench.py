"""REGBENCH: in-context language learning on random regular languages (Akyurek et al. 2024,
"In-Context Language Learning: Architectures and Algorithms").

A prompt holds strings of one probabilistic regular language, each followed by a separator:
    s_1 | s_2 | ... | s_N |  <pad> ...
The language is a random minimal automaton (data/dfa.py) drawn from a fixed pool; a string is
a random walk from the start state that takes a uniformly random outgoing edge at every step.
Following the authors' generator (berlino/seq_icl `RegBench`):
  * the number of strings N ~ U{strings_min .. strings_max} (10..19);
  * each string's length L ~ U{min_string_len .. max_string_len} (1..49), independent of the
    automaton (every state has an outgoing edge, so a walk never gets stuck);
  * the prompt is padded with <pad> to `seq_len` tokens; the authors cut it at 512 tokens,
    which drops the end of ~8.5% of prompts (the longest has strings_max * (max_string_len + 1)
    = 950 tokens), so here seq_len = 0 (the default) means exactly that longest length and no
    prompt is cut; a smaller seq_len cuts as the authors do;
  * the separator is not a prediction target (`predict_separator=False`, the authors replace
    it by the ignore label): lengths carry no information about the language.
One deviation: every string, the last included, is followed by a separator (the authors drop
the last one). With `predict_separator=False` this changes no target; with True it makes the
end of every string an observed event, so the true next-token distribution below is exact.

Token ids: 0 = <pad>, 1..vocab_size = symbols (symbol a is token a + 1), vocab_size + 1 = the
separator. The model reads and predicts all `vocab_size + 2` ids.

The train pool (`num_train_dfas` automata) is built once on the host and kept on the device;
`sample` picks automata uniformly from it and generates the prompts on the device. The test
pool (`num_test_dfas` automata, disjoint languages) is the start of the same stream, so it does
not depend on `num_train_dfas`; its frozen prompts live in a TFDS dataset (data/regbench_tfds.py).

Batch keys (B prompts, T = seq_len positions):
  tokens_BxT            int32   the prompt
  loss_mask_BxT         float32 1 where tokens_BxT[t] is a prediction target (t >= 1, a symbol;
                                also a separator if predict_separator), 0 elsewhere
  dfa_id_B              int32   index of the prompt's automaton in its pool
  state_BxT             int32   automaton state after reading token t (start state 0 after a
                                separator, -1 on padding)
  position_in_string_BxT int32  symbols of the current string read after token t (0 after a
                                separator, -1 on padding)
  string_index_BxT      int32   which string (0-based) token t belongs to (a separator belongs
                                to the string it ends), -1 on padding
The true next-token distribution after token t (analysis/language_metrics.py) is a function of
(automaton, state_BxT[t], position_in_string_BxT[t]).
"""
from __future__ import annotations

import os
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from data import dfa as dfa_lib
from core import Batch, ModelIO, require
from data.base import Task, merge_task_config, register_task

PAD_ID = 0
SYMBOL_OFFSET = 1

DEFAULTS = dict(
    vocab_size=20,          # symbols (the model's vocabulary adds <pad> and the separator)
    num_states_min=4,       # states drawn before minimisation (inclusive range)
    num_states_max=12,
    alphabet_min=4,         # alphabet size, a random subset of the symbols
    alphabet_max=18,
    edges_min=1,            # outgoing edges per state (distinct symbols, distinct targets)
    edges_max=3,
    num_train_dfas=2500,    # the paper trains with 2500 .. 40000 automata
    num_test_dfas=500,
    strings_min=10,         # strings per prompt
    strings_max=19,
    min_string_len=1,       # symbols per string
    max_string_len=49,
    seq_len=0,              # prompts are cut / padded to this many tokens; 0: the longest
                            # prompt the settings allow (`full_prompt_len`), so none is cut
    predict_separator=False,  # the authors do not train on separators
    pool_seed=0,            # the automata pools and the frozen test prompts
    test_data_dir='',       # TFDS dir of the frozen test set ('': $TFDS_DATA_DIR, else
                            # ~/tensorflow_datasets)
)

_INT_KEYS = ('vocab_size', 'num_states_min', 'num_states_max', 'alphabet_min', 'alphabet_max',
             'edges_min', 'edges_max', 'num_train_dfas', 'num_test_dfas', 'strings_min',
             'strings_max', 'min_string_len', 'max_string_len', 'seq_len', 'pool_seed')


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def validate_config(cfg: Dict[str, Any]) -> None:
  """Raises ConfigError (one line, naming the key) on a bad REGBENCH config (merged dict)."""
  for key in _INT_KEYS:
    require(_is_int(cfg[key]), f'task.{key}', cfg[key], 'an integer')
  require(cfg['vocab_size'] >= 1, 'task.vocab_size', cfg['vocab_size'], 'an integer >= 1')
  require(cfg['vocab_size'] + 2 < 2**15, 'task.vocab_size', cfg['vocab_size'], '< 32766')
  for lo, hi, low_bound in (('num_states_min', 'num_states_max', 1),
                            ('alphabet_min', 'alphabet_max', 1),
                            ('edges_min', 'edges_max', 1),
                            ('strings_min', 'strings_max', 1),
                            ('min_string_len', 'max_string_len', 0)):
    require(cfg[lo] >= low_bound, f'task.{lo}', cfg[lo], f'an integer >= {low_bound}')
    require(cfg[hi] >= cfg[lo], f'task.{hi}', cfg[hi], f'an integer >= {lo}={cfg[lo]}')
  require(cfg['alphabet_max'] <= cfg['vocab_size'], 'task.alphabet_max', cfg['alphabet_max'],
          f'at most vocab_size={cfg["vocab_size"]}')
  # Each state needs edges_max distinct symbols and edges_max distinct targets other than itself.
  require(cfg['alphabet_min'] >= cfg['edges_max'], 'task.alphabet_min', cfg['alphabet_min'],
          f'at least edges_max={cfg["edges_max"]} (edge symbols are distinct)')
  require(cfg['num_states_min'] >= cfg['edges_max'] + 1, 'task.num_states_min',
          cfg['num_states_min'],
          f'at least edges_max + 1={cfg["edges_max"] + 1} (distinct targets, no self loops)')
  require(cfg['num_states_max'] <= 4096, 'task.num_states_max', cfg['num_states_max'],
          'at most 4096')
  require(cfg['num_train_dfas'] >= 1, 'task.num_train_dfas', cfg['num_train_dfas'],
          'an integer >= 1')
  require(cfg['num_test_dfas'] >= 1, 'task.num_test_dfas', cfg['num_test_dfas'],
          'an integer >= 1')
  # Prompts longer than seq_len are cut (the authors cut at 512, which loses the end of ~8.5%
  # of prompts at the default settings, whose longest prompt is 19 * 50 = 950 tokens);
  # seq_len only has to leave room for a first symbol and one target. 0: full prompts.
  require(cfg['seq_len'] == 0 or cfg['seq_len'] >= 2, 'task.seq_len', cfg['seq_len'],
          'an integer >= 2, or 0 for the longest prompt the string settings allow')
  require(cfg['pool_seed'] >= 0, 'task.pool_seed', cfg['pool_seed'], 'an integer >= 0')
  require(isinstance(cfg['predict_separator'], (bool, np.bool_)), 'task.predict_separator',
          cfg['predict_separator'], 'True or False')
  require(isinstance(cfg['test_data_dir'], str), 'task.test_data_dir', cfg['test_data_dir'],
          'a path string ("" for the TFDS default)')


def full_prompt_len(cfg: Dict[str, Any]) -> int:
  """Tokens of the longest prompt the settings can produce: strings_max strings of
  max_string_len symbols, each followed by a separator."""
  return int(cfg['strings_max']) * (int(cfg['max_string_len']) + 1)


def merge_config(config: Any) -> Dict[str, Any]:
  """Defaults overlaid with `config` (ConfigDict or dict); unknown keys raise ConfigError.
  seq_len = 0 is resolved to `full_prompt_len` (so the frozen test set of seq_len=0 is that of
  the explicit length)."""
  cfg = merge_task_config('regbench', DEFAULTS, config)
  validate_config(cfg)
  if cfg['seq_len'] == 0:
    cfg['seq_len'] = full_prompt_len(cfg)
  return cfg


def dfa_spec(cfg: Dict[str, Any]) -> dfa_lib.DFASpec:
  return dfa_lib.DFASpec(**{k: int(cfg[k]) for k in (
      'vocab_size', 'num_states_min', 'num_states_max', 'alphabet_min', 'alphabet_max',
      'edges_min', 'edges_max')})


def device_pool(pool: dfa_lib.DFAPool) -> Dict[str, jax.Array]:
  """The pool arrays the prompt sampler reads, in the narrowest integer type that fits (a
  40000-automaton pool is ~10 MB as int8 instead of ~40 MB as int32)."""
  biggest = max(int(pool.tables_PxSxV.shape[1]), int(pool.tables_PxSxV.shape[2]))
  dtype = np.int8 if biggest < 127 else np.int16
  return dict(tables_PxSxV=jnp.asarray(pool.tables_PxSxV.astype(dtype)),
              degrees_PxS=jnp.asarray(pool.degrees_PxS.astype(dtype)),
              edges_PxSxE=jnp.asarray(pool.edges_PxSxE.astype(dtype)))


def _uniform_int(u, low: int, high: int) -> jax.Array:
  """Integers uniform on [low, high] (inclusive) from uniforms u in [0, 1)."""
  return jnp.minimum(low + (u * (high - low + 1)).astype(jnp.int32), high)


@register_task('regbench')
class RegBenchTask(Task):
  """Random regular languages in context; see the module docstring for the batch layout."""
  eval_family = 'regbench'
  default_objective = 'next_token'
  objectives = ('next_token', 'preference', 'sft')
  icl_metric = 'loss'

  @classmethod
  def default_config(cls) -> dict:
    return dict(DEFAULTS)

  def __init__(self, config: Any):
    super().__init__(config)
    cfg = merge_config(config)
    self.cfg = cfg
    self.vocab_size = int(cfg['vocab_size'])
    self.num_tokens = self.vocab_size + 2
    self.pad_id = PAD_ID
    self.separator_id = self.vocab_size + 1
    self.seq_len = int(cfg['seq_len'])
    self.predict_separator = bool(cfg['predict_separator'])
    self.spec = dfa_spec(cfg)
    try:
      train, test = dfa_lib.sample_pools(self.spec, int(cfg['pool_seed']),
                                         int(cfg['num_train_dfas']), int(cfg['num_test_dfas']))
    except ValueError as e:
      require(False, 'task.num_train_dfas', cfg['num_train_dfas'],
              f'these ranges do not give enough distinct languages ({e})')
    self._pools = {'train': train, 'test': test}
    self._device_pools = {'train': device_pool(train)}

  # ---- interface -----------------------------------------------------------------------

  def io(self) -> ModelIO:
    return ModelIO(input_kind='tokens', vocab_size=self.num_tokens, seq_len=self.seq_len,
                   output_dim=self.num_tokens)

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    """B prompts of automata drawn uniformly from the train pool (`step` is unused)."""
    del step
    pool = self._device_pools['train']
    key_pick, key_prompt = jax.random.split(key)
    dfa_id_B = _uniform_int(jax.random.uniform(key_pick, (batch_size,)), 0,
                            pool['tables_PxSxV'].shape[0] - 1)
    return self.prompts(key_prompt, pool, dfa_id_B)

  def model_inputs(self, batch: Batch) -> jax.Array:
    return batch['tokens_BxT']

  def position_metrics(self, logits_BxTxV, batch: Batch) -> Dict[str, jax.Array]:
    """At each position t (predicting token t + 1): next-token loss, top-1 match (the greedy
    token is the actual next token) and REGBENCH's accuracy (the greedy token is legal under
    the prompt's automaton, as eval.py scores it)."""
    targets_BxT1 = batch['tokens_BxT'][:, 1:]
    weights_BxT1 = batch['loss_mask_BxT'][:, 1:]
    log_probs_BxT1xV = jax.nn.log_softmax(logits_BxTxV[:, :-1])
    nll_BxT1 = -jnp.take_along_axis(log_probs_BxT1xV, targets_BxT1[..., None], -1)[..., 0]
    correct_BxT1 = (jnp.argmax(logits_BxTxV[:, :-1], -1) == targets_BxT1).astype(jnp.float32)
    # REGBENCH's accuracy: the greedy token is legal under the prompt's automaton.
    from data.languages import automaton_next_token_probs
    tables = self.device_pool('train')['tables_PxSxV'][batch['dfa_id_B']].astype(jnp.int32)
    true_BxTxK = automaton_next_token_probs(
        tables, batch['state_BxT'], batch['position_in_string_BxT'],
        vocab_size=self.vocab_size, min_string_len=int(self.cfg['min_string_len']),
        max_string_len=int(self.cfg['max_string_len']),
        predict_separator=self.predict_separator)
    greedy_BxT1 = jnp.argmax(logits_BxTxV[:, :-1], -1)
    legal_BxT1 = (jnp.take_along_axis(true_BxTxK[:, :-1], greedy_BxT1[..., None], -1)[..., 0]
                  > 0).astype(jnp.float32)
    total_T1 = jnp.sum(weights_BxT1, axis=0)
    count_T1 = jnp.maximum(total_T1, 1.0)
    # Positions with no target in any prompt (padding) are undefined: NaN, not 0.
    undefined = lambda x: jnp.where(total_T1 > 0, x, jnp.nan)
    return {'loss': undefined(jnp.sum(nll_BxT1 * weights_BxT1, axis=0) / count_T1),
            'top1': undefined(jnp.sum(correct_BxT1 * weights_BxT1, axis=0) / count_T1),
            'accuracy': undefined(jnp.sum(legal_BxT1 * weights_BxT1, axis=0) / count_T1)}

  # ---- preference fine-tuning: prompts, completions and the automaton as judge -----------

  # 'valid' (the default), 'whole' and 'likelihood' score the whole new string and need at
  # least objective.min_completion_len symbols to reach their best score, so the judge cannot
  # be won by length: the empty string scores lowest, one symbol next. 'valid' is graded (a
  # broken or short string scores by its valid prefix, see data/judges.py graded_validity):
  # the tiny reference writes a whole valid string of >= 6 symbols 1% of the time, too rarely
  # for a binary judge to give pairs. 'accept' (any string of the task's lengths; REGBENCH
  # languages are prefix closed, so short strings are accepted most often) and 'length' (the
  # number of symbols) are kept for studies of reward hacking.
  PREFERENCE_JUDGES = ('valid', 'whole', 'likelihood', 'accept', 'length')
  LIKELIHOOD_FLOOR = -100.0   # the 'likelihood' reward of a rejected completion (log p = -inf)

  def default_completion_len(self) -> int:
    return int(self.cfg['max_string_len']) + 1

  def default_min_completion_len(self) -> int:
    """Half the longest string (6 symbols of at most 12 at tiny scale)."""
    return max(int(self.cfg['max_string_len']) // 2, int(self.cfg['min_string_len']))

  def min_completion_len(self, cfg) -> int:
    return int(cfg.get('min_completion_len', 0) or self.default_min_completion_len())

  def prefix_width(self, cfg) -> int:
    return int(cfg['prefix_strings']) * (int(self.cfg['max_string_len']) + 1)

  def check_preference_config(self, cfg) -> None:
    """Raises ConfigError for preference settings this task cannot serve."""
    require(cfg['judge'] in self.PREFERENCE_JUDGES, 'objective.judge', cfg['judge'],
            f'allowed: {", ".join(self.PREFERENCE_JUDGES)}')
    k = cfg['prefix_strings']
    require(isinstance(k, int) and 1 <= k <= int(self.cfg['strings_min']) - 1,
            'objective.prefix_strings', k,
            f'an integer in [1, task.strings_min - 1 = {int(self.cfg["strings_min"]) - 1}]')
    completion = cfg['completion_len'] or self.default_completion_len()
    require(isinstance(completion, int) and completion >= 1, 'objective.completion_len',
            cfg['completion_len'], 'an integer >= 1 (0: max_string_len + 1)')
    lo, hi = int(self.cfg['min_string_len']), int(self.cfg['max_string_len'])
    min_len = cfg.get('min_completion_len', 0)
    require(isinstance(min_len, int) and (min_len == 0 or lo <= min_len <= hi),
            'objective.min_completion_len', min_len,
            f'an integer in [task.min_string_len = {lo}, task.max_string_len = {hi}] '
            f'(0: {self.default_min_completion_len()})')
    if cfg['judge'] in ('valid', 'whole', 'likelihood'):
      need = self.min_completion_len(cfg) + 1
      require(completion >= need, 'objective.completion_len', completion,
              f'the {cfg["judge"]!r} judge needs strings of at least '
              f'{self.min_completion_len(cfg)} symbols and a separator: >= {need}')
    width = self.prefix_width(cfg) + completion
    require(width <= self.seq_len, 'objective.prefix_strings', k,
            f'{k} strings of up to {self.cfg["max_string_len"]} symbols plus a completion of '
            f'{completion} tokens need {width} positions; the task has {self.seq_len}')

  def preference_prompts(self, batch: Batch, cfg) -> Batch:
    """The first `prefix_strings` strings of each prompt (separators included), left-aligned
    in a fixed width; the completion is a new string of the same language."""
    width = self.prefix_width(cfg)
    index_BxW = batch['string_index_BxT'][:, :width]
    keep_BxW = (index_BxW >= 0) & (index_BxW < cfg['prefix_strings'])
    return {'tokens_BxW': jnp.where(keep_BxW, batch['tokens_BxT'][:, :width], PAD_ID),
            'prompt_len_B': jnp.sum(keep_BxW, axis=1).astype(jnp.int32),
            'dfa_id_B': batch['dfa_id_B']}

  def offline_prompts(self, index_B: jax.Array, cfg) -> Batch:
    """Prompt i of the fixed offline set: a function of i (and pool_seed) only."""
    base = jax.random.fold_in(jax.random.key(int(self.cfg['pool_seed'])), 2)
    keys_B = jax.vmap(lambda i: jax.random.fold_in(base, i))(index_B)
    rows = jax.vmap(lambda k: self.sample(k, 1))(keys_B)
    return self.preference_prompts(jax.tree.map(lambda x: x[:, 0], rows), cfg)

  def completion_tokens(self, sequences_BxL, start_B, completion_len: int):
    """(completion tokens_BxC, mask_BxC): C tokens after each prompt; the mask keeps them up
    to and including the first separator."""
    from data import judges
    positions_BxC = start_B[:, None] + jnp.arange(completion_len)[None, :]
    tokens_BxC = jnp.take_along_axis(sequences_BxL, positions_BxC, axis=1)
    return tokens_BxC, judges.completion_mask(tokens_BxC, self.separator_id).astype(jnp.float32)

  def judge(self, prompts: Batch, tokens_BxC, mask_BxC, cfg) -> jax.Array:
    """Exact reward of each completion under the prompt's automaton (data/judges.py):
    'whole' 1 for a finished string of the language with min_completion_len to
    max_string_len symbols, else 0; 'valid' the same 1, else its valid prefix's symbols (at
    most m = min_completion_len) / (m + 1); 'likelihood' its log-probability under the generative
    model if it has at least min_completion_len symbols (LIKELIHOOD_FLOOR otherwise, and if
    rejected); 'accept' 1/0 for any string of the task's lengths; 'length' its number of
    symbols (unfinished completions lowest)."""
    from data import judges
    del mask_BxC
    tables = self.device_pool('train')['tables_PxSxV'][prompts['dfa_id_B']].astype(jnp.int32)
    start_B = jnp.zeros_like(prompts['dfa_id_B'])
    bounds = dict(min_string_len=int(self.cfg['min_string_len']),
                  max_string_len=int(self.cfg['max_string_len']))
    long_enough_B = self.completion_length(tokens_BxC) >= self.min_completion_len(cfg)
    if cfg['judge'] == 'valid':
      return judges.graded_validity_batch(
          tables, start_B, tokens_BxC, self.vocab_size,
          min_string_len=self.min_completion_len(cfg),
          max_string_len=int(self.cfg['max_string_len']))
    if cfg['judge'] == 'whole':
      return judges.acceptance_reward(judges.accepts_batch(
          tables, start_B, tokens_BxC, self.vocab_size,
          **dict(bounds, min_string_len=self.min_completion_len(cfg))))
    if cfg['judge'] == 'accept':
      return judges.acceptance_reward(judges.accepts_batch(
          tables, start_B, tokens_BxC, self.vocab_size, **bounds))
    if cfg['judge'] == 'likelihood':
      log_p = judges.automaton_log_likelihood_batch(
          tables, start_B, tokens_BxC, self.vocab_size,
          predict_separator=self.predict_separator, **bounds)
      return jnp.where(jnp.isfinite(log_p) & long_enough_B, log_p, self.LIKELIHOOD_FLOOR)
    return judges.length_reward(tokens_BxC, self.separator_id)

  def judge_accepts(self, rewards_B, cfg) -> jax.Array:
    """bool[B]: the completions the judge accepts (filtered SFT trains on these): reward 1
    for 'valid' / 'whole' / 'accept', above the floor for 'likelihood', finished for
    'length'."""
    if cfg['judge'] in ('valid', 'whole', 'accept'):
      return rewards_B >= 1.0
    if cfg['judge'] == 'likelihood':
      return rewards_B > self.LIKELIHOOD_FLOOR
    return rewards_B >= 0

  def completion_length(self, tokens_BxC) -> jax.Array:
    """int32[B]: symbols of each completion before its first separator."""
    from data import judges
    return judges.num_symbols(tokens_BxC, self.separator_id)

  def preference_labels(self, key, rewards_2xB, tokens_2xBxC, masks_2xBxC, cfg):
    """(first_wins_B, valid_B): Bradley-Terry labels (exact at bt_temperature 0); identical
    completions and ties are invalid (dropped and counted)."""
    from data import judges
    del masks_2xBxC
    pair = judges.preference_pair(key, tokens_2xBxC[0], tokens_2xBxC[1], rewards_2xB[0],
                                  rewards_2xB[1], separator_id=self.separator_id,
                                  temperature=cfg['bt_temperature'])
    return pair.chosen_index_B == 0, pair.valid_B

  # ---- pools and prompts ---------------------------------------------------------------

  def pool(self, split: str) -> dfa_lib.DFAPool:
    """The host pool of `split` ('train' or 'test')."""
    require(split in self._pools, 'split', split, 'train or test')
    return self._pools[split]

  def device_pool(self, split: str) -> Dict[str, jax.Array]:
    if split not in self._device_pools:
      self._device_pools[split] = device_pool(self.pool(split))
    return self._device_pools[split]

  def prompts(self, key: jax.Array, pool: Dict[str, jax.Array], dfa_id_B: jax.Array) -> Batch:
    """Prompts of the automata `dfa_id_B` of `pool` (see `device_pool`); jittable."""
    cfg = self.cfg
    batch_size = dfa_id_B.shape[0]
    seq_len, strings_max = self.seq_len, int(cfg['strings_max'])
    tables_BxSxV = pool['tables_PxSxV'][dfa_id_B].astype(jnp.int32)
    degrees_BxS = pool['degrees_PxS'][dfa_id_B].astype(jnp.int32)
    edges_BxSxE = pool['edges_PxSxE'][dfa_id_B].astype(jnp.int32)
    # One uniform draw for everything (randint compiles to far more code on CPU):
    # rows [0, T) pick edges, rows [T, T + strings_max) give string lengths, the last row the
    # number of strings.
    uniforms_RxB = jax.random.uniform(key, (seq_len + strings_max + 1, batch_size))
    uniforms_TxB = uniforms_RxB[:seq_len]
    lengths_BxN = _uniform_int(uniforms_RxB[seq_len:seq_len + strings_max].T,
                               cfg['min_string_len'], cfg['max_string_len'])
    num_strings_B = _uniform_int(uniforms_RxB[-1], cfg['strings_min'], cfg['strings_max'])
    rows_B = jnp.arange(batch_size)
    separator = self.separator_id

    def body(carry, u_B):
      state_B, pos_B, string_B = carry
      active_B = string_B < num_strings_B
      length_B = lengths_BxN[rows_B, jnp.minimum(string_B, strings_max - 1)]
      end_B = active_B & (pos_B >= length_B)
      symbol_step_B = active_B & ~end_B
      # A uniformly random outgoing edge: floor(u * degree) indexes the state's edge list.
      degree_B = degrees_BxS[rows_B, state_B]
      choice_B = jnp.minimum((u_B * degree_B).astype(jnp.int32), jnp.maximum(degree_B - 1, 0))
      symbol_B = edges_BxSxE[rows_B, state_B, choice_B]
      next_B = tables_BxSxV[rows_B, state_B, jnp.maximum(symbol_B, 0)]
      token_B = jnp.where(symbol_step_B, symbol_B + SYMBOL_OFFSET,
                          jnp.where(end_B, separator, PAD_ID))
      new_state_B = jnp.where(symbol_step_B, next_B, 0)
      new_pos_B = jnp.where(symbol_step_B, pos_B + 1, 0)
      out = (token_B,
             jnp.where(active_B, new_state_B, -1),
             jnp.where(active_B, new_pos_B, -1),
             jnp.where(active_B, string_B, -1))
      new_string_B = string_B + end_B.astype(jnp.int32)
      return (new_state_B, new_pos_B, new_string_B), out

    zeros_B = jnp.zeros((batch_size,), jnp.int32)
    _, (tokens_TxB, state_TxB, pos_TxB, string_TxB) = jax.lax.scan(
        body, (zeros_B, zeros_B, zeros_B), uniforms_TxB)
    tokens_BxT = tokens_TxB.T.astype(jnp.int32)
    is_target_BxT = (tokens_BxT >= SYMBOL_OFFSET) & (tokens_BxT < separator)
    if self.predict_separator:
      is_target_BxT = is_target_BxT | (tokens_BxT == separator)
    is_target_BxT = is_target_BxT.at[:, 0].set(False)
    return {
        'tokens_BxT': tokens_BxT,
        'loss_mask_BxT': is_target_BxT.astype(jnp.float32),
        'dfa_id_B': dfa_id_B.astype(jnp.int32),
        'state_BxT': state_TxB.T.astype(jnp.int32),
        'position_in_string_BxT': pos_TxB.T.astype(jnp.int32),
        'string_index_BxT': string_TxB.T.astype(jnp.int32),
    }

  def test_prompts(self) -> Batch:
    """One prompt per test automaton (dfa_id = its index), deterministic in pool_seed; this is
    what the frozen TFDS test set stores (numpy arrays)."""
    key = jax.random.fold_in(jax.random.key(int(self.cfg['pool_seed'])), 1)
    ids = jnp.arange(len(self.pool('test')), dtype=jnp.int32)
    batch = jax.jit(self.prompts)(key, self.device_pool('test'), ids)
    return {k: np.asarray(v) for k, v in batch.items()}

  # ---- helpers for metrics and baselines -----------------------------------------------

  def language_params(self) -> Dict[str, Any]:
    """What analysis/language_metrics.py needs to know about the token layout and lengths."""
    return dict(vocab_size=self.vocab_size, min_string_len=int(self.cfg['min_string_len']),
                max_string_len=int(self.cfg['max_string_len']),
                predict_separator=self.predict_separator)

  def test_data_dir(self) -> str:
    """Where the frozen test set lives: task.test_data_dir, $TFDS_DATA_DIR or
    ~/tensorflow_datasets."""
    if self.cfg['test_data_dir']:
      return self.cfg['test_data_dir']
    return os.environ.get('TFDS_DATA_DIR', os.path.expanduser('~/tensorflow_datasets'))
