"""A mixture of regression function classes (Panwar et al. 2024, "In-Context Learning through
the Bayesian Prism"): each prompt's function is drawn from one class of a weighted mixture.

Classes (`task.components`, weights `task.weights`, comma-separated):
  dense    w ~ N(0, I_d)
  sparse   w ~ N(0, I_d) restricted to `sparsity` coordinates chosen uniformly (Garg's sparse task)
and y = y_scale * w.x + N(0, noise_std^2). With dense and sparse at weights 0.5 / 0.5 this is
Panwar et al.'s DR + SR mixture. The Bayes-optimal predictor of the whole mixture (the posterior
mean over classes and supports) is `baselines.regression.mixture_bayes`; `bayes_prior()` gives it
the prior in closed form.

A function's parameters carry its class index (`component`), so a prompt's class is known to
analyses; `class_weights` of a bound copy can be changed to draw prompts of one class only
(`with_weights`), e.g. dense-only or sparse-only evaluation prompts of a mixture-trained model.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from core import require
from data.base import register_task
from data.regression import RegressionTask, _is_int, _is_number

COMPONENT_KINDS = ('dense', 'sparse')


def parse_mixture(components: str, weights: str) -> Tuple[Tuple[str, ...], Tuple[float, ...]]:
  """('dense', 'sparse'), (0.5, 0.5) from 'dense,sparse' and '0.5,0.5'; ConfigError if bad.

  Weights are normalised to sum 1; a weight may be 0 (the class is never drawn).
  """
  require(isinstance(components, str) and components.strip(), 'task.components', components,
          f'a comma-separated list of classes from {", ".join(COMPONENT_KINDS)}')
  names = tuple(c.strip() for c in components.split(','))
  for name in names:
    require(name in COMPONENT_KINDS, 'task.components', components,
            f'unknown class {name!r}; classes are {", ".join(COMPONENT_KINDS)}')
  require(len(set(names)) == len(names), 'task.components', components,
          'each class at most once')
  require(isinstance(weights, str) and weights.strip(), 'task.weights', weights,
          f'a comma-separated list of {len(names)} numbers >= 0, one per class')
  try:
    values = tuple(float(w) for w in weights.split(','))
  except ValueError:
    values = ()
  require(len(values) == len(names) and all(math.isfinite(v) and v >= 0 for v in values)
          and sum(values) > 0, 'task.weights', weights,
          f'{len(names)} comma-separated numbers >= 0 (one per class of '
          f'task.components={components!r}) with a positive sum')
  total = sum(values)
  return names, tuple(v / total for v in values)


@register_task('mixture_regression')
class MixtureRegression(RegressionTask):
  """y = y_scale * w.x + eps, w drawn from a weighted mixture of dense and k-sparse Gaussians."""
  extra_defaults = dict(components='dense,sparse', weights='0.5,0.5', sparsity=2,
                        noise_std=0.1)

  def _validate(self, cfg):
    self.components, weights = parse_mixture(cfg['components'], cfg['weights'])
    self.class_weights = np.asarray(weights, np.float64)
    s = cfg['sparsity']
    require(_is_int(s) and 1 <= s <= cfg['n_dims'], 'task.sparsity', s,
            f'an integer in [1, n_dims={cfg["n_dims"]}]')
    noise = cfg['noise_std']
    require(_is_number(noise) and math.isfinite(noise) and noise >= 0, 'task.noise_std', noise,
            'a finite number >= 0')

  @property
  def sparsity(self) -> int:
    return int(self.cfg['sparsity'])

  @property
  def noise_std(self) -> float:
    return float(self.cfg['noise_std'])

  def class_signal(self, kind: str) -> int:
    """E[(w.x)^2] / y_scale^2 of one class: the number of non-zero weights."""
    return self.n_dims if kind == 'dense' else self.sparsity

  def error_normaliser(self) -> float:
    """E[(w.x)^2] under the mixture: sum_c weight_c * (d or k), so predicting 0 scores 1."""
    return float(sum(w * self.class_signal(c)
                     for c, w in zip(self.components, self.class_weights)))

  def with_weights(self, weights) -> 'MixtureRegression':
    """A copy drawing its prompts from the same classes at other weights (e.g. (0, 1):
    sparse-only prompts); its error normaliser follows the new weights."""
    values = np.asarray(weights, np.float64)
    require(values.shape == self.class_weights.shape and np.all(values >= 0) and values.sum() > 0,
            'weights', tuple(weights), f'{len(self.components)} numbers >= 0 with a positive sum')
    copied = copy.copy(self)
    copied.class_weights = values / values.sum()
    return copied

  def bayes_prior(self) -> List[Dict[str, object]]:
    """The prior over y_scale * w as the Bayes predictor needs it: per class its name, weight,
    support size (d for dense) and prior variance of a non-zero weight (y_scale^2)."""
    return [{'name': c, 'weight': float(w), 'support_size': self.class_signal(c),
             'variance': float(self.cfg['y_scale']) ** 2}
            for c, w in zip(self.components, self.class_weights)]

  def label_noise(self, key, shape):
    return self.noise_std * jax.random.normal(key, shape)

  def _draw_function(self, key):
    k_class, k_w, k_support = jax.random.split(key, 3)
    log_weights = jnp.log(jnp.asarray(self.class_weights, jnp.float32))
    component = jax.random.categorical(k_class, log_weights)
    w_D = jax.random.normal(k_w, (self.n_dims,))
    # A uniformly random k-subset: the k smallest of d uniform keys.
    order_D = jnp.argsort(jax.random.uniform(k_support, (self.n_dims,)))
    in_support_D = jnp.zeros((self.n_dims,)).at[order_D[:self.sparsity]].set(1.0)
    kinds = jnp.asarray([COMPONENT_KINDS.index(c) for c in self.components], jnp.int32)
    is_sparse = kinds[component] == COMPONENT_KINDS.index('sparse')
    mask_D = jnp.where(is_sparse, in_support_D, 1.0)
    return {'w_D': w_D * mask_D, 'component': component.astype(jnp.int32)}

  def _evaluate_one(self, params, xs_NxD):
    return xs_NxD @ params['w_D']
