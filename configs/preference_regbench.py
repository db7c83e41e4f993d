r"""Preference fine-tuning of a pretrained REGBENCH model; the automaton is the judge.

  python train.py --config configs/regbench.py:tiny --workdir runs/regbench_tiny
  python train.py --config configs/preference_regbench.py:tiny --workdir runs/dpo \
      --config.train.init_from=runs/regbench_tiny [--config.objective.loss_type=ipo ...]

  python -m training.preference_data --config configs/preference_regbench.py:tiny \
      --config.train.init_from=runs/regbench_tiny                # offline pairs, once
  python train.py --config configs/preference_regbench.py:tiny --workdir runs/dpo_offline \
      --config.train.init_from=runs/regbench_tiny --config.objective.mode=offline \
      --config.objective.offline_data=runs/regbench_tiny/preference_pairs
  python train.py --config configs/preference_regbench.py:tiny --workdir runs/sft \
      --config.train.init_from=runs/regbench_tiny --config.objective.name=sft   # then DPO
                                                     # with --config.train.init_from=runs/sft

Each step samples two completions (a new string after the first 5 strings of a prompt) per
prompt from the current policy (on-policy; `objective.mode=offline`: reads them from the
frozen dataset of reference samples), judges them by the automaton (`objective.judge`: valid
(default; needs `min_completion_len` symbols for the best score) | whole | likelihood | accept
| length), and applies `objective.loss_type` (DPO's `sigmoid` by default; see
training/preference_losses.py). `objective.name=sft` trains on the judge-accepted completions
instead. The model section must match the pretrained run's.
"""
import ml_collections

from configs.common import parse_variant
from training.preference import DEFAULTS


def get_config(arg=None):
  from configs.regbench import get_config as regbench_config
  variant = parse_variant(arg)
  config = regbench_config(variant)
  # Every key of both objectives, so that --config.objective.name=sft needs no other change;
  # the sft objective refuses loss-only keys set away from their defaults.
  config.objective = ml_collections.ConfigDict({'name': 'preference', **DEFAULTS})
  config.train.update(dict(num_steps=300, batch_size=32, learning_rate=1e-4, warmup_steps=20,
                           schedule='constant', steps_per_call=5, checkpoint_every=50,
                           log_every=10, keep_log_checkpoints=4))
  config.eval.num_log_evals = 6
  config.eval.train_prompts = 128
  return config
