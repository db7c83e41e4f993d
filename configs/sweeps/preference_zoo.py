r"""Every preference objective on one pretrained REGBENCH model, at a fixed budget.

  python train.py --config configs/regbench.py:tiny --workdir runs/regbench_tiny
  python -m training.preference_data --config configs/preference_regbench.py:tiny \
      --config.train.init_from=runs/regbench_tiny        # the offline pairs (once, ~1 min)
  python sweep.py --sweep configs/sweeps/preference_zoo.py --workdir runs/preference_zoo

Each member starts from runs/regbench_tiny (its parameters, and the frozen reference) and
trains 200 steps of batch 32 with one objective at beta 0.1. On-policy members sample two
completions per prompt (a new string after 5 strings) from the current policy every step;
`*_offline` members read B rows of the frozen dataset of 2,048 prompts with two reference
completions each. The default judge ('valid') scores a new string by its validity under the
prompt's automaton and needs at least 6 symbols for the best score. `sft_*` is filtered SFT on
the judge-accepted completions (no negative gradient). The table and plot read the scheduled
evaluations (every 40 steps): judge score, win rate against the reference, KL(policy ||
reference), completion length, and the in-context metrics before and after.
"""

# Nine of the fourteen loss types (each run takes a few minutes on 2 CPU cores); the others
# (bco_pair, nca_pair, sppo_hard, apo_down, exo_pair) are one --config.objective.loss_type away.
LOSS_TYPES = ('sigmoid', 'robust', 'hinge', 'ipo', 'apo_zero', 'simpo', 'orpo', 'kto', 'npo')
OFFLINE_DATA = 'runs/regbench_tiny/preference_pairs'
OVERRIDES = {'train.init_from': 'runs/regbench_tiny', 'train.num_steps': 200,
             'train.progress': False, 'eval.num_log_evals': 0, 'eval.every': 40,
             'objective.offline_data': OFFLINE_DATA}


def get_sweep():
  # Tajwar et al.'s 2x2 (on-policy / offline, with / without a negative gradient) first.
  members = [{'name': 'sigmoid', 'objective.loss_type': 'sigmoid'},
             {'name': 'sigmoid_offline', 'objective.loss_type': 'sigmoid',
              'objective.mode': 'offline'},
             {'name': 'sft_on_policy', 'objective.name': 'sft'},
             {'name': 'sft_offline', 'objective.name': 'sft', 'objective.mode': 'offline'}]
  members += [{'name': loss, 'objective.loss_type': loss} for loss in LOSS_TYPES
              if loss != 'sigmoid']
  return {
      'config': 'configs/preference_regbench.py:tiny',
      'overrides': OVERRIDES,
      'members': members,
      'evaluate': False,
      'table': 'preference',
  }
