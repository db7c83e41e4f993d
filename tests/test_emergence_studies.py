"""studies/emergence.py: the jump detector on planted curves, argument errors, and the jump study end to end at a few steps (JSON, Markdown and PNG written, resumed runs reused)."""
import json

import numpy as np
import pytest

from studies import emergence


def test_jump_step_finds_the_planted_step():
  steps = np.arange(0, 2000, 50)
  values = np.where(steps < 900, 0.5, 0.97) + 0.01 * np.sin(steps)   # plateau, then a jump
  assert emergence.jump_step(steps, values) == 900
  # An early rise to the plateau does not count, nor does a fall after the peak (transience).
  transient = np.where(steps < 100, 0.05, np.where(steps < 700, 0.5, 0.95))
  transient = np.where(steps >= 1500, 0.3, transient)
  assert emergence.jump_step(steps, transient) == 700
  assert emergence.jump_step(steps, 0.5 + 0.02 * np.cos(steps)) is None   # no rise: no jump


def test_bad_arguments_are_one_line(capsys):
  with pytest.raises(SystemExit):
    emergence.parse_args(['jump', '--out', 'x', '--steps', '-1'])
  assert '--steps=-1 is invalid' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    emergence.parse_args(['nonsense', '--out', 'x'])


def _png_ok(path):
  import matplotlib.image
  image = matplotlib.image.imread(str(path))
  assert image.ndim == 3 and np.ptp(image[..., :3]) > 0


def test_jump_study_end_to_end(tmp_path, monkeypatch):
  import jax
  monkeypatch.setattr(emergence, 'DEVICES', jax.devices()[:1])   # compiling for 8 is slow
  out = tmp_path / 'jump'
  emergence.main(['jump', '--out', str(out), '--steps', '20', '--seeds', '2',
                  '--eval_every', '10'])
  with open(out / 'jump.json') as f:
    result = json.load(f)
  assert len(result['per_seed']) == 2 and len(result['in_context_accuracy']) == 2
  assert result['steps'][-1] == 20
  assert all(-1 <= v <= 1 for curve in result['induction_score'] for v in curve)
  assert '| seed | step of the jump: in-context acc' in (out / 'jump.md').read_text()
  _png_ok(out / 'jump.png')
  # A second call reuses the finished run (no new metrics rows).
  rows = (out / 'run' / 'metrics.jsonl').read_text()
  emergence.main(['jump', '--out', str(out), '--steps', '20', '--seeds', '2',
                  '--eval_every', '10'])
  assert (out / 'run' / 'metrics.jsonl').read_text() == rows



def test_transience_and_kirsch_studies_end_to_end(tmp_path, monkeypatch):
  import jax
  monkeypatch.setattr(emergence, 'DEVICES', jax.devices()[:1])
  out = tmp_path / 'transience'
  emergence.main(['transience', '--out', str(out), '--steps', '12', '--seeds', '1',
                  '--num_classes', '64', '--forget_every', '5'])
  with open(out / 'transience.json') as f:
    result = json.load(f)
  assert set(result['runs']) == {'plain', 'forgetting'}
  with open(out / 'forgetting' / 'config.json') as f:
    assert json.load(f)['train']['forget_every'] == 5
  for run in result['runs'].values():
    assert run['steps'][-1] == 12 and 0 <= run['peak_in_context_accuracy'][0] <= 1
  _png_ok(out / 'transience.png')
  out = tmp_path / 'kirsch'
  emergence.main(['kirsch', '--out', str(out), '--steps', '10', '--pool_sizes', '2'])
  with open(out / 'kirsch.json') as f:
    result = json.load(f)
  assert [r['num_tasks'] for r in result['pools']] == [2]
  assert 0 <= result['pools'][0]['new_accuracy'][0] <= 1
  _png_ok(out / 'kirsch.png')
