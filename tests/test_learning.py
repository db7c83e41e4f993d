"""A tiny transformer trained for 800 steps learns linear regression in context."""
import jax
import jax.numpy as jnp
import numpy as np

from analysis.base import make_model_fns
from configs.linear_regression import get_config
from training.loop import restore_model, train


def test_tiny_model_beats_averaging_at_late_positions(tmp_path):
  config = get_config('tiny')
  config.task.n_dims, config.task.n_points = 4, 12
  config.model.num_layers, config.model.d_model = 2, 48
  config.train.update(dict(num_steps=800, batch_size=64, learning_rate=1e-3, warmup_steps=80,
                           steps_per_call=20, log_every=20, checkpoint_every=800,
                           progress=False))
  workdir = str(tmp_path / 'run')
  train(config, workdir, devices=jax.devices()[:1], log=lambda s: None)
  config, task, model, _ = restore_model(workdir)
  batch = task.sample(jax.random.key(777), 512, 0)       # fresh prompts
  preds = np.asarray(task.predictions(make_model_fns(model, task).predict(batch)))
  xs, ys = np.asarray(batch['xs_BxNxD']), np.asarray(batch['ys_BxN'])
  # Averaging estimator (Garg et al.): w_hat = mean_j y_j x_j over the previous examples.
  avg = np.zeros_like(ys)
  for i in range(1, ys.shape[1]):
    w_hat = (ys[:, :i, None] * xs[:, :i]).mean(1)
    avg[:, i] = (xs[:, i] * w_hat).sum(-1)
  late = slice(8, 12)
  model_err = ((preds[:, late] - ys[:, late]) ** 2).mean() / 4
  avg_err = ((avg[:, late] - ys[:, late]) ** 2).mean() / 4
  zero_err = (ys[:, late] ** 2).mean() / 4
  assert model_err < avg_err < zero_err, (model_err, avg_err, zero_err)
