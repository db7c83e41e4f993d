r"""Every preference objective on one pretrained REGBENCH model, at a fixed budget.

  python train.py --config configs/regbench.py:tiny --workdir runs/regbench_tiny
  python sweep.py --sweep configs/sweeps/preference_zoo.py --workdir runs/preference_zoo

Each member starts from runs/regbench_tiny (its parameters, and the frozen reference), samples
two completions per prompt (a new string after 5 strings) every step, judged by the automaton
(accepted vs rejected), and trains 200 steps of batch 32 with one loss type; `dpo_offline`
draws its pairs from the reference on a fixed set of 2,048 prompts instead. The table reads
the scheduled evaluations: win rate of policy samples against reference samples, the accept
rate (judge reward), KL(policy || reference), and the in-context metrics before and after.
"""

# Ten of the fourteen loss types (each run takes a few minutes on 2 CPU cores); the others
# (bco_pair, nca_pair, sppo_hard, apo_down, exo_pair) are one --config.objective.loss_type away.
LOSS_TYPES = ('sigmoid', 'robust', 'hinge', 'ipo', 'apo_zero', 'simpo', 'orpo', 'kto', 'npo')


def get_sweep():
  members = [{'name': loss, 'objective.loss_type': loss} for loss in LOSS_TYPES]
  members.append({'name': 'dpo_offline', 'objective.loss_type': 'sigmoid',
                  'objective.mode': 'offline'})
  return {
      'config': 'configs/preference_regbench.py:tiny',
      'overrides': {'train.init_from': 'runs/regbench_tiny', 'train.num_steps': 200,
                    'train.progress': False, 'eval.num_log_evals': 5},
      'members': members,
      'evaluate': False,
      'table': 'preference',
  }
