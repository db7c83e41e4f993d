"""studies/garg.py, regbench_transition.py and regbench_ranking.py: argument checks, the table
positions, the tables' numbers and the transition detector (no training here)."""
import pytest

from studies import regbench_ranking
from studies import regbench_transition
from studies import garg


def _result(values_by_name, n=21, d=10):
  return {'num_examples': list(range(n)), 'n_dims': d,
          'curves': {name: {'mean': list(values)} for name, values in values_by_name.items()}}


def test_positions_are_one_half_d_d_two_d_within_the_prompt():
  assert garg.positions(10, 21) == [1, 5, 10, 20]
  assert garg.positions(8, 16) == [1, 4, 8]          # 2d = 16 is past the last query
  assert garg.positions(20, 41) == [1, 10, 20, 40]


def test_curves_table_reads_each_curve_at_k():
  model = [0.5 + i for i in range(21)]
  ls = [None] * 21
  ls[10] = 0.25
  table = garg.curves_table(_result({'model': model, 'least_squares': ls}), [1, 10])
  rows = {line.split('|')[1].strip(): line for line in table.splitlines()[2:]}
  assert rows['model'].split('|')[2:4] == [' 1.500 ', ' 10.500 ']
  assert rows['least_squares'].split('|')[2:4] == [' n/a ', ' 0.250 ']


def test_ood_table_has_a_row_per_suite_with_the_papers_outcome():
  results = {s: _result({'model': [float(j)] * 21, 'least_squares': [0.0] * 21})
             for j, s in enumerate(('in_distribution', 'overlapping'))}
  table = garg.ood_table(results, [5, 10])
  lines = table.splitlines()
  assert len(lines) == 4
  assert lines[3].startswith('| overlapping | 1.000 | 0.000 | 1.000 | 0.000 |')
  assert garg.PAPER_OOD['overlapping'] in lines[3]


@pytest.mark.parametrize('argv', [['--out', 'x', '--tasks', 'linear_regression,nope'],
                                  ['--out', 'x', '--ood', 'sideways'],
                                  ['--out', 'x', '--steps', '-1'],
                                  ['--out', 'x', '--num_prompts', '0']])
def test_bad_arguments_are_one_line_errors(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    garg.parse_args(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert 'is invalid' in err[-1]


def test_slope_is_late_strings_minus_string_one():
  by_string = [0.1, 0.5, 0.6, 0.6, 0.7, 0.8, 0.9, None]
  assert regbench_transition.slope(by_string) == pytest.approx(0.85 - 0.5)
  assert regbench_transition.slope([0.3, None, 0.5, 0.5, 0.5, 0.5]) is None
  assert regbench_transition.slope([0.3, 0.4]) is None


def test_transition_is_the_first_step_after_which_the_slope_stays_up():
  steps = [1000, 2000, 3000, 4000, 5000, 6000]
  slopes = [0.0, 0.06, 0.01, 0.07, 0.10, 0.2]      # a blip at 2000 does not count
  assert regbench_transition.transition_step(steps, slopes, 0.05) == 4000
  assert regbench_transition.transition_step(steps, slopes[:3], 0.05) is None
  assert regbench_transition.transition_step(steps, [None, 0.1, 0.1, 0.1, 0.1, 0.1], 0.05) == 2000


def test_read_steps_orders_scored_steps(tmp_path):
  import json
  suite = tmp_path / 'eval' / 'test'
  suite.mkdir(parents=True)
  for step, late in ((2000, 0.9), (1000, 0.5)):
    by = [0.2, 0.5, 0.5, 0.5, 0.5, late, late]
    metrics = {name: {'accuracy': 0.6, 'tv': 0.3, 'by_string': {'accuracy': by}}
               for name in ('model', 'bigram')}
    (suite / f'step_{step}.json').write_text(json.dumps({'metrics': metrics}))
  rows = regbench_transition.read_steps(str(tmp_path))
  assert [r['step'] for r in rows] == [1000, 2000]
  assert rows[0]['slope'] == pytest.approx(0.0) and rows[1]['slope'] == pytest.approx(0.4)
  assert rows[1]['baselines'] == {'bigram': 0.6}


def _write_member(run_dir, accuracies, lates, bigram=0.79):
  import json
  suite = run_dir / 'eval' / 'test'
  suite.mkdir(parents=True)
  for step, (accuracy, late) in enumerate(zip(accuracies, lates), 1):
    by = [0.2, 0.5, 0.5, 0.5, 0.5, late, late]
    metrics = {'model': {'accuracy': accuracy, 'tv': 1 - accuracy,
                         'by_string': {'accuracy': by}},
               'bigram': {'accuracy': bigram, 'tv': 0.3, 'by_string': {'accuracy': by}}}
    (suite / f'step_{1000 * step}.json').write_text(json.dumps({'metrics': metrics}))


def test_ranking_orders_members_by_final_accuracy_and_finds_each_transition(tmp_path, capsys):
  # 'late' learns in context from step 3000 but ends below 'flat', which never does.
  _write_member(tmp_path / 'late', [0.6, 0.6, 0.7, 0.75], [0.5, 0.5, 0.7, 0.8])
  _write_member(tmp_path / 'flat', [0.7, 0.8, 0.8, 0.8], [0.5, 0.52, 0.5, 0.53])
  (tmp_path / 'not_a_run').mkdir()
  assert regbench_ranking.main(['--workdir', str(tmp_path)]) == 0
  members = regbench_ranking.collect(str(tmp_path), 0.05)
  assert [m['name'] for m in members] == ['flat', 'late']
  assert [m['transition_step'] for m in members] == [None, 3000]
  assert members[1]['slope'] == pytest.approx(0.3)
  assert members[1]['strings_late'] == pytest.approx(0.8)
  md = (tmp_path / 'regbench_ranking.md').read_text()
  assert md.splitlines()[2].startswith('| 1 | flat |') and 'bigram 0.790' in md
  assert (tmp_path / 'regbench_ranking.png').stat().st_size > 0


def test_ranking_of_an_empty_workdir_is_a_one_line_error(tmp_path, capsys):
  assert regbench_ranking.main(['--workdir', str(tmp_path)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'no run under' in err[0]
