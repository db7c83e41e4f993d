"""The frozen REGBENCH test prompts as a versioned TFDS dataset (array_record, no TensorFlow).

One example per test automaton: the prompt (data/regbench.py `RegBenchTask.test_prompts`, a
pure function of the generation settings) plus the automaton's transition table, so metrics
can be computed from the files alone.

How this works without TensorFlow (tensorflow-datasets 4.9.10 + array-record 0.8.6):
  * writing goes through TFDS itself: a `GeneratorBasedBuilder` whose `_info` builds a
    `tfds.core.DatasetInfo` directly (`dataset_info_from_configs` would look for package
    metadata files), prepared with `download_and_prepare()` and `file_format='array_record'`.
    TFDS serialises the numpy features with its own protobuf code, so TensorFlow is never
    imported (tests check `'tensorflow' not in sys.modules`);
  * reading uses `builder.as_data_source()` (random access over the array_record shards), or,
    without this module, `tfds.builder_from_directory(<dir>).as_data_source()`;
  * TFDS shuffles examples by key when writing, so every example carries `index` and
    `load_test_set` sorts by it.

The builder config's name encodes every generation setting (vocabulary, ranges, seq_len,
predict_separator, seed, num_test_dfas); `num_train_dfas` is left out on purpose: the test pool
is the start of the automaton stream and does not depend on it. Layout on disk:
  <data_dir>/regbench/<config name>/<VERSION>/regbench-test.array_record-00000-of-00001

Command line: `python -m data.build_regbench [--data_dir DIR] [--config.key=value ...]`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from data import regbench

# Bump when the generator or the stored features change; old versions stay readable on disk.
VERSION = '1.0.0'
RELEASE_NOTES = {'1.0.0': 'REGBENCH test prompts (one per test automaton) with the tables.'}

# Generation settings that define the test set, in the order they appear in the config name.
_NAME_KEYS = (('v', 'vocab_size'), ('s', 'num_states_min'), ('', 'num_states_max'),
              ('a', 'alphabet_min'), ('', 'alphabet_max'), ('e', 'edges_min'), ('', 'edges_max'),
              ('n', 'strings_min'), ('', 'strings_max'), ('l', 'min_string_len'),
              ('', 'max_string_len'), ('t', 'seq_len'), ('sep', 'predict_separator'),
              ('seed', 'pool_seed'), ('test', 'num_test_dfas'))


def config_name(cfg: Dict[str, Any]) -> str:
  """e.g. 'v20_s4-12_a4-18_e1-3_n10-19_l1-49_t512_sep0_seed0_test500' for the defaults."""
  parts = []
  for prefix, key in _NAME_KEYS:
    value = int(cfg[key])
    if prefix:
      parts.append(f'{prefix}{value}')
    else:
      parts[-1] += f'-{value}'
  return '_'.join(parts)


@dataclasses.dataclass(eq=False)
class RegbenchConfig(tfds.core.BuilderConfig):
  """A BuilderConfig carrying the (merged, validated) REGBENCH task config."""
  task_config: Dict[str, Any] = dataclasses.field(default_factory=dict)


def builder_config(config: Any) -> RegbenchConfig:
  cfg = regbench.merge_config(config)
  settings = {k: cfg[k] for _, k in _NAME_KEYS}
  return RegbenchConfig(name=config_name(cfg), version=VERSION, release_notes=RELEASE_NOTES,
                        description=f'REGBENCH test prompts, settings {settings}',
                        task_config=cfg)


class Regbench(tfds.core.GeneratorBasedBuilder):
  """REGBENCH frozen test split. Build with `Regbench(config=builder_config(task_cfg), ...)`."""
  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = RELEASE_NOTES

  # TFDS locates a builder's source through `importlib_resources` (a backport that is not
  # installed) for builders outside its own package; give it the file directly.
  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config.task_config
    seq_len, s_max, vocab = cfg['seq_len'], cfg['num_states_max'], cfg['vocab_size']
    tokens = lambda dtype: tfds.features.Tensor(shape=(seq_len,), dtype=dtype)
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split('\n\n')[0],
        features=tfds.features.FeaturesDict({
            'index': np.int32,
            'tokens': tokens(np.int32),
            'loss_mask': tokens(np.float32),
            'state': tokens(np.int32),
            'position_in_string': tokens(np.int32),
            'string_index': tokens(np.int32),
            'dfa_id': np.int32,
            'table': tfds.features.Tensor(shape=(s_max, vocab), dtype=np.int32),
            'num_states': np.int32,
        }),
        homepage='https://arxiv.org/abs/2401.12973',
        citation='Akyurek, Wang, Kim, Andreas. In-Context Language Learning: Architectures '
                 'and Algorithms. ICML 2024.',
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'test': self._generate_examples()}

  def _generate_examples(self):
    # The test pool does not depend on num_train_dfas: build the smallest train pool.
    cfg = dict(self.builder_config.task_config, num_train_dfas=1)
    task = regbench.RegBenchTask(cfg)
    batch = task.test_prompts()
    pool = task.pool('test')
    for i in range(len(pool)):
      yield i, {
          'index': i,
          'tokens': batch['tokens_BxT'][i],
          'loss_mask': batch['loss_mask_BxT'][i],
          'state': batch['state_BxT'][i],
          'position_in_string': batch['position_in_string_BxT'][i],
          'string_index': batch['string_index_BxT'][i],
          'dfa_id': int(batch['dfa_id_B'][i]),
          'table': pool.tables_PxSxV[i],
          'num_states': int(pool.num_states_P[i]),
      }


def get_builder(config: Any, data_dir: str) -> Regbench:
  return Regbench(config=builder_config(config), data_dir=data_dir, file_format='array_record')


def build(config: Any, data_dir: str) -> Regbench:
  """Writes the test set for `config` under `data_dir` unless it is there; returns the builder."""
  builder = get_builder(config, data_dir)
  if not builder.is_prepared():
    tfds.display_progress_bar(False)  # a few hundred small examples; the bars are noise
    builder.download_and_prepare()
  return builder


_FIELDS = (('tokens', 'tokens_BxT'), ('loss_mask', 'loss_mask_BxT'), ('state', 'state_BxT'),
           ('position_in_string', 'position_in_string_BxT'),
           ('string_index', 'string_index_BxT'), ('dfa_id', 'dfa_id_B'),
           ('table', 'tables_BxSxV'), ('num_states', 'num_states_B'))


def read_split(source) -> Dict[str, np.ndarray]:
  """All examples of an array_record data source, in index order, as stacked numpy arrays."""
  examples = [source[i] for i in range(len(source))]
  examples.sort(key=lambda ex: int(ex['index']))
  return {out: np.stack([np.asarray(ex[name]) for ex in examples]) for name, out in _FIELDS}


def load_test_set(config: Any, data_dir: str) -> Dict[str, np.ndarray]:
  """The frozen test prompts of a REGBENCH config; builds them (deterministically) if missing.

  Returns numpy arrays with the task's batch keys (tokens_BxT, loss_mask_BxT, state_BxT,
  position_in_string_BxT, string_index_BxT, dfa_id_B) plus tables_BxSxV and num_states_B
  (the automaton of every prompt), B = num_test_dfas, ordered by test automaton.
  """
  builder = build(config, data_dir)
  return read_split(builder.as_data_source()['test'])
