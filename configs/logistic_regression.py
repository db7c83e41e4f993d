r"""In-context logistic regression and linear classification (Bhatia et al. 2023, TART).

  python train.py --config configs/logistic_regression.py:tiny --workdir runs/logreg_tiny
  python eval.py --workdir runs/logreg_tiny --suite all
  # noiseless linear classification, y = 1[w·x > 0] (label flips: --config.task.flip_prob=0.1)
  python train.py --config configs/logistic_regression.py:tiny --workdir runs/linclass_tiny \
      --config.task.label_model=linear_classification

The objective is 'logistic_bce' (binary cross-entropy of the read-out logit at every x
position, as TART trains its reasoning module). Labels are written as 0 / 1 as in TART
(`task.label_values=zero_one`) in small and standard, as -1 / +1 in tiny.

Variants: tiny (3 layers / 64 wide / 2 heads, d = 8, 32 points, weight scale 10, -1 / +1 labels,
curriculum finished by step 750, 3,000 steps of batch 64; accuracy after 31 examples 0.84 on
both tasks against 0.90 for logistic regression fitted on the prompt; 30 minutes on the shared
2-core CPU under heavy load, 1,280-prompt evaluation 4 minutes), small (6/128/4, d = 16, 34 points, 20,000 steps) and standard
(TART's reasoning module: GPT-2 12/256/8, d = 16, 66 points, weight scale 10, batch 128,
constant learning rate 1e-4, 20,001 steps, curriculum on dims 4 -> 16 (+4 every 1,000 steps)
and points 18 -> 66 (+8 every 1,000 steps); their conf/probabilistic_logistic_regression.yaml).
"""
from configs.common import base_config, parse_variant

TASK = 'logistic_regression'


def get_config(arg=None):
  variant = parse_variant(arg)
  if variant == 'standard':
    task = dict(n_dims=16, n_points=66, weight_scale=10.0, curriculum=True, dims_start=4,
                dims_inc=4, dims_interval=1000, points_start=18, points_inc=8,
                points_interval=1000)
    train = dict(num_steps=20_001, batch_size=128, learning_rate=1e-4, warmup_steps=0,
                 schedule='constant', grad_clip_norm=0.0, log_every=100,
                 checkpoint_every=1000)
  elif variant == 'small':
    task = dict(n_dims=16, n_points=34, weight_scale=10.0)
    train = dict(num_steps=20_000, batch_size=64, learning_rate=3e-4, warmup_steps=500,
                 checkpoint_every=1000)
  else:
    # Labels written as -1 / +1 and a short curriculum (dims 2 -> 8, points 8 -> 32, done by
    # step 750): with 0 / 1 labels and no curriculum the loss stayed at log 2 (chance) for the
    # first 1,000 steps on this CPU.
    task = dict(n_dims=8, n_points=32, weight_scale=10.0, label_values='plus_minus',
                curriculum=True, dims_start=2, dims_inc=2, dims_interval=250, points_start=8,
                points_inc=8, points_interval=250)
    train = dict(num_steps=3000, batch_size=64, learning_rate=1e-3, warmup_steps=100,
                 checkpoint_every=500)
  return base_config(TASK, variant, task_overrides=task, train_overrides=train)
