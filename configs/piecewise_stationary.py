r"""Piecewise-stationary sequences with the exact Bayes predictor as the reference (Genewein et
al. 2023, "Memory-Based Meta-Learning on Non-Stationary Distributions"; data/piecewise.py).

  python train.py --config configs/piecewise_stationary.py:tiny --workdir runs/piecewise_tiny
  python eval.py --workdir runs/piecewise_tiny --suite all
  python train.py --config configs/piecewise_stationary.py:ptw,tiny --workdir runs/pw_ptw

The argument is '[switch,]variant': switch hazard (constant switch probability), lin
(Willems' switch prior, probability 1/(2r) after the r-th symbol of a segment) or ptw (the
Partition Tree Weighting prior, Genewein et al.'s main distribution); variant tiny (3 layers /
64 wide / 2 heads; 64 binary symbols, hazard 1/20 by default, 2,000 steps of batch 64:
minutes on a 2-core CPU), small (6/128/4; 128 symbols, hazard 1/50) or standard (12/256/8;
Genewein et al.'s source: 256 binary symbols, PTW switches by default, Dirichlet(1/2)
segments; their repository's training defaults: batch 128, lr 1e-4, gradient clipping 1,
100k steps). Task options (`--config.task.<key>=...`): alphabet_size (2 = Bernoulli), switch,
hazard, concentration, seq_len.
"""
from configs.common import base_config, parse_variant
from core import ConfigError

SWITCHES = ('hazard', 'lin', 'ptw')
TASK = 'piecewise_stationary'


def parse_arg(arg):
  """'tiny' | 'lin' | 'lin,tiny' -> (switch or None for the variant's default, variant)."""
  parts = [p.strip() for p in (arg or '').split(',') if p.strip()]
  switch = None
  if parts and parts[0] in SWITCHES:
    switch = parts.pop(0)
  if len(parts) > 1:
    raise ConfigError(f'config argument {arg!r} is invalid: expected [switch,]variant with '
                      f'switch one of {", ".join(SWITCHES)}')
  return switch, parse_variant(parts[0] if parts else None)


def get_config(arg=None):
  switch, variant = parse_arg(arg)
  task = {
      'tiny': dict(alphabet_size=2, seq_len=64, switch='hazard', hazard=0.05,
                   concentration=0.5),
      'small': dict(alphabet_size=2, seq_len=128, switch='hazard', hazard=0.02,
                    concentration=0.5),
      'standard': dict(alphabet_size=2, seq_len=256, switch='ptw', hazard=0.01,
                       concentration=0.5),
  }[variant]
  task['switch'] = switch or task['switch']
  train = {
      'tiny': dict(num_steps=2000, batch_size=64, learning_rate=1e-3, warmup_steps=100,
                   checkpoint_every=500, steps_per_call=10),
      'small': dict(num_steps=20_000, batch_size=64, learning_rate=5e-4, warmup_steps=500,
                    checkpoint_every=1000),
      'standard': dict(num_steps=100_000, batch_size=128, learning_rate=1e-4,
                       warmup_steps=1000, schedule='constant', grad_clip_norm=1.0,
                       checkpoint_every=2000, steps_per_call=5),
  }[variant]
  config = base_config(TASK, variant, task_overrides=task, train_overrides=train)
  config.eval.num_prompts = 1280
  return config
