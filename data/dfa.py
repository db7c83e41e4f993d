"""Random deterministic finite automata for REGBENCH (Akyurek et al. 2024), on the host.

The sampling procedure follows the authors' public generator (berlino/seq_icl, `RegBench`):
  * number of states   n ~ U{num_states_min .. num_states_max}, start state 0;
  * alphabet size      c ~ U{alphabet_min .. alphabet_max}, alphabet = random c-subset of the
    `vocab_size` symbols;
  * every state gets   k ~ U{edges_min .. edges_max} outgoing edges with k distinct symbols of the
    alphabet and k distinct target states, never itself (the authors exclude self loops);
  * every state is accepting; a missing edge means the string is rejected. The language is
    therefore prefix closed: a string is in it iff it can be read from the start state;
  * the automaton is trimmed (unreachable states dropped) and minimised (Moore partition
    refinement; missing edges go to an implicit rejecting sink, so equivalent states have the
    same set of outgoing symbols and minimisation keeps every out-degree in range);
  * duplicates are removed by a canonical form: states renumbered in breadth-first order from
    the start state, edges visited in symbol order. For a minimal automaton this numbering is
    unique, so two automata have the same canonical table iff they define the same language
    (the authors hash a numbering that is not canonical; this is the exact version).

An automaton is a dense transition table int32[num_states, vocab_size], -1 for no edge. Pools
pad the tables to `num_states_max` rows so a pool stacks into one array.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

NO_EDGE = -1
# Candidates are drawn in chunks of this many from the generator's stream; the chunk size is
# part of the stream's definition (changing it changes which automata a seed gives).
_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class DFASpec:
  """The ranges automata are drawn from (all bounds inclusive)."""
  vocab_size: int = 20
  num_states_min: int = 4
  num_states_max: int = 12
  alphabet_min: int = 4
  alphabet_max: int = 18
  edges_min: int = 1
  edges_max: int = 3

  def check(self) -> None:
    """Raises ValueError on ranges the sampler cannot honour (tasks validate earlier)."""
    if not 1 <= self.num_states_min <= self.num_states_max:
      raise ValueError(f'bad state range {self.num_states_min}..{self.num_states_max}')
    if not 1 <= self.edges_min <= self.edges_max:
      raise ValueError(f'bad edge range {self.edges_min}..{self.edges_max}')
    if not 1 <= self.alphabet_min <= self.alphabet_max <= self.vocab_size:
      raise ValueError(f'bad alphabet range {self.alphabet_min}..{self.alphabet_max}')
    if self.num_states_min < self.edges_max + 1 or self.alphabet_min < self.edges_max:
      raise ValueError('need num_states_min >= edges_max + 1 and alphabet_min >= edges_max')


@dataclasses.dataclass(frozen=True)
class DFAPool:
  """A stack of minimal, trimmed, canonical automata.

  tables_PxSxV:   int32 next state per (automaton, state, symbol), -1 = no edge; rows >= the
                  automaton's num_states are all -1.
  num_states_P:   int32 states of each automaton.
  degrees_PxS:    int32 number of outgoing edges of each state (0 on padding rows).
  edges_PxSxE:    int32 the symbols of each state's outgoing edges in increasing order, -1 padded
                  (E = edges_max), so a uniformly random edge is one gather.
  """
  tables_PxSxV: np.ndarray
  num_states_P: np.ndarray
  degrees_PxS: np.ndarray
  edges_PxSxE: np.ndarray

  def __len__(self) -> int:
    return int(self.tables_PxSxV.shape[0])

  def table(self, index: int) -> np.ndarray:
    """The unpadded table int32[num_states, vocab_size] of automaton `index`."""
    return self.tables_PxSxV[index, :int(self.num_states_P[index])]


def sample_raw_dfas(rng: np.random.Generator, spec: DFASpec, count: int) -> np.ndarray:
  """Draws `count` raw automata (before trimming/minimisation) as int32[count, S_max, V].

  Rows >= an automaton's drawn number of states are -1. Vectorised over the count: random
  subsets are the first entries of random permutations (argsort of uniforms, with disallowed
  entries pushed to the end).
  """
  s_max, vocab = spec.num_states_max, spec.vocab_size
  num_states_N = rng.integers(spec.num_states_min, spec.num_states_max + 1, size=count)
  alphabet_size_N = rng.integers(spec.alphabet_min, spec.alphabet_max + 1, size=count)
  # Alphabet: the first alphabet_size symbols of a random permutation of the vocabulary.
  alphabet_NxV = np.argsort(rng.random((count, vocab)), axis=1)
  degree_NxS = rng.integers(spec.edges_min, spec.edges_max + 1, size=(count, s_max))
  # Edge symbols: distinct positions within the alphabet (positions >= its size excluded).
  keys_NxSxV = rng.random((count, s_max, vocab))
  keys_NxSxV = np.where(np.arange(vocab)[None, None, :] >= alphabet_size_N[:, None, None],
                        np.inf, keys_NxSxV)
  symbol_pos_NxSxV = np.argsort(keys_NxSxV, axis=2)
  # Edge targets: distinct states other than the source (and < num_states).
  keys_NxSxS = rng.random((count, s_max, s_max))
  states = np.arange(s_max)
  invalid = (states[None, None, :] >= num_states_N[:, None, None]) | (
      states[None, :, None] == states[None, None, :])
  keys_NxSxS = np.where(invalid, np.inf, keys_NxSxS)
  target_NxSxS = np.argsort(keys_NxSxS, axis=2)

  tables = np.full((count, s_max, vocab), NO_EDGE, np.int32)
  e_max = spec.edges_max
  rows_N, rows_S, rows_E = np.meshgrid(np.arange(count), states, np.arange(e_max), indexing='ij')
  keep = (rows_E < degree_NxS[:, :, None]) & (rows_S < num_states_N[:, None, None])
  symbols = np.take_along_axis(
      alphabet_NxV[:, None, :], symbol_pos_NxSxV[:, :, :e_max], axis=2)
  targets = target_NxSxS[:, :, :e_max]
  tables[rows_N[keep], rows_S[keep], symbols[keep]] = targets[keep]
  return tables


def _edges(table_rows: List[List[int]]) -> List[List[Tuple[int, int]]]:
  return [[(a, t) for a, t in enumerate(row) if t >= 0] for row in table_rows]


def minimize(table: np.ndarray) -> np.ndarray:
  """Trims, minimises and canonically renumbers an automaton (all states accepting).

  Args:
    table: int32[num_states, V] (rows may be -1 padding), start state 0.
  Returns:
    int32[m, V]: the minimal automaton of the same (prefix-closed) language, its states in
    breadth-first order from the start state with edges taken in symbol order.
  """
  edges = _edges(np.asarray(table).tolist())
  # Reachable states from the start state.
  reachable, stack = {0}, [0]
  while stack:
    for _, t in edges[stack.pop()]:
      if t not in reachable:
        reachable.add(t)
        stack.append(t)
  states = sorted(reachable)
  # Moore refinement. Every state accepts, the implicit sink (-1) rejects, so the initial
  # partition is one block; a state's signature is its block and its (symbol, target block)
  # pairs, a missing symbol standing for the sink.
  block = {s: 0 for s in states}
  num_blocks = 1
  while True:
    signatures: Dict[tuple, int] = {}
    new_block = {}
    for s in states:
      sig = (block[s],) + tuple((a, block[t]) for a, t in edges[s])
      new_block[s] = signatures.setdefault(sig, len(signatures))
    block = new_block
    if len(signatures) == num_blocks:
      break
    num_blocks = len(signatures)
  # One representative per block, then breadth-first canonical numbering.
  representative = {}
  for s in states:
    representative.setdefault(block[s], s)
  order = {block[0]: 0}
  queue = [block[0]]
  head = 0
  while head < len(queue):
    b = queue[head]
    head += 1
    for _, t in edges[representative[b]]:
      if block[t] not in order:
        order[block[t]] = len(order)
        queue.append(block[t])
  out = np.full((len(order), np.asarray(table).shape[1]), NO_EDGE, np.int32)
  for b, i in order.items():
    for a, t in edges[representative[b]]:
      out[i, a] = order[block[t]]
  return out


def canonical_key(table: np.ndarray) -> bytes:
  """Exact identity of a minimised canonical automaton (shape + table bytes)."""
  table = np.ascontiguousarray(table, np.int32)
  return np.asarray(table.shape, np.int32).tobytes() + table.tobytes()


def accepts(table: np.ndarray, symbols: Sequence[int]) -> bool:
  """Whether the automaton reads `symbols` from its start state (every state accepts)."""
  state = 0
  for a in symbols:
    state = int(table[state, a])
    if state < 0:
      return False
  return True


def stack_pool(tables: Sequence[np.ndarray], spec: DFASpec) -> DFAPool:
  """Pads canonical tables to `num_states_max` rows and derives degrees and edge lists."""
  count = len(tables)
  s_max, vocab, e_max = spec.num_states_max, spec.vocab_size, spec.edges_max
  tables_PxSxV = np.full((count, s_max, vocab), NO_EDGE, np.int32)
  num_states_P = np.zeros((count,), np.int32)
  for i, t in enumerate(tables):
    tables_PxSxV[i, :t.shape[0]] = t
    num_states_P[i] = t.shape[0]
  has_edge = tables_PxSxV >= 0
  degrees_PxS = has_edge.sum(-1).astype(np.int32)
  # Symbols with an edge sort first (stable argsort keeps increasing symbol order).
  order = np.argsort(~has_edge, axis=-1, kind='stable')[..., :e_max]
  edges_PxSxE = np.where(np.arange(e_max) < degrees_PxS[..., None], order, NO_EDGE)
  return DFAPool(tables_PxSxV, num_states_P, degrees_PxS, edges_PxSxE.astype(np.int32))


def sample_pools(spec: DFASpec, seed: int, num_train: int, num_test: int,
                 max_candidates: Optional[int] = None) -> Tuple[DFAPool, DFAPool]:
  """Draws distinct minimal automata; the first `num_test` are the test pool, the next
  `num_train` the train pool, so the two are disjoint (no shared language) and the test pool
  for a seed does not depend on `num_train`. Deterministic in (spec, seed).

  Raises ValueError if `max_candidates` raw draws (default 50 * total + 10000) do not give
  enough distinct languages (tiny ranges have few).
  """
  spec.check()
  total = num_train + num_test
  if max_candidates is None:
    max_candidates = 50 * total + 10_000
  rng = np.random.default_rng(seed)
  seen = set()
  found: List[np.ndarray] = []
  drawn = 0
  while len(found) < total:
    if drawn >= max_candidates:
      raise ValueError(f'only {len(found)} distinct automata in {drawn} draws; '
                       f'{total} requested')
    raw = sample_raw_dfas(rng, spec, _CHUNK)
    drawn += _CHUNK
    for table in raw:
      canon = minimize(table)
      key = canonical_key(canon)
      if key not in seen:
        seen.add(key)
        found.append(canon)
        if len(found) == total:
          break
  return stack_pool(found[num_test:], spec), stack_pool(found[:num_test], spec)
