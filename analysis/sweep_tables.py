"""Tables and plots that summarise a sweep (sweep.py), one pair per evaluator family."""
from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


def preference_objective(objective: dict) -> str:
  """'sft', or the preference loss type ('sigmoid', 'ipo', ...) of a run's objective."""
  if objective.get('name') == 'sft':
    return 'sft'
  return objective.get('loss_type', objective.get('name', '?'))


def preference_table(summary) -> str:
  """Markdown: per member, the judge's score, accept rate and completion length of reference
  -> policy samples, the win rate against the reference, KL(policy || reference), and the
  in-context metrics before -> after fine-tuning (all at the last scheduled evaluation)."""
  lines = ['| run | objective | mode | steps | judge score (ref -> policy) | accept rate '
           '(ref -> policy) | length in symbols (ref -> policy) | win rate vs ref | '
           'KL(policy, ref) | ICL accuracy before -> after | ICL loss before -> after |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for name, row in summary.items():
    r = row['result']
    first, last = r['first_eval'], r['last_eval']
    get = lambda d, k: _fmt(d.get(k))
    pair = lambda k: f'{get(last, "eval/reference_" + k)} -> {get(last, "eval/policy_" + k)}'
    lines.append(f'| {name} | {preference_objective(r["objective"])} | '
                 f'{r["objective"].get("mode", "on_policy")} | {r["last_step"]} | '
                 f'{pair("reward")} | {pair("accept_rate")} | {pair("length")} | '
                 f'{get(last, "eval/win_rate")} | {get(last, "eval/kl")} | '
                 f'{get(first, "eval/accuracy_mean")} -> {get(last, "eval/accuracy_mean")} | '
                 f'{get(first, "eval/loss_mean")} -> {get(last, "eval/loss_mean")} |')
  return '\n'.join(lines)


def preference_plot(summary, png_path) -> None:
  """Win rate against KL per member, and ICL accuracy before and after."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  names = list(summary)
  for i, name in enumerate(names):
    r = summary[name]['result']
    last, first = r['last_eval'], r['first_eval']
    axes[0].scatter(last.get('eval/kl', np.nan), last.get('eval/win_rate', np.nan),
                    color=f'C{i % 10}', label=name)
    axes[1].plot([0, 1], [first.get('eval/accuracy_mean', np.nan),
                          last.get('eval/accuracy_mean', np.nan)], marker='o',
                 color=f'C{i % 10}', label=name)
  axes[0].set_xlabel('KL(policy || reference), nats per completion')
  axes[0].set_ylabel('judge win rate vs reference')
  axes[0].axhline(0.5, color='gray', ls='--', lw=0.8)
  axes[0].grid(alpha=0.3)
  axes[1].set_xticks([0, 1], ['before', 'after'])
  axes[1].set_ylabel('in-context accuracy (REGBENCH, per position mean)')
  axes[1].grid(alpha=0.3)
  axes[1].legend(fontsize=7, ncol=2)
  fig.suptitle('preference fine-tuning: fixed budget per objective')
  fig.tight_layout()
  fig.savefig(png_path, dpi=110)
  plt.close(fig)


TABLES = {'regression': regression_table, 'regbench': regbench_table,
          'preference': preference_table}
PLOTS = {'regression': regression_plot, 'regbench': regbench_plot,
         'preference': preference_plot}
