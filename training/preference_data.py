"""The offline preference dataset: prompts and two reference completions each, sampled once
and frozen as a versioned TFDS dataset (array_record, no TensorFlow).

  python -m training.preference_data --config configs/preference_regbench.py:tiny \
      --config.train.init_from=runs/regbench_tiny [--config.objective.offline_data=DIR] \
      [--config.objective.num_offline_prompts=2048 --config.objective.temperature=1.0 ...]

writes `<DIR>/preference_pairs/<name>/<VERSION>/` (DIR defaults to
`<init_from>/preference_pairs`; <name> encodes the task's generation settings and the
sampling settings) plus `settings.json` beside the shards (the reference run and step, a
SHA-256 digest of its parameters, the judge's accept rate). A run with
`--config.objective.mode=offline --config.objective.offline_data=DIR` loads it onto the device
once; each step indexes B rows of it inside the compiled step, so the offline step does no
sampling and no host work. Prompt i is `task.offline_prompts(i)` (a function of i and the
task's pool seed); its completions are sampled from the frozen reference at
`objective.temperature`, from `fold_in(key(SAMPLING_SEED), chunk)`.

Writing and reading go through TFDS as in data/regbench_tfds.py (a `GeneratorBasedBuilder`
with `download_and_prepare()`, `as_data_source()`; examples carry `index` and are sorted by it).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any, Callable, Dict, Optional

import numpy as np

from core import ConfigError

VERSION = '1.0.0'
RELEASE_NOTES = {'1.0.0': 'prompts, two reference completions and their judge rewards'}
SAMPLING_SEED = 17
CHUNK = 256


def dataset_name(task, cfg) -> str:
  """The dataset's TFDS config name: the task's generation settings (which automata, which
  prompts) and the sampling settings."""
  from data import regbench_tfds
  task_part = regbench_tfds.config_name(task.cfg) + f'_train{int(task.cfg["num_train_dfas"])}'
  return (f'{task_part}_k{cfg["prefix_strings"]}_c{cfg["completion_len"]}_'
          f'n{cfg["num_offline_prompts"]}_temp{float(cfg["temperature"]):g}')


@functools.lru_cache(maxsize=None)   # TFDS registers a builder class once, by name
def _tfds():
  import tensorflow_datasets as tfds
  from etils import epath
  from tensorflow_datasets.core import utils as tfds_utils

  @dataclasses.dataclass(eq=False)
  class PairsConfig(tfds.core.BuilderConfig):
    width: int = 0
    completion_len: int = 0
    examples: Optional[Callable[[], Any]] = None   # only when building

  class PreferencePairs(tfds.core.GeneratorBasedBuilder):
    """Offline preference pairs; see training/preference_data.py."""
    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = RELEASE_NOTES

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:   # as in data/regbench_tfds.py
      return epath.Path(__file__)

    def _info(self):
      c = self.builder_config
      return tfds.core.DatasetInfo(
          builder=self, description='Prompts with two reference completions each.',
          features=tfds.features.FeaturesDict({
              'index': np.int32,
              'prompt_tokens': tfds.features.Tensor(shape=(c.width,), dtype=np.int32),
              'prompt_len': np.int32,
              'dfa_id': np.int32,
              'completions': tfds.features.Tensor(shape=(2, c.completion_len), dtype=np.int32),
              'rewards': tfds.features.Tensor(shape=(2,), dtype=np.float32),
          }))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      yield from self.builder_config.examples()

  return tfds, PairsConfig, PreferencePairs


def _builder(task, cfg, data_dir: str, examples=None):
  tfds, PairsConfig, PreferencePairs = _tfds()
  config = PairsConfig(name=dataset_name(task, cfg), version=VERSION,
                       width=task.prefix_width(cfg), completion_len=cfg['completion_len'],
                       examples=examples)
  return tfds, PreferencePairs(config=config, data_dir=data_dir, file_format='array_record')


def params_digest(params) -> str:
  import jax
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return digest.hexdigest()[:16]


def sample_dataset(setup, reference, cfg, log=print) -> Dict[str, np.ndarray]:
  """Every prompt of the offline set with two completions of `reference`, and the judge's
  rewards, as numpy arrays (N rows)."""
  import jax
  import jax.numpy as jnp
  from tqdm import tqdm
  from training.preference import sample_pair
  task = setup.task

  @jax.jit
  def chunk(index_B, key):
    prompts = task.offline_prompts(index_B, cfg)
    _, comps, masks = sample_pair(reference, task, prompts, key, cfg)
    rewards = jnp.stack([task.judge(prompts, comps[i], masks[i], cfg) for i in range(2)])
    return dict(prompt_tokens=prompts['tokens_BxW'], prompt_len=prompts['prompt_len_B'],
                dfa_id=prompts['dfa_id_B'], completions=jnp.moveaxis(comps, 0, 1),
                rewards=rewards.T)

  total = cfg['num_offline_prompts']
  parts = []
  for number, start in enumerate(tqdm(range(0, total, CHUNK), desc='sampling pairs',
                                      disable=total <= CHUNK)):
    index = jnp.arange(start, start + CHUNK, dtype=jnp.int32)   # one shape: one compilation
    key = jax.random.fold_in(jax.random.key(SAMPLING_SEED), number)
    parts.append(jax.device_get(chunk(index, key)))
  return {k: np.concatenate([p[k] for p in parts])[:total] for k in parts[0]}


def build(config, log=print) -> str:
  """Samples and writes the offline dataset of `config` (a preference or sft config with
  train.init_from); returns its directory. An existing dataset of the same settings is kept."""
  import jax
  from flax import nnx
  from training.init_from import load_init_params, parse_init_from
  from training.setup import make_setup
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.objective.mode = 'on_policy'    # the dataset is what offline runs read
  setup = make_setup(config, jax.devices()[:1])
  cfg = setup.loss.settings
  source_dir, _ = parse_init_from(str(config.train.init_from))
  data_dir = str(config.objective.get('offline_data', '') or
                 os.path.join(source_dir, 'preference_pairs'))
  init = load_init_params(setup, log=log)
  params = init.frozen if init.frozen_shared else jax.tree.map(lambda x: x[0], init.frozen)
  graphdef, _, rest = nnx.split(setup.model, nnx.Param, ...)
  reference = nnx.merge(graphdef, params, rest)
  arrays = {}

  def examples():
    for i in range(arrays['dfa_id'].shape[0]):
      yield i, {'index': i, **{k: v[i] for k, v in arrays.items()}}

  tfds, builder = _builder(setup.task, cfg, data_dir, examples)
  directory = str(builder.data_dir)
  if builder.is_prepared():
    log(f'offline dataset already built: {directory}')
    return data_dir
  arrays.update(sample_dataset(setup, reference, cfg, log=log))
  tfds.display_progress_bar(False)
  builder.download_and_prepare()
  accepted = np.asarray(jax.device_get(setup.task.judge_accepts(arrays['rewards'].reshape(-1),
                                                                cfg)))
  settings = dict(name=dataset_name(setup.task, cfg), version=VERSION,
                  reference=init.source, reference_step=init.step,
                  reference_digest=params_digest(params), judge=cfg['judge'],
                  accept_rate=float(np.mean(accepted)),
                  num_prompts=int(cfg['num_offline_prompts']),
                  completion_len=int(cfg['completion_len']),
                  prefix_strings=int(cfg['prefix_strings']),
                  temperature=float(cfg['temperature']))
  with open(os.path.join(directory, 'settings.json'), 'w') as f:
    json.dump(settings, f, indent=1)
  log(f'wrote {directory}: {settings["num_prompts"]} prompts x 2 completions from '
      f'{init.source} (step {init.step}); {cfg["judge"]} judge accepts '
      f'{settings["accept_rate"]:.1%}')
  return data_dir


def load(task, cfg) -> Dict[str, np.ndarray]:
  """The dataset under `cfg['offline_data']` for these settings, sorted by index; ConfigError
  (naming the build command) when it is not there."""
  data_dir = cfg['offline_data']
  if not data_dir:
    raise ConfigError("config.objective.mode='offline' needs config.objective.offline_data=DIR: "
                      'build the dataset with python -m training.preference_data --config ... '
                      '--config.train.init_from=RUN')
  if not os.path.isdir(data_dir):
    raise ConfigError(f'config.objective.offline_data={data_dir!r} is invalid: not a directory '
                      f'(build it with python -m training.preference_data)')
  _, builder = _builder(task, cfg, data_dir)
  if not builder.is_prepared():
    raise ConfigError(f'config.objective.offline_data={data_dir!r} is invalid: it holds no '
                      f'dataset {dataset_name(task, cfg)!r} (build it with python -m '
                      f'training.preference_data and the same task and objective settings)')
  source = builder.as_data_source()['train']
  rows = sorted((source[i] for i in range(len(source))), key=lambda ex: int(ex['index']))
  return {k: np.stack([np.asarray(r[k]) for r in rows])
          for k in ('prompt_tokens', 'prompt_len', 'dfa_id', 'completions', 'rewards')}


def load_for_training(task, cfg):
  """`load` as device arrays with the shape-suffixed names the objective indexes."""
  import jax.numpy as jnp
  arrays = load(task, cfg)
  return {'prompt_tokens_NxW': jnp.asarray(arrays['prompt_tokens']),
          'prompt_len_N': jnp.asarray(arrays['prompt_len']),
          'dfa_id_N': jnp.asarray(arrays['dfa_id']),
          'completions_Nx2xC': jnp.asarray(arrays['completions'])}


def main(argv):
  from cli import fail, load_config_flag, setup_jax
  from training.workdir import WorkdirError
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; flags look like --config.objective.key=value')
  config = load_config_flag(_CONFIG)
  setup_jax(config)
  try:
    build(config)
  except (ConfigError, WorkdirError) as e:
    fail(str(e))


if __name__ == '__main__':
  from absl import app
  from ml_collections import config_flags
  from cli import parse_flags
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:variant].',
                                            lock_config=True)
  app.run(main, flags_parser=parse_flags)
