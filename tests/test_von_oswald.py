"""von Oswald et al. (2023): Proposition 1's construction against GD written in NumPy, the
optimal one-step learning rate against a grid search, the sensitivities against finite
differences, and the command's one-line errors."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from studies import von_oswald as vo

SETTINGS = vo.Settings()


def numpy_gd(tokens, eta, num_steps, gamma=0.0):
  """K steps of GD (gamma = 0) or GD++ on one prompt, written from the paper's equations: GD on
  L(w) = 1/(2N) sum (w·x_j - y_j)^2 from w = 0; GD++ also maps every input (context and query)
  x <- x - gamma sum_j x_j x_j^T x before each next step, with the step computed on the inputs
  as they were."""
  tokens = np.asarray(tokens, np.float64)
  x, y, x_q = tokens[:-1, :-1].copy(), tokens[:-1, -1], tokens[-1, :-1].copy()
  n = len(y)
  if gamma == 0.0:
    w = np.zeros(x.shape[1])
    for _ in range(num_steps):
      w -= eta / n * x.T @ (x @ w - y)
    return w @ x_q
  residual, pred = y.copy(), 0.0
  for _ in range(num_steps):
    gram = x.T @ x
    step_w = eta / n * x.T @ residual        # one GD step from 0 on the current residuals
    residual, pred = residual - x @ step_w, pred + step_w @ x_q
    x, x_q = x - gamma * x @ gram, x_q - gamma * gram @ x_q
  return pred


def prompts(num, seed=0, settings=SETTINGS):
  return vo.sample_prompts(jax.random.key(seed), num, settings)


@pytest.fixture(scope='module')
def prompts64():
  """4,000 prompts in float64 (NumPy arrays; tests use them inside jax.enable_x64)."""
  with jax.enable_x64(True):
    tokens, targets = prompts(4000)
    return np.asarray(tokens), np.asarray(targets)


def test_prompts_follow_the_paper_setting(prompts64):
  t, targets = prompts64
  assert t.dtype == np.float64
  assert t.shape == (4000, 11, 11) and np.all(t[:, -1, -1] == 0)
  assert np.all(np.abs(t[..., :-1]) <= 0.5) and abs(np.var(t[..., :-1]) - 1 / 12) < 2e-3
  # y_j = w·x_j with the query's w: recover w from the first 10 examples, predict the target
  for b in range(3):
    w = np.linalg.solve(t[b, :-1, :-1], t[b, :-1, -1])
    np.testing.assert_allclose(t[b, -1, :-1] @ w, float(targets[b]), rtol=1e-8, atol=1e-8)


def test_construction_is_gd_to_float_precision(prompts64):
  """Proposition 1: the LSA with the constructed weights predicts exactly what K steps of GD
  (gamma = 0) or GD++ (gamma > 0) predict, for K = 1, 2, 3 (the recurrent model)."""
  eta = 5.0
  with jax.enable_x64(True):
    both = jax.jit(lambda tokens, gamma: [
        (jax.vmap(lambda t: vo.lsa_predict(
            vo.stack_weights([vo.construction(eta, 10, 10, gamma=gamma)]), t, k))(tokens),
         jax.vmap(lambda t: vo.gd_predict(t, eta, k))(tokens)) for k in (1, 2, 3)])
    tokens = prompts64[0][:16]
    for gamma in (0.0, 0.05):
      for k, (lsa, gd) in zip((1, 2, 3), both(jnp.asarray(tokens), gamma)):
        expected = np.array([numpy_gd(t, eta, k, gamma) for t in tokens])
        np.testing.assert_allclose(np.asarray(lsa), expected, rtol=1e-12, atol=1e-12)
        if gamma == 0.0:
          np.testing.assert_allclose(np.asarray(gd), expected, rtol=1e-12, atol=1e-12)
      assert np.abs(expected).min() > 1e-3   # not trivially zero


def test_one_gd_layer_leaves_residuals_on_the_context_tokens(prompts64):
  """The constructed layer writes y_j - Δw·x_j into every context token and -Δw·x_q into the
  query token, and leaves every input untouched."""
  t = prompts64[0][0]
  eta = 3.0
  with jax.enable_x64(True):
    out = np.asarray(vo.lsa_layer(vo.construction(eta, 10, 10), jnp.asarray(t), 10))
  x, y = t[:-1, :-1], t[:-1, -1]
  delta_w = eta / 10 * x.T @ y
  np.testing.assert_allclose(out[:, :-1], np.asarray(t[:, :-1]), atol=1e-14)
  np.testing.assert_allclose(out[:-1, -1], y - x @ delta_w, atol=1e-12)
  np.testing.assert_allclose(out[-1, -1], -np.asarray(t[-1, :-1]) @ delta_w, atol=1e-12)


def test_optimal_eta_closed_form_matches_a_grid_search():
  """eta* from the uniform-input moments and from sample moments against a brute-force grid
  over the mean loss of one GD step, computed in NumPy on 100,000 prompts."""
  rng = np.random.default_rng(0)
  d = n = 10
  for input_range in (1.0, 2.0):
    half = input_range / 2
    x = rng.uniform(-half, half, (100_000, n + 1, d))
    w = rng.normal(size=(100_000, d))
    y = np.einsum('btd,bd->bt', x, w)
    g = np.einsum('bn,bnd,bd->b', y[:, :-1], x[:, :-1], x[:, -1]) / n
    grid = np.linspace(0.01, 4 * 6.0606 / input_range ** 2, 800)
    losses = np.array([0.5 * np.mean((y[:, -1] - e * g) ** 2) for e in grid])
    grid_eta = grid[np.argmin(losses)]
    closed_eta, closed_loss = vo.optimal_eta_uniform(d, n, input_range)
    assert abs(closed_eta - grid_eta) / closed_eta < 0.02
    assert abs(closed_loss - losses.min()) / closed_loss < 0.02
    y_tokens = y.copy()
    y_tokens[:, -1] = 0.0                     # the query token's y-entry
    tokens = jnp.asarray(np.concatenate([x, y_tokens[..., None]], -1)[:20_000])
    moments = vo.optimal_eta_moments(tokens, jnp.asarray(y[:20_000, -1]))
    sub = np.array([0.5 * np.mean((y[:20_000, -1] - e * g[:20_000]) ** 2) for e in grid])
    assert abs(moments - grid[np.argmin(sub)]) <= 2 * (grid[1] - grid[0])
  assert vo.optimal_eta_uniform(10, 10, 1.0)[1] == pytest.approx(0.2062, abs=1e-4)
  # the line search used for K > 1 steps finds the one-step optimum of its prompts
  assert vo.tune_eta(tokens[:500], jnp.asarray(y[:500, -1]), 1) == pytest.approx(
      vo.optimal_eta_moments(tokens[:500], jnp.asarray(y[:500, -1])), rel=1e-3)


def test_sensitivities_match_finite_differences(prompts64):
  """d y_hat / d x_q of a random 2-layer stacked LSA and of 2 GD steps against central
  differences; GD's one-step sensitivity against its closed form (eta/N) sum_j y_j x_j; and the
  measures of a model against itself."""
  with jax.enable_x64(True):
    tokens, targets = jnp.asarray(prompts64[0][:8]), jnp.asarray(prompts64[1][:8])
    params = vo.init_lsa(jax.random.key(5), 2, 11, 2.0)
    models = {'lsa': lambda t: vo.lsa_predict(params, t, 2),
              'gd': lambda t: vo.gd_predict(t, 4.0, 2)}
    step = 1e-6
    shifts = np.concatenate([np.eye(10), -np.eye(10)]) * step      # +/- step on each x_q entry

    @jax.jit
    def check(tokens):
      out = {}
      for name, fn in models.items():
        sens = jax.vmap(lambda t: vo.query_sensitivity(fn, t))(tokens)
        shifted = jnp.broadcast_to(tokens[:, None], (tokens.shape[0], 20) + tokens.shape[1:])
        shifted = shifted.at[:, :, -1, :-1].add(shifts[None])              # B x 20 x T x E
        values = jax.vmap(jax.vmap(fn))(shifted)
        out[name] = (sens, (values[:, :10] - values[:, 10:]) / (2 * step))
      out['gd1'] = jax.vmap(lambda t: vo.query_sensitivity(
          lambda u: vo.gd_predict(u, 4.0, 1), t))(tokens)
      out['same'] = vo.measures(models['lsa'], models['lsa'], tokens, targets)
      out['flipped'] = vo.measures(models['gd'], lambda t: -models['gd'](t), tokens, targets)
      return out
    out = check(tokens)
    for name in models:
      sens, numeric = map(np.asarray, out[name])
      np.testing.assert_allclose(sens, numeric, rtol=1e-6, atol=1e-9)
      assert np.abs(sens).min(axis=1).max() > 1e-4
    t = np.asarray(tokens)
    np.testing.assert_allclose(np.asarray(out['gd1']),
                               0.4 * np.einsum('bnd,bn->bd', t[:, :-1, :-1], t[:, :-1, -1]),
                               rtol=1e-12)
    same, flipped = out['same'], out['flipped']
    assert float(same['model_cos']) == pytest.approx(1.0, abs=1e-12)
    assert float(same['preds_diff']) == 0.0 and float(same['model_diff']) == 0.0
    assert float(flipped['model_cos']) == pytest.approx(-1.0, abs=1e-12)


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
  from core import ConfigError
  with pytest.raises(ConfigError, match=r"config.batch_size=0 is invalid: a positive integer"):
    vo.Settings(batch_size=0).validate()
  with pytest.raises(ConfigError, match=r"config.input_range=-1.0 is invalid"):
    vo.Settings(input_range=-1.0).validate()
  with pytest.raises(ConfigError, match=r"config.eval_every=300 is invalid"):
    vo.Settings(train_steps=200, eval_every=300).validate()
  for argv in (['--layers', '1,x'], ['--stacked', '0'], ['--steps', '-3']):
    with pytest.raises(SystemExit):
      vo.main(['--out', str(tmp_path / 'o')] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ')
  assert not (tmp_path / 'o' / 'von_oswald.json').exists()


def test_tiny_study_writes_its_files_and_reuses_finished_models(tmp_path):
  settings = vo.Settings(train_steps=4, stacked_steps=4, batch_size=16, eval_every=2,
                         num_eval_prompts=32, gd_plus_steps=2)
  lines = []
  summary = vo.run_study(settings, str(tmp_path), layers=(1,), stacked_layers=(), log=lines.append)
  model = summary['models']['recurrent_K1']
  assert model['curves']['step'] == [0, 2, 4]
  assert set(model['final']) >= {'loss_lsa', 'loss_ref_gd', 'preds_diff_gd', 'model_cos_gd',
                                 'model_diff_gd'}
  for suffix in ('json', 'md', 'png'):
    assert (tmp_path / f'von_oswald.{suffix}').stat().st_size > 0
  table = json.loads((tmp_path / 'von_oswald.json').read_text())['table']
  assert table.startswith('| 1 LSA layer vs 1 GD step') and '| recurrent_K1 |' in table
  lines.clear()
  vo.run_study(settings, str(tmp_path), layers=(1,), stacked_layers=(), log=lines.append)
  assert any('reusing' in line for line in lines)
  assert not any('training' in line for line in lines)
