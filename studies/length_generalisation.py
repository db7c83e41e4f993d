r"""Length generalisation of softmax against linear attention on in-context linear regression
(He, Pan, Chen and Yang 2025, "In-context linear regression demystified: training dynamics
and mechanistic interpretability of multi-head softmax attention").

    python -m studies.length_generalisation --out runs/repro/length_generalisation

The paper's claim: trained at one prompt length, multi-head softmax attention keeps working
on longer prompts, while a linear transformer does not. Why (our reading of their analysis,
in which trained softmax heads implement a debiased gradient-descent step): the softmax
normalises that step's weights, i.e. averages over the L examples of the prompt whatever L
is; linear attention sums over the examples with a scale learned for the training L, so at
2L its prediction is about twice too large.

Setting (the paper's, at reduced scale): d = 5, y = w.x + N(0, 0.1) with w ~ N(0, I_d),
x ~ N(0, I_d); one attention-only layer (no MLP) with 4 heads, no positional embeddings
(`model.position=none`, so the trained model reads prompts of any length); trained with the
loss at the query after exactly N = 20 examples (the paper: L = 40), then tested at every
number of examples up to 2N = 40. Like the paper's model, each token holds an example whole:
the prompt is the sequence [x_0, 0, 0], [x_0, y_0, 1], [x_1, 0, 0], [x_1, y_1, 1], ..., and the
read-out at the query token [x_i, 0, 0] predicts y_i from the pairs before it (the last
coordinate marks labelled tokens). Garg et al.'s interleaved layout ([x_i], [y_i, 0, ...]) needs
positions to pair an x with its y, and learned positions do not extend past the training length.

Mixers: `attention` (softmax), `linear_attention` with feature_map=identity and
normalize=False (the plain linear transformer of the paper and of von Oswald et al.), and, as
a control for the mechanism, `linear_attention` with Katharopoulos et al.'s normalisation
(elu + 1 feature map, divided by the summed keys), which averages like softmax. Each mixer is
trained in two architectures:
  bare    the paper's: linear read-in, the mixer (no biases), linear read-out of its output;
          no residual, no normalisation, no MLP; trained here by a short Adam loop
          (`train_bare`, retrained on every call: ~1 minute each)
  block   the repo's model (`models.model.SequenceModel`: one pre-norm block, attention
          only, final LayerNorm), an ordinary run of the training loop under OUT/<mixer>
          (a second call reuses finished runs)
Writes OUT/length_generalisation.{json,md,png}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict

import numpy as np

from studies import runner

TASK_NAME = 'paired_linear_regression'
N_DIMS = 5
NOISE_STD = float(np.sqrt(0.1))     # the paper's sigma^2 = 0.1
# 'bare': the paper's architecture around the repo's mixer (no norms, no residual, no MLP);
# 'block': the repo's model (one pre-norm block, attention only, final LayerNorm).
ARCHITECTURES = ('bare', 'block')
BARE_WIDTH, BARE_HEADS = 32, 4
BARE_MIXERS = {
    'softmax': ('attention', {'use_bias': False}),
    'linear': ('linear_attention', {'feature_map': 'identity', 'normalize': False,
                                    'use_bias': False}),
    'linear_normalised': ('linear_attention', {'feature_map': 'elu1', 'normalize': True,
                                               'use_bias': False}),
}
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
  """The paper's token layout for noisy linear regression (data/paired_regression.py)."""
  from data.paired_regression import PairedLinearRegression
  return PairedLinearRegression


def study_config(name: str, args):
  """The config of one model: one attention-only layer, 4 heads, width 32, no positions."""
  from configs.common import base_config
  from studies.sweeps import set_key
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


def bare_model(name: str, input_dim: int, seed: int):
  """The paper's architecture around one of the repo's mixers: a linear read-in, one
  multi-head mixer (no bias, no positions), a linear read-out of its output; no residual,
  no normalisation, no MLP. (The paper reads the tokens themselves, width d + 1 per head.)"""
  import jax.numpy as jnp
  import ml_collections
  from flax import nnx
  from models.mixers import MIXERS, MixerSpec
  mixer_name, options = BARE_MIXERS[name]

  class Bare(nnx.Module):
    def __init__(self, rngs):
      spec = MixerSpec(d_model=BARE_WIDTH, num_heads=BARE_HEADS, max_len=0, position='none',
                       dtype=jnp.float32)
      self.read_in = nnx.Linear(input_dim, BARE_WIDTH, use_bias=False, rngs=rngs)
      self.mixer = MIXERS[mixer_name](spec, ml_collections.ConfigDict(options), rngs=rngs)
      self.read_out = nnx.Linear(BARE_WIDTH, 1, use_bias=False, rngs=rngs)

    def __call__(self, inputs_BxTxF):
      return self.read_out(self.mixer(self.read_in(inputs_BxTxF)))

  return Bare(nnx.Rngs(seed))


