r"""Length generalisation of softmax against linear attention on in-context linear regression
(He, Pan, Chen and Yang 2025, "In-context linear regression demystified: training dynamics
and mechanistic interpretability of multi-head softmax attention").

    python -m reproductions.length_generalisation --out runs/repro/length_generalisation

The paper's claim: trained at one prompt length, multi-head softmax attention keeps working
on longer prompts, while a linear transformer does not. Their mechanism: the trained softmax
heads implement a debiased gradient-descent step whose weights are normalised by the softmax,
i.e. averaged over the L examples in the prompt whatever L is; linear attention sums over the
examples with a scale learned for the training L, so at 2L its prediction is about twice too
large.

Setting (the paper's, at reduced scale): d = 5, y = w.x + N(0, 0.1) with w ~ N(0, I_d),
x ~ N(0, I_d); one attention-only layer (no MLP) with 4 heads, no positional embeddings
(`model.position=none`, so the trained model reads prompts of any length); trained with the
loss at the query after exactly N = 20 examples (the paper: L = 40), then tested at every
number of examples up to 2N = 40. Like the paper's model, each token holds an example whole:
the prompt is the sequence [x_0, 0, 0], [x_0, y_0, 1], [x_1, 0, 0], [x_1, y_1, 1], ..., and the
read-out at the query token [x_i, 0, 0] predicts y_i from the pairs before it (the last
coordinate marks labelled tokens). Garg et al.'s interleaved layout ([x_i], [y_i, 0, ...]) needs
positions to pair an x with its y, and learned positions do not extend past the training length.

Models: `attention` (softmax), `linear_attention` with feature_map=identity and
normalize=False (the plain linear transformer of the paper and of von Oswald et al.), and, as
a control for the mechanism, `linear_attention` with Katharopoulos et al.'s normalisation
(elu + 1 feature map, divided by the summed keys), which averages like softmax. Each model is
an ordinary run of the training loop under OUT/<model>; a second call reuses finished runs.
Writes OUT/length_generalisation.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

import numpy as np

TASK_NAME = 'paired_linear_regression'
N_DIMS = 5
NOISE_STD = float(np.sqrt(0.1))     # the paper's sigma^2 = 0.1
MODELS = {
    'softmax': {'model.mixer': 'attention'},
    'linear': {'model.mixer': 'linear_attention',
               'model.mixer_options.linear_attention.feature_map': 'identity',
               'model.mixer_options.linear_attention.normalize': False},
    'linear_normalised': {'model.mixer': 'linear_attention',
                          'model.mixer_options.linear_attention.feature_map': 'elu1',
                          'model.mixer_options.linear_attention.normalize': True},
}


def paired_task_class():
  """The paper's token layout for noisy linear regression (a task class, registered by
  `main` for the duration of the study only)."""
  import jax.numpy as jnp
  from core import ModelIO, require
  from data.regression import NoisyLinearRegression

  class PairedLinearRegression(NoisyLinearRegression):
    """y = w.x + noise; tokens [x_i, 0, 0] (query) then [x_i, y_i, 1] (example); the loss at
    the last query only (`loss_at='last'`, the paper's objective) or at every query ('all')."""
    name = TASK_NAME
    extra_defaults = dict(noise_std=NOISE_STD, loss_at='last')

    def _validate(self, cfg):
      super()._validate(cfg)
      require(cfg['loss_at'] in ('last', 'all'), 'task.loss_at', cfg['loss_at'],
              "'last' (the query after all n_points - 1 examples) or 'all'")

    def io(self):
      return ModelIO(input_kind='vectors', input_dim=self.n_dims + 2, seq_len=2 * self.n_points,
                     output_dim=1)

    def sample_with_functions(self, key, batch_size, step=0):
      batch, params = super().sample_with_functions(key, batch_size, step)
      if self.cfg['loss_at'] == 'last':
        last_N = (jnp.arange(self.n_points) == self.n_points - 1).astype(jnp.float32)
        batch['point_mask_BxN'] = batch['point_mask_BxN'] * last_N
      return batch, params

    def model_inputs(self, batch):
      xs_BxNxD, ys_BxN = batch['xs_BxNxD'], batch['ys_BxN']
      batch_size, num_points, _ = xs_BxNxD.shape
      zeros_BxNx1 = jnp.zeros((batch_size, num_points, 1), xs_BxNxD.dtype)
      query_BxNxF = jnp.concatenate([xs_BxNxD, zeros_BxNx1, zeros_BxNx1], axis=-1)
      example_BxNxF = jnp.concatenate([xs_BxNxD, ys_BxN[..., None], zeros_BxNx1 + 1.0], axis=-1)
      return jnp.stack([query_BxNxF, example_BxNxF], axis=2).reshape(
          batch_size, 2 * num_points, self.n_dims + 2)

  return PairedLinearRegression


def study_config(name: str, args):
  """The config of one model: one attention-only layer, 4 heads, width 32, no positions."""
  from configs.common import base_config
  from training.sweeps import set_key
  task = dict(n_dims=N_DIMS, n_points=args.train_points + 1, noise_std=NOISE_STD, loss_at='last')
  train = dict(num_steps=args.steps, learning_rate=1e-3, warmup_steps=100, batch_size=64,
               checkpoint_every=max(args.steps // 40 * 10, 10), progress=False)
  model = dict(num_layers=1, d_model=32, num_heads=4, mlp='none', position='none')
  config = base_config(TASK_NAME, 'tiny', task_overrides=task, train_overrides=train,
                       model_overrides=model)
  config.eval.num_log_evals = 4
  for key, value in MODELS[name].items():
    set_key(config, key, value)
  return config


def evaluate(run, test_task, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  """Squared errors / d at every number of examples 0 .. 2N of the test prompts: the model,
  least squares and ridge at the noise variance (the Bayes predictor)."""
  import jax
  from analysis.base import make_model_fns
  from baselines.regression import least_squares, ridge
  from training.loop import seed_model
  model = make_model_fns(seed_model(run, 0), test_task)
  predictors = {'model': lambda b: test_task.predictions(model.predict(b)),
                'least_squares': lambda b, f=least_squares(): f(b['xs_BxNxD'], b['ys_BxN']),
                'ridge': lambda b, f=ridge(NOISE_STD ** 2): f(b['xs_BxNxD'], b['ys_BxN'])}
  errors = {name: [] for name in predictors}
  for block in range(int(np.ceil(num_prompts / 256))):
    batch = test_task.sample(jax.random.fold_in(jax.random.key(seed), block), 256)
    for name, predict in predictors.items():
      preds = np.asarray(predict(batch), np.float64)
      errors[name].append((preds - np.asarray(batch['ys_BxN'])) ** 2 / N_DIMS)
  return {name: np.concatenate(v)[:num_prompts] for name, v in errors.items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True)
  parser.add_argument('--steps', type=int, default=3000)
  parser.add_argument('--train_points', type=int, default=20,
                      help='in-context examples before the trained query (N)')
  parser.add_argument('--num_prompts', type=int, default=1280)
  parser.add_argument('--models', default=','.join(MODELS))
  args = parser.parse_args(argv)
  from analysis.run_eval import write_json_atomic
  from analysis.stats import bootstrap_ci
  from data.base import TASKS
  from training.loop import restore_run, train
  os.makedirs(args.out, exist_ok=True)
  names = [m for m in args.models.split(',') if m]
  for m in names:
    if m not in MODELS:
      print(f'error: --models: unknown model {m!r}; known: {", ".join(MODELS)}')
      return 2
  n_train = args.train_points
  cls = paired_task_class()
  result: Dict[str, Any] = {'train_examples': n_train, 'test_examples': 2 * n_train,
                            'n_dims': N_DIMS, 'noise_variance': NOISE_STD ** 2,
                            'steps': args.steps, 'num_prompts': args.num_prompts, 'models': {}}
  curves = {}
  with TASKS.temporary(TASK_NAME, cls, eval_family='regression', objectives=cls.objectives):
    for name in names:
      config = study_config(name, args)
      workdir = os.path.join(args.out, name)
      start = time.time()
      train(config, workdir, log=lambda s: None)
      run = restore_run(workdir, log=lambda s: None)
      test_config = config.task.to_dict()
      test_config['n_points'] = 2 * n_train + 1
      test_task = cls(test_config)
      errors = evaluate(run, test_task, args.num_prompts, seed=config.eval.seed)
      entry = {'seconds': round(time.time() - start, 1)}
      for key, values in errors.items():
        mean, lo, hi = bootstrap_ci(values, num_resamples=1000, seed=0)
        entry[key] = {'mean': mean.tolist(), 'lo': lo.tolist(), 'hi': hi.tolist()}
      result['models'][name] = entry
      curves[name] = entry
      print(f'{name}: error at N={n_train} {entry["model"]["mean"][n_train]:.4f}, at '
            f'2N={2 * n_train} {entry["model"]["mean"][2 * n_train]:.4f} ({entry["seconds"]}s)')
  table = _table(result)
  result['table'] = table
  write_json_atomic(os.path.join(args.out, 'length_generalisation.json'), result)
  with open(os.path.join(args.out, 'length_generalisation.md'), 'w') as f:
    f.write(table + '\n')
  _plot(result, os.path.join(args.out, 'length_generalisation.png'))
  print(table)
  print(f'wrote {os.path.join(args.out, "length_generalisation")}.{{json,md,png}}')
  return 0


def _table(result) -> str:
  n = result['train_examples']
  points = [n // 2, n, 3 * n // 2, 2 * n]
  lines = ['| model | ' + ' | '.join(f'error at {p} examples' for p in points)
           + f' | error at 2N / error at N |', '|---|' + '---:|' * (len(points) + 1)]
  any_entry = next(iter(result['models'].values()))
  rows = [(f'{name} attention', e['model']) for name, e in result['models'].items()]
  rows += [('least squares', any_entry['least_squares']), ('ridge (Bayes)', any_entry['ridge'])]
  for label, curve in rows:
    cells = [f'{curve["mean"][p]:.3f} [{curve["lo"][p]:.3f}, {curve["hi"][p]:.3f}]'
             for p in points]
    ratio = curve['mean'][2 * n] / curve['mean'][n]
    lines.append(f'| {label} | ' + ' | '.join(cells) + f' | {ratio:.2f} |')
  lines.append('')
  lines.append(f'squared error / d at the query after that many examples (d={result["n_dims"]}, '
               f'noise variance {result["noise_variance"]:.2f}, so the floor is '
               f'{result["noise_variance"] / result["n_dims"]:.2f}); trained at N={n} only; '
               f'{result["num_prompts"]} prompts, 95% bootstrap intervals')
  return '\n'.join(lines)


def _plot(result, path) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  n = result['train_examples']
  fig, ax = plt.subplots(figsize=(7, 4.2))
  x = np.arange(2 * n + 1)
  styles = {'softmax': ('C0', 'softmax attention'), 'linear': ('C3', 'linear attention'),
            'linear_normalised': ('C2', 'linear attention, normalised (Katharopoulos)')}
  for name, entry in result['models'].items():
    color, label = styles[name]
    ax.plot(x[1:], entry['model']['mean'][1:], color=color, lw=2, label=label)
    ax.fill_between(x[1:], entry['model']['lo'][1:], entry['model']['hi'][1:], color=color,
                    alpha=0.2, lw=0)
  any_entry = next(iter(result['models'].values()))
  ax.plot(x[1:], any_entry['least_squares']['mean'][1:], color='gray', ls=':',
          label='least squares')
  ax.plot(x[1:], any_entry['ridge']['mean'][1:], color='black', ls='--', label='ridge (Bayes)')
  ax.axvline(n, color='gray', lw=1)
  ax.text(n + 0.3, 0.9, 'trained here', color='gray', fontsize=8,
          transform=ax.get_xaxis_transform())
  ax.set_yscale('log')
  ax.set_xlabel('number of in-context examples')
  ax.set_ylabel('squared error / d')
  ax.set_title(f'trained at N={n} examples, tested up to 2N (d={result["n_dims"]}, 1 layer, '
               f'4 heads)', fontsize=10)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == '__main__':
  sys.exit(main())
