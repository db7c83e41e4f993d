r"""The REGBENCH zoo trained past the transformer's transition, scored during training.

  python sweep.py --sweep configs/sweeps/regbench_zoo_long.py --workdir runs/regbench_zoo_long
  python -m studies.regbench_ranking --workdir runs/regbench_zoo_long

The members of configs/sweeps/regbench_zoo.py (configs/regbench.py:tiny at ~150k parameters,
the same position rule) trained for NUM_STEPS steps instead of 1,500, long enough for the plain
transformer to start learning in context (between steps 2,000 and 3,000, see
studies/regbench_transition.py), with the frozen test suite and its n-gram baselines
scored every EVAL_EVERY steps inside the loop, which studies/regbench_ranking.py reads
for each member's accuracy, its in-context slope and the step where that slope rises.
About 10 minutes a member on an idle 2-core CPU.
"""
import importlib.util
import os

NUM_STEPS = 4000
EVAL_EVERY = 1000


def _zoo():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'regbench_zoo.py')
  spec = importlib.util.spec_from_file_location('_regbench_zoo', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_sweep()


def get_sweep():
  sweep = _zoo()
  sweep['overrides'] = {**sweep['overrides'], 'train.num_steps': NUM_STEPS,
                        'train.checkpoint_every': EVAL_EVERY, 'eval.every': EVAL_EVERY,
                        'eval.num_log_evals': 0, 'eval.train_suites': 'test'}
  return sweep