def train_bare(name: str, task, steps: int, seed: int, log=print):
  """Adam (lr 1e-3, batch 64, gradient clipping at 1) on the squared error at the last query;
  the batch of step t is task.sample(fold_in(key(seed), t)). Returns the trained model."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  model = bare_model(name, task.io().input_dim, seed)
  graphdef, params = nnx.split(model)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  opt_state = optimizer.init(params)
  data_key = jax.random.fold_in(jax.random.key(seed), 1)
  last = task.n_points - 1

  def loss_fn(params, batch):
    outputs = nnx.merge(graphdef, params)(task.model_inputs(batch))
    return jnp.mean((task.predictions(outputs)[:, last] - batch['ys_BxN'][:, last]) ** 2)

  @jax.jit
  def run_steps(params, opt_state, first_step):
    def one(carry, step):
      params, opt_state = carry
      batch = task.sample(jax.random.fold_in(data_key, step), 64)
      loss, grads = jax.value_and_grad(loss_fn)(params, batch)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state),
                                               first_step + jnp.arange(100))
    return params, opt_state, losses.mean()

  for first in range(0, steps, 100):
    params, opt_state, loss = run_steps(params, opt_state, first)
    if (first // 100) % 10 == 9 or first + 100 >= steps:
      log(f'  {name} (bare) step {first + 100}: loss {float(loss):.4f}')
  return nnx.merge(graphdef, params)


def evaluate(predict_fn, test_task, num_prompts: int, seed: int) -> Dict[str, np.ndarray]:
  """Squared errors / d at every number of examples 0 .. 2N of the test prompts: the model,
  least squares and ridge at the noise variance (the Bayes predictor)."""
  import jax
  from baselines.regression import least_squares, ridge
  predictors = {'model': lambda b: test_task.predictions(predict_fn(test_task.model_inputs(b))),
                'least_squares': lambda b, f=least_squares(): f(b['xs_BxNxD'], b['ys_BxN']),
                'ridge': lambda b, f=ridge(NOISE_STD ** 2): f(b['xs_BxNxD'], b['ys_BxN'])}
  errors = {name: [] for name in predictors}
  for block in range(int(np.ceil(num_prompts / 256))):
    batch = test_task.sample(jax.random.fold_in(jax.random.key(seed), block), 256)
    for name, predict in predictors.items():
      preds = np.asarray(predict(batch), np.float64)
      errors[name].append((preds - np.asarray(batch['ys_BxN'])) ** 2 / N_DIMS)
  return {name: np.concatenate(v)[:num_prompts] for name, v in errors.items()}


def jitted(model):
  """inputs_BxTxF -> outputs_BxTx1 of an nnx model, compiled."""
  import jax
  from flax import nnx
  graphdef, state = nnx.split(model)
  apply = jax.jit(lambda state, inputs: nnx.merge(graphdef, state)(inputs))
  return lambda inputs: apply(state, inputs)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True)
  parser.add_argument('--steps', type=int, default=3000)
  parser.add_argument('--train_points', type=int, default=20,
                      help='in-context examples before the trained query (N)')
  parser.add_argument('--num_prompts', type=int, default=1280)
  parser.add_argument('--models', default=','.join(MODELS))
  parser.add_argument('--architectures', default=','.join(ARCHITECTURES))
  args = parser.parse_args(argv)
  from analysis.stats import ci_entry
  from training.loop import restore_run, seed_model, train
  names = [m for m in args.models.split(',') if m]
  architectures = [a for a in args.architectures.split(',') if a]
  for value, known, flag in ((names, MODELS, '--models'), (architectures, ARCHITECTURES,
                                                              '--architectures')):
    for v in value:
      if v not in known:
        print(f'error: {flag}: unknown value {v!r}; known: {", ".join(known)}')
        return 2
  n_train = args.train_points
  cls = paired_task_class()
  result: Dict[str, Any] = {'train_examples': n_train, 'test_examples': 2 * n_train,
                            'n_dims': N_DIMS, 'noise_variance': NOISE_STD ** 2,
                            'steps': args.steps, 'num_prompts': args.num_prompts, 'models': {}}
  for architecture in architectures:
    for name in names:
      config = study_config(name, args)
      start = time.time()
      if architecture == 'block':
        workdir = os.path.join(args.out, name)
        train(config, workdir, log=lambda s: None)
        model = seed_model(restore_run(workdir, log=lambda s: None), 0)
      else:
        model = train_bare(name, cls(config.task.to_dict()), args.steps, config.train.seed)
      test_config = config.task.to_dict()
      test_config['n_points'] = 2 * n_train + 1
      test_task = cls(test_config)
      errors = evaluate(jitted(model), test_task, args.num_prompts, seed=config.eval.seed)
      entry = {'seconds': round(time.time() - start, 1)}
      for key, values in errors.items():
        entry[key] = ci_entry(values)
      result['models'][f'{architecture}/{name}'] = entry
      print(f'{architecture}/{name}: error at N={n_train} '
            f'{entry["model"]["mean"][n_train]:.4f}, at 2N={2 * n_train} '
            f'{entry["model"]["mean"][2 * n_train]:.4f} ({entry["seconds"]}s)')
  runner.write_results(args.out, 'length_generalisation', result, _table(result),
                       plot=lambda path: _plot(result, path))
  return 0


LABELS = {'softmax': 'softmax attention', 'linear': 'linear attention',
          'linear_normalised': 'linear attention, normalised',
          'bare': 'attention only', 'block': 'repo block (+ LayerNorms)'}


def _table(result) -> str:
  n = result['train_examples']
  points = [n // 2, n, 3 * n // 2, 2 * n]
  lines = ['| model | ' + ' | '.join(f'{p} examples' for p in points)
           + ' | error at 2N / error at N |', '|---|' + '---:|' * (len(points) + 1)]
  any_entry = next(iter(result['models'].values()))
  rows = []
  for key, e in result['models'].items():
    architecture, name = key.split('/')
    rows.append((f'{LABELS[name]} ({LABELS[architecture]})', e['model']))
  rows += [('least squares', any_entry['least_squares']), ('ridge (Bayes)', any_entry['ridge'])]
  for label, curve in rows:
    cells = [f'{curve["mean"][p]:.3f} [{curve["lo"][p]:.3f}, {curve["hi"][p]:.3f}]'
             for p in points]
    ratio = curve['mean'][2 * n] / curve['mean'][n]
    lines.append(f'| {label} | ' + ' | '.join(cells) + f' | {ratio:.2f} |')
  lines.append('')
  lines.append(f'squared error / d at the query after that many examples (d={result["n_dims"]}, '
               f'noise variance {result["noise_variance"]:.2f}, so the floor is '
               f'{result["noise_variance"] / result["n_dims"]:.2f}); trained at N={n} only, '
               f'{result["steps"]} steps; {result["num_prompts"]} prompts, 95% bootstrap '
               'intervals')
  return '\n'.join(lines)


def _plot(result, path) -> None:
  plt = runner.pyplot()
  n = result['train_examples']
  architectures = sorted({k.split('/')[0] for k in result['models']},
                         key=ARCHITECTURES.index)
  fig, axes = plt.subplots(1, len(architectures), figsize=(6.5 * len(architectures), 4.2),
                           squeeze=False)
  x = np.arange(2 * n + 1)
  colors = {'softmax': 'C0', 'linear': 'C3', 'linear_normalised': 'C2'}
  any_entry = next(iter(result['models'].values()))
  for ax, architecture in zip(axes[0], architectures):
    for key, entry in result['models'].items():
      arch, name = key.split('/')
      if arch != architecture:
        continue
      ax.plot(x[1:], entry['model']['mean'][1:], color=colors[name], lw=2, label=LABELS[name])
      ax.fill_between(x[1:], entry['model']['lo'][1:], entry['model']['hi'][1:],
                      color=colors[name], alpha=0.2, lw=0)
    ax.plot(x[1:], any_entry['least_squares']['mean'][1:], color='gray', ls=':',
            label='least squares')
    ax.plot(x[1:], any_entry['ridge']['mean'][1:], color='black', ls='--',
            label='ridge (Bayes)')
    ax.axvline(n, color='gray', lw=1)
    ax.text(n + 0.3, 0.92, 'trained here', color='gray', fontsize=8,
            transform=ax.get_xaxis_transform())
    ax.set_yscale('log')
    ax.set_ylim(0.01, 3.0)   # least squares' interpolation peak at d examples is cut
    ax.set_xlabel('number of in-context examples')
    ax.set_ylabel('squared error / d')
    ax.set_title(f'{LABELS[architecture]}: 1 layer, 4 heads, no positions', fontsize=10)
    ax.legend(fontsize=8, loc='lower left')
    ax.grid(alpha=0.3)
  fig.suptitle(f'trained at N={n} examples, tested up to 2N (d={result["n_dims"]})', fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == '__main__':
  sys.exit(main())
