r"""In-context learning of Boolean functions (Bhattamishra et al., ICLR 2024).

  python train.py --config configs/boolean_functions.py:tiny --workdir runs/bool_conj \
      --config.task.function=conjunction
  python eval.py --workdir runs/bool_conj

`task.function` picks the class: conjunction | disjunction | sparse_parity | majority |
threshold | halfspace (data/boolean.py). Labels are +-1 and the objective is squared error at
every x position (the sign of the read-out is the prediction; `--config.objective.name=
logistic_bce` trains the read-out as log-odds with binary cross-entropy instead); `eval.py`
reports accuracy at every number of in-context examples against the exact Bayes predictor
(where the class is small enough to enumerate), elimination / GF(2) elimination, nearest
neighbour, averaging and the majority label (baselines/boolean.py).

Variants: tiny (3 layers / 64 wide / 2 heads, n = 10, 40 examples, 3,000 steps of batch 64;
the reported runs were evaluated at step 1,500, reached in about 55 minutes on the shared
2-core CPU while up to 30 other processes ran), small (6/128/4, n = 20, 50 examples) and
standard (12/256/8, the paper's n = 28 and 70 examples; learning rate 1e-4 as the authors'
code).
"""
from configs.common import base_config, parse_variant

TASK = 'boolean_functions'


def get_config(arg=None):
  variant = parse_variant(arg)
  if variant == 'standard':
    task = dict(n_dims=28, n_points=70)
    train = dict(num_steps=50_000, learning_rate=1e-4, warmup_steps=1000, batch_size=64,
                 checkpoint_every=2000)
  elif variant == 'small':
    task = dict(n_dims=20, n_points=50)
    train = dict(num_steps=20_000, learning_rate=3e-4, warmup_steps=500, checkpoint_every=1000)
  else:
    task = dict(n_dims=10, n_points=40)
    train = dict(num_steps=3000, learning_rate=1e-3, warmup_steps=100, checkpoint_every=500)
  return base_config(TASK, variant, task_overrides=task, train_overrides=train)
