"""Shared config builder: every config file is `get_config(variant)` over this one.

Sizes follow Garg et al. (2022): tiny = 3 layers / 64 wide / 2 heads, small = 6 / 128 / 4,
standard = 12 / 256 / 8.
"""
from __future__ import annotations

import ml_collections

from core import ConfigError
from data.base import TASKS

SIZES = {
    'tiny': dict(num_layers=3, d_model=64, num_heads=2),
    'small': dict(num_layers=6, d_model=128, num_heads=4),
    'standard': dict(num_layers=12, d_model=256, num_heads=8),
}


def parse_variant(arg) -> str:
  variant = (arg or 'tiny').strip()
  if variant not in SIZES:
    raise ConfigError(f'config variant {variant!r} is invalid: allowed {", ".join(SIZES)}')
  return variant


def model_config(variant: str) -> ml_collections.ConfigDict:
  from models.model import default_mixer_options  # imports the mixer registry
  return ml_collections.ConfigDict(dict(
      **SIZES[variant],
      mixer='attention',        # a registered name, or a per-layer pattern 'attention,mamba'
      mlp='gelu',               # gelu | swiglu | none (attention-only models)
      mlp_ratio=4.0,
      norm='layernorm',         # layernorm | rmsnorm
      norm_position='pre',      # pre | post
      position='learned',       # learned | rope | alibi | none
      dtype='float32',          # compute dtype: float32 | bfloat16 (params stay float32)
      max_len=0,                # context length; 0 = exactly what the task needs
      mixer_options=default_mixer_options(),
  ))


def train_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      seed=0,
      num_seeds=1,              # independent models trained at once in one compiled step
      seed_batch=0,             # seeds vmapped together; the rest looped (0: auto, CPU 1, else all)
      seed_values='',           # per-seed values: 'train.learning_rate=1e-3,3e-3;task.noise_std=0,1'
      init_from='',             # DIR[:STEP]: start from another run's parameters
      num_steps=2000,
      batch_size=64,
      learning_rate=1e-3,
      warmup_steps=100,
      schedule='cosine',        # cosine | constant
      final_lr_fraction=0.1,
      weight_decay=0.0,
      adam_b1=0.9,
      adam_b2=0.999,
      grad_clip_norm=1.0,       # 0 disables clipping
      steps_per_call=10,        # train steps fused into one compiled call (lax.scan)
      forget_every=0,           # weight forgetting: re-draw forget_modules every N steps (0: off)
      forget_modules='read_in',  # comma list of top-level modules (read_in: the embeddings)
      log_every=50,
      checkpoint_every=500,
      keep_checkpoints=3,
      keep_log_checkpoints=8,   # also keep checkpoints at this many log-spaced steps
      progress=True,
      distributed=False,        # call jax.distributed.initialize() (multi-host runs)
  ))


def eval_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      every=0,                  # evaluate during training every N steps (0: off)
      num_log_evals=12,         # ... and at this many log-spaced steps (0: off)
      train_prompts=256,        # prompts of each evaluation during training
      train_suites='',          # full suites (with baselines) also run at those steps: 'a,b'
      num_prompts=1280,
      batch_size=256,
      seed=12345,
      suite='',                 # default suite of the task family
      temperature=1.0,          # generation (token tasks): 0 = greedy
      top_k=0,                  # 0 = sample from every token
      num_prefix_strings=5,     # generation starts after this many strings of the prompt
      num_generated_strings=5,  # strings sampled per prompt
      ngram_delta=0.0,          # add-delta smoothing of the n-gram baselines
  ))


def base_config(task_name: str, variant: str, task_overrides=None,
                train_overrides=None, model_overrides=None) -> ml_collections.ConfigDict:
  """Full config: task defaults (from the task class), model size, training and eval."""
  task = dict(TASKS[task_name].default_config())
  task['name'] = task_name
  task.update(task_overrides or {})
  config = ml_collections.ConfigDict()
  config.task = ml_collections.ConfigDict(task)
  config.objective = ml_collections.ConfigDict(dict(name=TASKS[task_name].default_objective))
  config.model = model_config(variant)
  config.model.update(model_overrides or {})
  config.train = train_config()
  config.train.update(train_overrides or {})
  config.eval = eval_config()
  if TASKS[task_name].eval_family == 'regression':
    # Options of the classical baselines (baselines/regression.py `get_baselines`), e.g.
    # --config.eval.baselines.knn.k=5; validated by `validate_baselines_config`.
    from baselines.regression import default_baselines_config
    config.eval.baselines = default_baselines_config()
  # The size variant is chosen by the config file argument (`FILE.py:small`), not a key: a
  # `--config.variant=...` override would otherwise change nothing silently.
  return config
