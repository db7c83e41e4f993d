"""Tables and plots that summarise a sweep (sweep.py), one pair per evaluator family."""
from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def _fmt(value, digits=3):
  return '—' if value is None else f'{value:.{digits}f}'


def regression_table(summary, positions=(1, 4, 8, 12), baselines=('least_squares', '3nn',
                                                                    'averaging')) -> str:
  """Markdown: one row per member with normalised error at `positions` in-context examples."""
  positions = list(positions)
  head = ('| run | mixer | d_model | params | state floats | steps/s | '
          + ' | '.join(f'err@{p}' for p in positions) + ' |')
  lines = [head, '|' + '---|' * (6 + len(positions))]
  result = None
  for name, row in summary.items():
    result = row['result']
    mean = result['curves']['model']['mean']
    cells = [_fmt(mean[p]) if p < len(mean) else '—' for p in positions]
    lines.append(f'| {name} | {row["mixer"]} | {row["d_model"]} | {row["params"]:,} | '
                 f'{row["state_size"]:,} | {_fmt(row["steps_per_sec"], 1)} | '
                 + ' | '.join(cells) + ' |')
  for baseline in baselines:
    if result is None or baseline not in result['curves']:
      continue
    mean = result['curves'][baseline]['mean']
    cells = [_fmt(mean[p]) if p < len(mean) else '—' for p in positions]
    lines.append(f'| {baseline} (baseline) | | | | | | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def regression_plot(summary, png_path) -> None:
  fig, ax = plt.subplots(figsize=(7, 4.5))
  result = None
  for name, row in summary.items():
    result = row['result']
    curve = result['curves']['model']
    ax.plot(result['num_examples'], curve['mean'], label=name)
  for baseline, style in (('least_squares', 'k--'), ('averaging', 'k:')):
    if result is not None and baseline in result['curves']:
      ax.plot(result['num_examples'], result['curves'][baseline]['mean'], style, label=baseline)
  ax.set_xlabel('in-context examples')
  ax.set_ylabel('normalised squared error')
  ax.set_ylim(0, 1.5)
  ax.set_title(f'{result["task"] if result else ""}: sweep')
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)
  plt.close(fig)


TABLES = {'regression': regression_table}
PLOTS = {'regression': regression_plot}
