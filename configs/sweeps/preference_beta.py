r"""The reward-KL frontier: DPO and IPO at four values of beta from one pretrained REGBENCH
model (beta 0.1 is in preference_zoo, with every other objective).

  python sweep.py --sweep configs/sweeps/preference_zoo.py --workdir runs/preference_zoo
  python sweep.py --sweep configs/sweeps/preference_beta.py --workdir runs/preference_beta
  python -m studies.preference_frontier --zoo runs/preference_zoo \
      --beta runs/preference_beta --out runs/preference_frontier

Same settings as configs/sweeps/preference_zoo.py (200 steps of batch 32, the 'valid' judge,
scheduled evaluations every 40 steps); the frontier study plots judge score against KL, one
curve per objective.
"""

# As in configs/sweeps/preference_zoo.py.
OVERRIDES = {'train.init_from': 'runs/regbench_tiny', 'train.num_steps': 200,
             'train.progress': False, 'eval.num_log_evals': 0, 'eval.every': 40,
             'objective.offline_data': 'runs/regbench_tiny/preference_pairs'}
LOSS_TYPES = ('sigmoid', 'ipo')
BETAS = (0.03, 0.3, 1.0)


def get_sweep():
  members = [{'name': f'{loss}_beta{beta:g}', 'objective.loss_type': loss,
              'objective.beta': beta} for loss in LOSS_TYPES for beta in BETAS]
  return {
      'config': 'configs/preference_regbench.py:tiny',
      'overrides': OVERRIDES,
      'members': members,
      'evaluate': False,
      'table': 'preference',
  }
