"""Train a sequence model on an in-context learning task.

  python train.py --config configs/linear_regression.py:tiny --workdir runs/linreg \
      [--config.model.mixer=mamba ...] [--overwrite]

Writes into the workdir: config.json (resolved config), model_info.json (parameters and
generation state size), metrics.jsonl, tensorboard/, checkpoints/. Re-running the same command
resumes from the last complete checkpoint.
"""
import sys

from absl import app, flags
from ml_collections import config_flags

from cli import fail, load_config_flag, parse_flags, setup_jax

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:variant].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of this run.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace a run of a different config in --workdir.')


def main(argv):
  from cli import quiet_logs
  quiet_logs()
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; flags look like --config.train.num_steps=100')
  config = load_config_flag(_CONFIG)
  if not _WORKDIR.value:
    fail('--workdir is required: the directory where this run writes its checkpoints and '
         'metrics')
  setup_jax(config)
  from analysis.train_suites import training_hooks
  from training.loop import NonFiniteLossError, train
  from training.workdir import WorkdirError
  from core import ConfigError
  from cli import validate_eval_config
  try:
    validate_eval_config(config)   # what the run's evaluations will use: checked before training
    result = train(config, _WORKDIR.value, overwrite=_OVERWRITE.value,
                   hooks=training_hooks(config))   # the suites of eval.train_suites
  except (ConfigError, WorkdirError, NonFiniteLossError) as e:
    fail(str(e))
  loss = result['loss']
  shown = (f'{loss:.5f}' if isinstance(loss, float) else
           'n/a' if loss is None else '[' + ', '.join(f'{x:.5f}' for x in loss) + ']')
  print(f'done: step {result["step"]}, loss {shown}; workdir {_WORKDIR.value}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
