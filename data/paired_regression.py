"""Noisy linear regression with each example in one token (He et al. 2025's layout).

`paired_linear_regression`: y = w.x + N(0, noise_std^2) as `noisy_linear_regression`, but the
prompt is the sequence [x_0, 0, 0], [x_0, y_0, 1], [x_1, 0, 0], [x_1, y_1, 1], ...: the
read-out at the query token [x_i, 0, 0] predicts y_i from the pairs before it, and the last
coordinate marks labelled tokens. Garg et al.'s interleaved layout ([x_i], [y_i, 0, ...]) needs
positions to pair an x with its y, and learned positions do not extend past the training
length; in this layout a model without positions reads prompts of any length, which is what
reproductions/length_generalisation.py tests. `loss_at='last'` (the paper's objective) scores
only the query after all n_points - 1 examples; 'all' scores every query.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from core import ModelIO, require
from data.base import register_task
from data.regression import NoisyLinearRegression


@register_task('paired_linear_regression')
class PairedLinearRegression(NoisyLinearRegression):
  """y = w.x + noise; tokens [x_i, 0, 0] (query) then [x_i, y_i, 1] (example)."""
  extra_defaults = dict(noise_std=float(np.sqrt(0.1)), loss_at='last')

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
    """features_Bx(2N)x(D+2): [x_0, 0, 0], [x_0, y_0, 1], [x_1, 0, 0], ..."""
    xs_BxNxD, ys_BxN = batch['xs_BxNxD'], batch['ys_BxN']
    batch_size, num_points, _ = xs_BxNxD.shape
    zeros_BxNx1 = jnp.zeros((batch_size, num_points, 1), xs_BxNxD.dtype)
    query_BxNxF = jnp.concatenate([xs_BxNxD, zeros_BxNx1, zeros_BxNx1], axis=-1)
    example_BxNxF = jnp.concatenate([xs_BxNxD, ys_BxN[..., None], zeros_BxNx1 + 1.0], axis=-1)
    return jnp.stack([query_BxNxF, example_BxNxF], axis=2).reshape(
        batch_size, 2 * num_points, self.n_dims + 2)
