r"""In-context regression on a mixture of function classes (Panwar et al. 2024, "In-Context
Learning through the Bayesian Prism"): dense and k-sparse linear weights, 0.5 / 0.5.

  python train.py --config configs/mixture_regression.py:tiny --workdir runs/mixture_tiny
  python eval.py --workdir runs/mixture_tiny        # model vs the exact Bayes predictor ('bayes')
  python -m studies.bayesian_prism --out runs/repro/bayesian_prism

Variants: tiny (3 layers / 64 wide / 2 heads, d=8, k=2, 16 points, noise 0.1, 6,000 steps
with a compressed dimension curriculum; a few minutes on a 2-core CPU), small (6/128/4, d=10, k=3, 21
points) and standard (12/256/8, d=20, k=3, 41 points with Garg's curriculum: Garg et al.'s
sizes, on which Panwar et al. build). The Bayes predictor enumerates all C(d, k) supports (28
at tiny, 1,140 at standard).
"""
from configs.common import base_config, parse_variant

TASK = 'mixture_regression'


def get_config(arg=None):
  variant = parse_variant(arg)
  if variant == 'standard':
    task = dict(n_dims=20, n_points=41, sparsity=3, curriculum=True)
    train = dict(num_steps=500_000, learning_rate=1e-4, warmup_steps=1000, schedule='constant',
                 batch_size=64, log_every=100, checkpoint_every=2000, steps_per_call=10)
  elif variant == 'small':
    task = dict(n_dims=10, n_points=21, sparsity=3)
    train = dict(num_steps=20_000, learning_rate=3e-4, warmup_steps=500, checkpoint_every=1000)
  else:
    # Garg's dimension curriculum, compressed: dims 2 -> 8 by step 1,500, all 16 points from
    # the start. Without it the tiny model stayed on the plateau (error ~0.95 of predicting 0)
    # for 4,000 steps; with the points curriculum too (5 -> 16) it learned to use only the
    # first ~4 examples (error flat at ~0.53 after 12,000 steps).
    task = dict(n_dims=8, n_points=16, sparsity=2, curriculum=True, dims_start=2,
                dims_interval=250, points_start=16, points_interval=250)
    train = dict(num_steps=6000, learning_rate=1e-3, warmup_steps=100, checkpoint_every=1000)
  return base_config(TASK, variant, task_overrides=task, train_overrides=train)
