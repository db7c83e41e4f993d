r"""Six mixer families at matched size on REGBENCH (tiny scale, same budget, same test set).

  python sweep.py --sweep configs/sweeps/regbench_zoo.py --workdir runs/regbench_zoo

Each member: configs/regbench.py:tiny (1,500 steps of batch 32, 256-token prompts) at ~150k
parameters; all are scored on the same frozen test prompts (data/regbench_tfds.py).
"""

from models.zoo import position_for

MIXERS = ['attention', 'linear_attention', 'retention', 'mamba', 's4d', 'hyena', 'lstm']


def get_sweep():
  # One rule (models.zoo.position_for): learned positions where a layer's mixer is blind to
  # order (attention, linear attention), none otherwise.
  members = [{'name': mixer, 'model.mixer': mixer, 'model.position': position_for(mixer)}
             for mixer in MIXERS]
  pattern = 'attention,ngram_head,attention'
  members.append({'name': 'attention+ngram_head', 'model.mixer': pattern,
                  'model.position': position_for(pattern)})
  return {
      'config': 'configs/regbench.py:tiny',
      'overrides': {'train.progress': False, 'train.num_steps': 1500},
      'match_params': 150_000,
      'members': members,
      'suite': 'test',
  }
