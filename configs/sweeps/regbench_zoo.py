r"""Six mixer families at matched size on REGBENCH (tiny scale, same budget, same test set).

  python sweep.py --sweep configs/sweeps/regbench_zoo.py --workdir runs/regbench_zoo

Each member: configs/regbench.py:tiny (1,500 steps of batch 32, 256-token prompts) at ~150k
parameters; all are scored on the same frozen test prompts (data/regbench_tfds.py).
"""

MIXERS = ['attention', 'linear_attention', 'retention', 'mamba', 's4d', 'hyena', 'lstm']


def get_sweep():
  members = []
  for mixer in MIXERS:
    members.append({'name': mixer, 'model.mixer': mixer,
                    'model.position': 'learned' if mixer == 'attention' else 'none'})
  members.append({'name': 'attention+ngram_head', 'model.mixer': 'attention,ngram_head,attention',
                  'model.position': 'learned'})
  return {
      'config': 'configs/regbench.py:tiny',
      'overrides': {'train.progress': False, 'train.num_steps': 1500},
      'match_params': 150_000,
      'members': members,
      'suite': 'test',
  }
