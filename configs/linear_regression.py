r"""In-context linear regression (Garg et al. 2022).

  python train.py --config configs/linear_regression.py:tiny --workdir runs/linreg_tiny
  python eval.py --workdir runs/linreg_tiny

Variants: tiny (3 layers / 64 wide / 2 heads, d=8, 16 points, 2,000 steps; a few minutes on
a 2-core CPU), small (6/128/4) and standard (12/256/8: Garg's d=20, 41 points, batch 64,
lr 1e-4, 500k steps with the dimension / points curriculum).
"""
from configs.common import base_config, parse_variant

TASK = 'linear_regression'


def regression_config(task_name, arg, extra_task=None):
  variant = parse_variant(arg)
  if variant == 'standard':
    task = dict(n_dims=20, n_points=41, curriculum=True)
    train = dict(num_steps=500_000, learning_rate=1e-4, warmup_steps=1000, schedule='constant',
                 batch_size=64, log_every=100, checkpoint_every=2000, steps_per_call=10)
  elif variant == 'small':
    task = dict(n_dims=10, n_points=21)
    train = dict(num_steps=20_000, learning_rate=3e-4, warmup_steps=500, checkpoint_every=1000)
  else:
    task = dict(n_dims=8, n_points=16)
    train = dict(num_steps=2000, learning_rate=1e-3, warmup_steps=100, checkpoint_every=500)
  task.update(extra_task or {})
  return base_config(task_name, variant, task_overrides=task, train_overrides=train)


def get_config(arg=None):
  return regression_config(TASK, arg)
