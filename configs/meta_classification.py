r"""Kirsch et al. (2022): a classification task family whose number of distinct tasks is swept.

  python train.py --config configs/meta_classification.py:tiny --workdir runs/meta_tiny \
      --config.task.num_tasks=64
  python eval.py --workdir runs/meta_tiny --suite all

Each task projects synthetic Gaussian-cluster items with its own random matrix and permutes
the labels (data/meta_classification.py). `task.num_tasks` = M: few tasks are memorised (good
on the training tasks, chance on new ones: the `in_context` suite), many are learned in
context (new tasks as good as training ones). 0 = a fresh task for every prompt.

Variants: tiny (3 layers / 64 wide, D = 32, L = 10, 16 examples, 3,000 steps of batch 64),
small (6/128/4, 10,000 steps) and standard (12/256/8; Kirsch's 100-example prompts are
replaced by 32 examples, 50,000 steps).
"""
from configs.common import base_config, parse_variant

TASK = 'meta_classification'


def get_config(arg=None):
  variant = parse_variant(arg)
  if variant == 'tiny':
    task = dict(num_context=16, n_dims=32, num_labels=10)
    train = dict(num_steps=3000, batch_size=64, learning_rate=1e-3, warmup_steps=100)
  elif variant == 'small':
    task = dict(num_context=16, n_dims=32, num_labels=10)
    train = dict(num_steps=10_000, batch_size=128, learning_rate=5e-4, warmup_steps=500,
                 checkpoint_every=1000)
  else:
    task = dict(num_context=32, n_dims=64, num_labels=10)
    train = dict(num_steps=50_000, batch_size=128, learning_rate=2.5e-4, warmup_steps=1000,
                 checkpoint_every=2000)
  config = base_config(TASK, variant, task_overrides=task, train_overrides=train)
  config.eval.num_prompts = 1024
  return config
