r"""Preferring in-context answers: DPO from an in-weights bursty-classification model toward the
label the context gives (training/context_preference.py).

  python train.py --config configs/bursty_classification.py:tiny --workdir runs/bursty_iw \
      --config.task.p_bursty=0.0 --config.task.num_classes=256 --config.train.num_steps=2500
  python train.py --config configs/context_preference.py:tiny --workdir runs/context_dpo \
      --config.train.init_from=runs/bursty_iw [--config.objective.beta=0.03 ...]

The pretrained model saw no bursty prompts, so it answers from its weights. Each step draws
label-permuted prompts of training classes; the judge prefers the in-context label over the
memorised one. The scheduled evaluation reports how often the greedy answer is the in-context
or the in-weights label, the exact KL(policy || reference) at the query, and the task's
in-context (novel classes) and in-weights accuracies. The task and model sections must match
the pretrained run's (here: p_bursty 0, 256 classes).
"""
import ml_collections

from configs.common import parse_variant
from training.context_preference import DEFAULTS


def get_config(arg=None):
  from configs.bursty_classification import get_config as bursty_config
  variant = parse_variant(arg)
  config = bursty_config(variant)
  config.task.p_bursty = 0.0
  config.task.num_classes = 256
  config.objective = ml_collections.ConfigDict({'name': 'context_preference', **DEFAULTS})
  config.train.update(dict(num_steps=300, batch_size=64, learning_rate=1e-4, warmup_steps=20,
                           schedule='constant', steps_per_call=10, checkpoint_every=50,
                           log_every=10, keep_log_checkpoints=4))
  config.eval.num_log_evals = 0
  config.eval.every = 30
  return config
