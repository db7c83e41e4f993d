"""Evaluate a trained run against classical baselines.

  python eval.py --workdir runs/linreg [--checkpoint STEP] [--suite NAME|all] [--num_prompts N]
  python eval.py --workdir runs/linreg --all-checkpoints      # step x position heatmaps

Writes DIR/eval/<suite>.json and DIR/eval/<suite>.png for each suite. A run of several seeds
(train.num_seeds) is evaluated seed by seed (DIR/eval/<suite>/seed_<i>.{json,png}); the
suite's own JSON and PNG then hold the across-seed mean with its 95% interval beside every
seed's curve. --all-checkpoints evaluates every kept checkpoint on the same prompts and
writes DIR/eval/all_checkpoints.{json,png}.
"""
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
_ALL = flags.DEFINE_bool('all-checkpoints', False, 'Evaluate every kept checkpoint: per-'
                         'position curves as step x position heatmaps.')


def main(argv):
  from cli import quiet_logs
  quiet_logs()
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  if not _WORKDIR.value:
    fail('--workdir is required: a directory written by train.py')
  if not os.path.isdir(_WORKDIR.value):
    fail(f'--workdir={_WORKDIR.value} does not exist or is not a directory')
  if _NUM_PROMPTS.value is not None and _NUM_PROMPTS.value < 1:
    fail(f'--num_prompts={_NUM_PROMPTS.value} is invalid: must be an integer >= 1')
  if _CHECKPOINT.value is not None and _CHECKPOINT.value < 0:
    fail(f'--checkpoint={_CHECKPOINT.value} is invalid: must be a step >= 0')
  if _SEED.value is not None and _SEED.value < 0:
    fail(f'--seed={_SEED.value} is invalid: must be an integer >= 0')
  if _ALL.value and _CHECKPOINT.value is not None:
    fail('--all-checkpoints and --checkpoint exclude each other')
  from analysis.evaluators import get_evaluator, resolve_suites
  from core import ConfigError
  from training.loop import load_config, restore_run
  from training.workdir import WorkdirError
  try:
    config = load_config(_WORKDIR.value)
    from data import TASKS
    evaluator = get_evaluator(TASKS.metadata(config.task.name)['eval_family'])
    suites = resolve_suites(evaluator, _SUITE.value or config.eval.get('suite', ''))
    run = restore_run(_WORKDIR.value, _CHECKPOINT.value, config)
  except (ConfigError, WorkdirError) as e:
    fail(str(e))
  out_dir = os.path.join(_WORKDIR.value, 'eval')
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    fail(f'cannot write {out_dir}: {e.strerror}')
  from analysis import run_eval
  if _ALL.value:
    run_eval.all_checkpoints(run, out_dir, num_prompts=_NUM_PROMPTS.value, seed=_SEED.value)
    return
  num_prompts = _NUM_PROMPTS.value or config.eval.num_prompts
  seed = config.eval.seed if _SEED.value is None else _SEED.value
  for suite in suites:
    run_eval.suite_over_seeds(run, evaluator, suite, out_dir, num_prompts=num_prompts, seed=seed)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
