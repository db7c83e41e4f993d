r"""Bursty in-context classification (Chan et al. 2022; Reddy 2023), synthetic Gaussian classes.

  python train.py --config configs/bursty_classification.py:tiny --workdir runs/bursty_tiny
  python eval.py --workdir runs/bursty_tiny --suite all

The objective is 'classification_ce' (cross-entropy of the label at the query;
data/classification.py `classification_loss`).

Variants: tiny (3 layers / 64 wide / 2 heads; 4,096 classes, 32 labels, 8 context pairs of
31-dimensional items, B = 4, 90% bursty prompts; 3,000 steps of batch 64: minutes on a 2-core
CPU), small (6/128/4, Reddy's D = 63, 1,024 classes) and standard (12/256/8, Reddy's settings
with K = 2^11 classes). Chan's and Reddy's ablations are config keys: task.burstiness,
task.p_bursty, task.zipf_alpha, task.epsilon, task.num_classes, task.permute_labels (several of
them per seed: --config.train.seed_values='task.p_bursty=0,0.5,0.9,1').

Observed on a 2-core CPU (tiny, 3,000 steps): with 4,096 classes the model learns in context
(novel-class accuracy ~0.48, loss ~0.85 ≈ log 2: it picks among the context's two labels, the
plateau before matching items to labels) and not in weights (in_weights at chance); with
--config.task.num_classes=256 it learns in weights (in_weights 0.998) and not in context
(novel classes 0.07), Chan et al.'s and Reddy's trade-off.
"""
from configs.common import base_config, parse_variant

TASK = 'bursty_classification'


def get_config(arg=None):
  variant = parse_variant(arg)
  if variant == 'tiny':
    task = dict(num_classes=4096, num_labels=32, num_context=8, n_dims=31, burstiness=4,
                p_bursty=0.9, epsilon=0.1, zipf_alpha=0.0, num_novel_classes=64)
    train = dict(num_steps=3000, batch_size=64, learning_rate=1e-3, warmup_steps=100,
                 checkpoint_every=500, steps_per_call=10)
  elif variant == 'small':
    task = dict(num_classes=1024, num_labels=32, num_context=8, n_dims=63, burstiness=4,
                p_bursty=0.9, epsilon=0.1, zipf_alpha=0.0, num_novel_classes=256)
    train = dict(num_steps=20_000, batch_size=128, learning_rate=5e-4, warmup_steps=500,
                 checkpoint_every=1000)
  else:
    task = dict(num_classes=2048, num_labels=32, num_context=8, n_dims=63, burstiness=4,
                p_bursty=0.9, epsilon=0.1, zipf_alpha=0.0, num_novel_classes=512)
    train = dict(num_steps=100_000, batch_size=128, learning_rate=2.5e-4, warmup_steps=1000,
                 checkpoint_every=2000)
  config = base_config(TASK, variant, task_overrides=task, train_overrides=train)
  config.eval.num_prompts = 2048
  return config
