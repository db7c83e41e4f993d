r"""Every sequence mixer at matched parameter count on in-context linear regression.

  python sweep.py --sweep configs/sweeps/mixer_zoo.py --workdir runs/mixer_zoo

Tiny scale for a CPU: d=8, 16 points, 3 layers at ~150k parameters, 2,000 steps of batch 64
per mixer (about 1-3 minutes each on 2 cores). Writes runs/mixer_zoo/summary.{json,md,png}.
"""

from models.zoo import position_for

MIXERS = ['attention', 'linear_attention', 'linear_self_attention', 'momentum_attention',
          'gla', 'retention', 'rwkv', 'mamba', 's4d', 'hyena', 'lstm', 'gru']


def get_sweep():
  # One rule (models.zoo.position_for): learned absolute positions for a member with a mixer
  # that is blind to order (softmax, linear and momentum attention), none for the rest
  # (recurrent, convolutional and decaying mixers know order already). Members that name
  # their position keep it: attention_rope, and the hybrid, where mamba supplies order to the
  # attention layers (as in Jamba, which uses no positional encoding).
  members = [{'name': mixer, 'model.mixer': mixer, 'model.position': position_for(mixer)}
             for mixer in MIXERS]
  members.append({'name': 'attention_rope', 'model.mixer': 'attention', 'model.position': 'rope'})
  members.append({'name': 'hybrid_attention_mamba', 'model.mixer': 'attention,mamba,attention',
                  'model.position': 'none'})
  return {
      'config': 'configs/linear_regression.py:tiny',
      'overrides': {'train.progress': False, 'train.num_steps': 2000},
      'match_params': 150_000,
      'members': members,
      'suite': 'in_distribution',
      'report': {'positions': (1, 4, 8, 15)},
  }
