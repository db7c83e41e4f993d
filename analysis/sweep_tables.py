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


def regbench_table(summary, baselines=('unigram', 'bigram', 'trigram', 'automaton')) -> str:
  """Markdown: accuracy, TV distance, perplexity and generation acceptance per member."""
  lines = ['| run | mixer | d_model | params | state floats | steps/s | accuracy | TV | '
           'perplexity | generated strings accepted |', '|' + '---|' * 10]
  result = None
  for name, row in summary.items():
    result = row['result']
    m = result['metrics']['model']
    gen = result.get('generation') or {}
    lines.append(f'| {name} | {row["mixer"]} | {row["d_model"]} | {row["params"]:,} | '
                 f'{row["state_size"]:,} | {_fmt(row["steps_per_sec"], 1)} | '
                 f'{_fmt(m["accuracy"])} | {_fmt(m["tv"])} | {_fmt(m["perplexity"], 2)} | '
                 f'{_fmt(gen.get("string_accept_rate"))} |')
  for baseline in baselines:
    if result is None or baseline not in result['metrics']:
      continue
    m = result['metrics'][baseline]
    lines.append(f'| {baseline} (baseline) | | | | | | {_fmt(m["accuracy"])} | '
                 f'{_fmt(m["tv"])} | {_fmt(m["perplexity"], 2)} | |')
  return '\n'.join(lines)


def regbench_plot(summary, png_path) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  result = None
  for name, row in summary.items():
    result = row['result']
    by_string = result['metrics']['model'].get('by_string', {})
    for ax, key in zip(axes, ('accuracy', 'tv')):
      if key in by_string:
        ax.plot(range(len(by_string[key])), by_string[key], label=name)
  if result is not None:
    for baseline, style in (('bigram', 'k:'), ('trigram', 'k--')):
      by_string = result['metrics'].get(baseline, {}).get('by_string', {})
      for ax, key in zip(axes, ('accuracy', 'tv')):
        if key in by_string:
          ax.plot(range(len(by_string[key])), by_string[key], style, label=baseline)
  for ax, key in zip(axes, ('accuracy', 'total variation')):
    ax.set_xlabel('string index in the prompt')
    ax.set_ylabel(key)
  axes[0].legend(fontsize=7)
  fig.suptitle('regbench: sweep')
  fig.tight_layout()
  fig.savefig(png_path, dpi=120)
  plt.close(fig)


TABLES = {'regression': regression_table, 'regbench': regbench_table}
PLOTS = {'regression': regression_plot, 'regbench': regbench_plot}
