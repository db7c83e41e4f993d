r"""Token recall: associative recall, multi-query associative recall (Zoology's MQAR) and the
copy / induction task (data/recall.py). Objective: next-token loss at the answers only.

  python train.py --config configs/associative_recall.py:tiny --workdir runs/ar_tiny
  python train.py --config configs/associative_recall.py:mqar,tiny --workdir runs/mqar_tiny
  python train.py --config configs/associative_recall.py:induction_copy,tiny --workdir runs/copy
  python eval.py --workdir runs/mqar_tiny --suite all

The argument is '[task,]variant': task one of associative_recall (default), mqar,
induction_copy; variant tiny (3 layers / 64 wide / 2 heads, minutes on a 2-core CPU), small
(6/128/4) or standard (12/256/8).
"""
from configs.common import base_config, parse_variant
from core import ConfigError

TASKS = ('associative_recall', 'mqar', 'induction_copy')

# Task settings by variant: larger vocabularies and more pairs / longer copies as models grow.
SETTINGS = {
    'associative_recall': {
        'tiny': dict(num_keys=32, num_values=32, num_pairs=8, num_queries=1),
        'small': dict(num_keys=128, num_values=128, num_pairs=16, num_queries=1),
        'standard': dict(num_keys=512, num_values=512, num_pairs=32, num_queries=1),
    },
    'mqar': {
        'tiny': dict(num_keys=64, num_values=64, num_pairs=8, num_queries=8),
        'small': dict(num_keys=256, num_values=256, num_pairs=16, num_queries=16),
        'standard': dict(num_keys=4096, num_values=4096, num_pairs=64, num_queries=64),
    },
    'induction_copy': {
        'tiny': dict(num_symbols=32, copy_len=16),
        'small': dict(num_symbols=64, copy_len=32),
        'standard': dict(num_symbols=256, copy_len=128),
    },
}


def parse_arg(arg):
  """'tiny' | 'mqar' | 'mqar,tiny' -> (task, variant)."""
  parts = [p.strip() for p in (arg or '').split(',') if p.strip()]
  task = TASKS[0]
  if parts and parts[0] in TASKS:
    task = parts.pop(0)
  if len(parts) > 1:
    raise ConfigError(f'config argument {arg!r} is invalid: expected [task,]variant with task '
                      f'one of {", ".join(TASKS)}')
  return task, parse_variant(parts[0] if parts else None)


def get_config(arg=None):
  task, variant = parse_arg(arg)
  train = {
      'tiny': dict(num_steps=2000, batch_size=64, learning_rate=1e-3, warmup_steps=100,
                   checkpoint_every=500, steps_per_call=10),
      'small': dict(num_steps=20_000, batch_size=64, learning_rate=5e-4, warmup_steps=500,
                    checkpoint_every=1000),
      'standard': dict(num_steps=100_000, batch_size=64, learning_rate=2.5e-4,
                       warmup_steps=1000, checkpoint_every=2000),
  }[variant]
  config = base_config(task, variant, task_overrides=SETTINGS[task][variant],
                       train_overrides=train)
  config.eval.num_prompts = 2048
  return config
