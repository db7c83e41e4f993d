"""Evaluate a trained run against classical baselines.

  python eval.py --workdir runs/linreg [--checkpoint STEP] [--suite NAME|all]

Writes DIR/eval/<suite>.json and DIR/eval/<suite>.png for each suite.
"""
import json
import os

from absl import app, flags

from cli import fail, parse_flags

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of a training run.')
_CHECKPOINT = flags.DEFINE_integer('checkpoint', None, 'Checkpoint step (default: latest).')
_SUITE = flags.DEFINE_string('suite', '', "Suite name, comma list, or 'all' (default: the "
                             "task family's first suite).")
_NUM_PROMPTS = flags.DEFINE_integer('num_prompts', None, 'Prompts per suite (default: '
                                    'config.eval.num_prompts).')
_SEED = flags.DEFINE_integer('seed', None, 'Evaluation seed (default: config.eval.seed).')


def write_json_atomic(path, obj):
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def main(argv):
  from cli import quiet_logs
  quiet_logs()
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value:
    fail('--workdir is required: a directory written by train.py')
  if not os.path.isdir(_WORKDIR.value):
    fail(f'--workdir={_WORKDIR.value} does not exist')
  from analysis.evaluators import get_evaluator, resolve_suites
  from data.base import ConfigError
  from training.loop import WorkdirError, load_config, restore_model
  try:
    config = load_config(_WORKDIR.value)
    from data import TASKS
    evaluator = get_evaluator(TASKS[config.task.name].eval_family)
    suites = resolve_suites(evaluator, _SUITE.value or config.eval.get('suite', ''))
    config, task, model, step = restore_model(_WORKDIR.value, _CHECKPOINT.value, config)
  except (ConfigError, WorkdirError) as e:
    fail(str(e))
  from analysis.base import make_model_fns
  model_fns = make_model_fns(model, task)
  out_dir = os.path.join(_WORKDIR.value, 'eval')
  os.makedirs(out_dir, exist_ok=True)
  num_prompts = _NUM_PROMPTS.value or config.eval.num_prompts
  seed = config.eval.seed if _SEED.value is None else _SEED.value
  for suite in suites:
    result = evaluator.run_suite(suite, model_fns, task, config, num_prompts=num_prompts,
                                 seed=seed, batch_size=config.eval.batch_size)
    result['checkpoint_step'] = step
    path = os.path.join(out_dir, f'{suite}.json')
    write_json_atomic(path, result)
    evaluator.plot(result, os.path.join(out_dir, f'{suite}.png'))
    print(f'{suite}: wrote {path} and {suite}.png')
    if hasattr(evaluator, 'summary'):
      print(evaluator.summary(result))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
