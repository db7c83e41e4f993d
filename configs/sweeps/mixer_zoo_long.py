r"""The mixer zoo past its initial plateau: every mixer at matched size, several seeds, longer.

  python sweep.py --sweep configs/sweeps/mixer_zoo_long.py --workdir runs/mixer_zoo_long
  python -m studies.mixer_plateau --workdir runs/mixer_zoo_long

The members of configs/sweeps/mixer_zoo.py (d=8, 16 points, 3 layers at ~150k parameters,
batch 64; the same position rule) trained for NUM_STEPS steps instead of 2,000, each with the
seeds SEEDS trained together in one vmapped run, and the per-position error evaluated on 256
fixed prompts every EVAL_EVERY steps (plus 12 log-spaced early steps) into metrics.jsonl, which
studies/mixer_plateau.py reads for the step at which each seed leaves the plateau.
"""

from models.zoo import position_for

MIXERS = ['attention', 'linear_attention', 'linear_self_attention', 'momentum_attention',
          'gla', 'retention', 'rwkv', 'mamba', 's4d', 'hyena', 'lstm', 'gru']
NUM_STEPS = 3000
EVAL_EVERY = 200
SEEDS = [0, 1]


def get_sweep():
  members = [{'name': mixer, 'model.mixer': mixer, 'model.position': position_for(mixer)}
             for mixer in MIXERS]
  return {
      'config': 'configs/linear_regression.py:tiny',
      'overrides': {'train.progress': False, 'train.num_steps': NUM_STEPS,
                    'train.checkpoint_every': NUM_STEPS, 'eval.every': EVAL_EVERY,
                    'eval.num_log_evals': 12},
      'seeds': SEEDS,
      'match_params': 150_000,
      'members': members,
      'suite': 'in_distribution',
      'report': {'positions': (1, 4, 8, 15)},
  }
