"""Token recall tasks: associative recall, multi-query associative recall (MQAR) and copying.

  associative_recall  k_1 v_1 ... k_P v_P q a: P key-value pairs with distinct keys, then one
                      query key q (one of the k_i) whose value a = v_i is the target
                      (the associative recall of Ba et al. 2016 / Fu et al. 2023, H3).
  mqar                the same with Q queries, k_1 v_1 ... k_P v_P q_1 a_1 ... q_Q a_Q: distinct
                      keys, and the queries are Q distinct keys of the pairs in random order
                      (Arora et al. 2023, "Zoology"). One deviation from Zoology: the queries
                      follow the pairs contiguously rather than at random positions among
                      filler tokens.
  induction_copy      x_1 ... x_S | x_1 ... x_S: a uniformly random token sequence, a separator,
                      and the sequence again; every token of the second copy is predictable by
                      induction (find the earlier occurrence, copy the token after it; Olsson et
                      al. 2022's repeated random tokens).

Token ids: 0 = <pad> (never produced; kept so id 0 means nothing, as in REGBENCH). Key-value
tasks: keys 1..num_keys, values num_keys+1..num_keys+num_values. Copy: 1 = separator, symbols
2..num_symbols+1. Sequences have a fixed length, so nothing is padded.

Batch keys: `tokens_BxT`, `loss_mask_BxT` (1 where token t is a prediction target: the answers
/ the second copy; the 'next_token' objective predicts token t from position t - 1), and
`query_source_BxQ` (key-value tasks: the pair each query asks for, -1 when its key is absent
from the context). The targets are at the static positions `answer_positions()`.

Evaluation splits (`sample_split`): 'in_distribution' (the training prompts) and 'in_weights'
(the answer is not in the context: the queried keys are absent from the pairs / the second half
is a fresh random sequence; a control whose accuracy should be chance, 1 / num_values).
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import Batch, ConfigError, ModelIO, require
from data.base import Task, merge_task_config, register_task

PAD_ID = 0
SPLITS = ('in_distribution', 'in_weights')


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _merge(name: str, defaults: Dict[str, Any], config: Any) -> Dict[str, Any]:
  cfg = merge_task_config(name, defaults, config)
  for key, default in defaults.items():
    if _is_int(default):
      require(_is_int(cfg[key]) and cfg[key] >= 1, f'task.{key}', cfg[key], 'an integer >= 1')
    else:
      require(isinstance(cfg[key], (bool, np.bool_)), f'task.{key}', cfg[key], 'True or False')
  return cfg


def _random_permutations(key: jax.Array, batch_size: int, size: int) -> jax.Array:
  return jnp.argsort(jax.random.uniform(key, (batch_size, size)), axis=1).astype(jnp.int32)


class RecallTask(Task):
  """Shared interface of the token recall tasks (next-token loss at the answer positions)."""
  eval_family = 'classification'
  default_objective = 'next_token'
  objectives = ('next_token',)
  icl_metric = 'loss'
  eval_splits = SPLITS
  defaults: Dict[str, Any] = {}

  @classmethod
  def default_config(cls) -> dict:
    return dict(cls.defaults)

  def __init__(self, config: Any):
    super().__init__(config)
    self.cfg = _merge(self.name, self.defaults, config)
    self._validate(self.cfg)

  def _validate(self, cfg):
    """Task-specific checks."""

  # subclass: num_tokens, seq_len, num_answers (values a target can take), answer_positions()

  def io(self) -> ModelIO:
    return ModelIO(input_kind='tokens', vocab_size=self.num_tokens, seq_len=self.seq_len,
                   output_dim=self.num_tokens)

  def model_inputs(self, batch: Batch) -> jax.Array:
    return batch['tokens_BxT']

  def sample(self, key: jax.Array, batch_size: int, step: Any = 0) -> Batch:
    """Training prompts (the in_distribution split); `step` is unused."""
    del step
    return self.sample_split(key, batch_size, 'in_distribution')

  def num_queries(self) -> int:
    return len(self.answer_positions())

  def query_scores(self, logits_BxTxV, batch: Batch) -> Dict[str, jax.Array]:
    """{'loss_BxQ', 'correct_BxQ'}: next-token loss and greedy correctness at each answer."""
    positions = self.answer_positions()
    logits_BxQxV = logits_BxTxV[:, positions - 1].astype(jnp.float32)
    targets_BxQ = batch['tokens_BxT'][:, positions]
    nll_BxQ = optax.softmax_cross_entropy_with_integer_labels(logits_BxQxV, targets_BxQ)
    correct_BxQ = (jnp.argmax(logits_BxQxV, -1) == targets_BxQ).astype(jnp.float32)
    return {'loss_BxQ': nll_BxQ, 'correct_BxQ': correct_BxQ}

  def position_metrics(self, logits_BxTxV, batch: Batch) -> Dict[str, jax.Array]:
    """Loss and accuracy at each answer (query index, or position in the second copy)."""
    scores = self.query_scores(logits_BxTxV, batch)
    return {'loss': jnp.mean(scores['loss_BxQ'], 0),
            'accuracy': jnp.mean(scores['correct_BxQ'], 0)}

  def _check_split(self, split: str) -> None:
    if split not in SPLITS:
      raise ConfigError(f'split {split!r} is invalid: one of {", ".join(SPLITS)}')

  def split_description(self, split: str) -> str:
    return {'in_distribution': 'the training distribution',
            'in_weights': 'the answer is not in the context (chance control)'}[split]

  def _mask(self, batch_size: int) -> jax.Array:
    mask_T = np.zeros(self.seq_len, np.float32)
    mask_T[self.answer_positions()] = 1.0
    return jnp.broadcast_to(jnp.asarray(mask_T), (batch_size, self.seq_len))


class KeyValueRecall(RecallTask):
  """P key-value pairs with distinct keys, then Q queries (distinct keys of the pairs)."""

  def _validate(self, cfg):
    require(cfg['num_queries'] <= cfg['num_pairs'], 'task.num_queries', cfg['num_queries'],
            f'at most num_pairs={cfg["num_pairs"]} (queries are distinct keys of the pairs)')
    need = cfg['num_pairs'] + cfg['num_queries']
    require(cfg['num_keys'] >= need, 'task.num_keys', cfg['num_keys'],
            f'at least num_pairs + num_queries = {need} (distinct keys; the in_weights split '
            'queries keys absent from the pairs)')
    require(1 + cfg['num_keys'] + cfg['num_values'] < 2**31, 'task.num_keys', cfg['num_keys'],
            'too large')

  def __init__(self, config: Any):
    super().__init__(config)
    self.num_keys = int(self.cfg['num_keys'])
    self.num_values = int(self.cfg['num_values'])
    self.num_pairs = int(self.cfg['num_pairs'])
    self.num_answers = self.num_values
    self.num_query = int(self.cfg['num_queries'])
    self.num_tokens = 1 + self.num_keys + self.num_values
    self.seq_len = 2 * (self.num_pairs + self.num_query)
    self.key_offset, self.value_offset = 1, 1 + self.num_keys

  def answer_positions(self) -> np.ndarray:
    return 2 * self.num_pairs + 2 * np.arange(self.num_query) + 1

  def sample_split(self, key: jax.Array, batch_size: int, split: str) -> Batch:
    """Prompts of one split ('in_distribution' or 'in_weights'); jittable, `split` static."""
    self._check_split(split)
    k_keys, k_values, k_queries, k_absent = jax.random.split(key, 4)
    p, q = self.num_pairs, self.num_query
    key_order_BxK = _random_permutations(k_keys, batch_size, self.num_keys)
    keys_BxP = key_order_BxK[:, :p]                        # distinct keys
    values_BxP = jax.random.randint(k_values, (batch_size, p), 0, self.num_values)
    if split == 'in_distribution':
      source_BxQ = _random_permutations(k_queries, batch_size, p)[:, :q]
      query_keys_BxQ = jnp.take_along_axis(keys_BxP, source_BxQ, 1)
      answers_BxQ = jnp.take_along_axis(values_BxP, source_BxQ, 1)
    else:
      source_BxQ = jnp.full((batch_size, q), -1, jnp.int32)
      query_keys_BxQ = key_order_BxK[:, p:p + q]           # keys absent from the pairs
      answers_BxQ = jax.random.randint(k_absent, (batch_size, q), 0, self.num_values)
    pairs = jnp.stack([keys_BxP + self.key_offset, values_BxP + self.value_offset], 2)
    queries = jnp.stack([query_keys_BxQ + self.key_offset, answers_BxQ + self.value_offset], 2)
    tokens_BxT = jnp.concatenate([pairs.reshape(batch_size, 2 * p),
                                  queries.reshape(batch_size, 2 * q)], 1).astype(jnp.int32)
    return {'tokens_BxT': tokens_BxT, 'loss_mask_BxT': self._mask(batch_size),
            'query_source_BxQ': source_BxQ.astype(jnp.int32)}

  def baseline_scores(self, batch: Batch) -> Dict[str, jax.Array]:
    """Accuracy (B x Q) of reference predictors: 'context_lookup' (the value paired with the
    query key in the context; the first pair's value when the key is absent) and 'chance'."""
    tokens_BxT = batch['tokens_BxT']
    p = self.num_pairs
    pair_keys_BxP, pair_values_BxP = tokens_BxT[:, 0:2 * p:2], tokens_BxT[:, 1:2 * p:2]
    positions = self.answer_positions()
    query_keys_BxQ, answers_BxQ = tokens_BxT[:, positions - 1], tokens_BxT[:, positions]
    match_BxQxP = query_keys_BxQ[:, :, None] == pair_keys_BxP[:, None, :]
    found_BxQ = jnp.argmax(match_BxQxP, -1)               # 0 when absent
    guess_BxQ = jnp.take_along_axis(pair_values_BxP, found_BxQ, 1)
    return {'context_lookup': (guess_BxQ == answers_BxQ).astype(jnp.float32),
            'chance': jnp.full(answers_BxQ.shape, 1.0 / self.num_values, jnp.float32)}


@register_task('associative_recall')
class AssociativeRecall(KeyValueRecall):
  """One query after P key-value pairs."""
  defaults = dict(num_keys=32, num_values=32, num_pairs=8, num_queries=1)


@register_task('mqar')
class MultiQueryAssociativeRecall(KeyValueRecall):
  """Zoology's MQAR: every key of the pairs is queried once, in random order (by default)."""
  defaults = dict(num_keys=64, num_values=64, num_pairs=8, num_queries=8)


@register_task('induction_copy')
class InductionCopy(RecallTask):
  """x_1 .. x_S <sep> x_1 .. x_S with x_i uniform over `num_symbols` (distinct if asked)."""
  defaults = dict(num_symbols=32, copy_len=16, distinct=False)

  def _validate(self, cfg):
    if cfg['distinct']:
      require(cfg['num_symbols'] >= cfg['copy_len'], 'task.num_symbols', cfg['num_symbols'],
              f'at least copy_len={cfg["copy_len"]} with distinct=True')

  def __init__(self, config: Any):
    super().__init__(config)
    self.num_symbols = int(self.cfg['num_symbols'])
    self.copy_len = int(self.cfg['copy_len'])
    self.distinct = bool(self.cfg['distinct'])
    self.num_answers = self.num_symbols
    self.separator_id = 1
    self.symbol_offset = 2
    self.num_tokens = 2 + self.num_symbols
    self.seq_len = 2 * self.copy_len + 1

  def answer_positions(self) -> np.ndarray:
    return self.copy_len + 1 + np.arange(self.copy_len)

  def _sequence(self, key, batch_size):
    if self.distinct:
      return _random_permutations(key, batch_size, self.num_symbols)[:, :self.copy_len]
    return jax.random.randint(key, (batch_size, self.copy_len), 0, self.num_symbols)

  def sample_split(self, key: jax.Array, batch_size: int, split: str) -> Batch:
    """The sequence and its copy ('in_distribution'), or a fresh second sequence
    ('in_weights'); jittable with `split` static."""
    self._check_split(split)
    k_first, k_second = jax.random.split(key)
    first_BxS = self._sequence(k_first, batch_size)
    second_BxS = first_BxS if split == 'in_distribution' else self._sequence(k_second,
                                                                             batch_size)
    sep_Bx1 = jnp.full((batch_size, 1), self.separator_id, jnp.int32)
    tokens_BxT = jnp.concatenate([first_BxS + self.symbol_offset, sep_Bx1,
                                  second_BxS + self.symbol_offset], 1).astype(jnp.int32)
    return {'tokens_BxT': tokens_BxT, 'loss_mask_BxT': self._mask(batch_size)}

  def baseline_scores(self, batch: Batch) -> Dict[str, jax.Array]:
    """'context_lookup': predict the first copy's token at the same offset; 'chance'."""
    tokens_BxT = batch['tokens_BxT']
    first_BxS = tokens_BxT[:, :self.copy_len]
    second_BxS = tokens_BxT[:, self.answer_positions()]
    return {'context_lookup': (first_BxS == second_BxS).astype(jnp.float32),
            'chance': jnp.full(second_BxS.shape, 1.0 / self.num_symbols, jnp.float32)}
