"""reproductions/garg.py: argument checks, the table positions, and the tables' numbers come
from the evaluator's curves at the right number of examples (no training here)."""
import pytest

from reproductions import garg


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
