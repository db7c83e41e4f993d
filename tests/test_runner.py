"""studies/runner.py: the files a study writes, the cache of intermediate results, and the
reuse of a finished run by train_run."""
import json

import pytest

from studies import runner


def _plot(path):
  plt = runner.pyplot()
  fig, ax = plt.subplots()
  ax.plot([0, 1], [1, 0])
  fig.savefig(path)
  plt.close(fig)


@pytest.mark.parametrize('table_in_json', [True, False])
def test_write_results_writes_json_markdown_and_png(tmp_path, table_in_json):
  out = tmp_path / 'new' / 'folder'
  lines = []
  runner.write_results(str(out), 'study', {'value': 0.5}, '| a |\n|---|', log=lines.append,
                       plot=_plot, table_in_json=table_in_json)
  saved = json.loads((out / 'study.json').read_text())
  assert saved == ({'value': 0.5, 'table': '| a |\n|---|'} if table_in_json else {'value': 0.5})
  assert (out / 'study.md').read_text() == '| a |\n|---|\n'
  assert (out / 'study.png').read_bytes()[:4] == b'\x89PNG'
  assert lines == ['| a |\n|---|', f'wrote {out / "study"}.{{json,md,png}}']
  assert sorted(p.name for p in out.iterdir()) == ['study.json', 'study.md', 'study.png']


def test_write_results_without_a_plot_names_only_what_it_wrote(tmp_path):
  lines = []
  runner.write_results(str(tmp_path), 'study', {}, 't', log=lines.append)
  assert lines[-1] == f'wrote {tmp_path / "study"}.{{json,md}}'
  assert not (tmp_path / 'study.png').exists()


def test_write_json_takes_numpy_scalars_and_leaves_no_temporary_file(tmp_path):
  np = pytest.importorskip('numpy')
  path = tmp_path / 'x.json'
  runner.write_json(str(path), {'a': np.float32(0.25), 'b': [1, 2]})
  assert json.loads(path.read_text()) == {'a': 0.25, 'b': [1, 2]}
  assert [p.name for p in tmp_path.iterdir()] == ['x.json']


def test_cached_json_computes_once_and_recomputes_what_is_not_valid(tmp_path):
  path = str(tmp_path / 'cache' / 'result.json')
  calls = []

  def compute():
    calls.append(1)
    return {'version': len(calls)}

  assert runner.cached_json(path, compute) == {'version': 1}
  assert runner.cached_json(path, compute) == {'version': 1}      # reused, not recomputed
  assert len(calls) == 1
  stale = lambda cached: cached['version'] == 2
  assert runner.cached_json(path, compute, stale) == {'version': 2}
  assert runner.cached_json(path, compute, stale) == {'version': 2}
  assert len(calls) == 2


def test_train_run_reuses_a_finished_run(tmp_path):
  from studies.sweeps import member_config
  config = member_config({'config': 'configs/linear_regression.py:tiny',
                          'overrides': {'train.num_steps': 4, 'train.progress': False,
                                        'train.log_every': 2, 'eval.num_log_evals': 0}},
                         {'name': 'runner'})
  workdir = str(tmp_path / 'run')
  runner.train_run(config, workdir, log=lambda s: None, devices=_one_device())
  metrics = (tmp_path / 'run' / 'metrics.jsonl').read_text()
  runner.train_run(config, workdir, log=lambda s: None, devices=_one_device())
  assert (tmp_path / 'run' / 'metrics.jsonl').read_text() == metrics   # nothing trained again


def _one_device():
  import jax
  return jax.devices()[:1]
