"""studies/preference_bandit.py and studies/nash.py: the commands write their JSON and PNG,
on-policy DPO learns the far reward, offline pairs are a fixed dataset, on-policy pairs follow
the policy."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data import bandit
from studies import nash, preference_bandit as pb


def _png_ok(path):
  import matplotlib.image
  image = matplotlib.image.imread(str(path))
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
  assert np.ptp(image[..., :3]) > 0          # not a blank canvas


def test_bandit_command_writes_json_and_png(tmp_path, capsys):
  out = tmp_path / 'bandit'
  steps, seeds, batch = 6, 2, 8
  # num_pairs == batch: the offline runs train on the whole (fixed) dataset at every step
  pb.main(['--out', str(out), '--steps', str(steps), '--batch', str(batch), '--seeds',
           str(seeds), '--num_records', '3', '--loss_type', 'sigmoid', '--num_pairs',
           str(batch), '--extra_num_pairs', '', '--docs_png', ''])
  assert '| far (70;' in capsys.readouterr().out
  with open(out / 'bandit.json') as f:
    result = json.load(f)
  assert {'settings', 'recorded_steps', 'reference_probs', 'rewards', 'runs'} <= set(result)
  assert result['recorded_steps'] == [0, 3, 6]
  assert set(result['rewards']) == {'far', 'near'}
  for info in result['rewards'].values():
    assert len(info['table']) == 100
    assert {'expected_reward', 'kl', 'probs'} <= set(info['optimum'])
  runs = result['runs']
  assert sorted((r['reward'], r['mode']) for r in runs) == [
      (w, m) for w in ('far', 'near') for m in ('offline', 'on_policy')]
  for run in runs:
    assert np.shape(run['expected_reward']) == (seeds, steps + 1)
    assert np.shape(run['kl']) == (seeds, steps + 1)
    probs = np.asarray(run['policy_probs'])
    assert probs.shape == (3, 100)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_allclose(probs[0], result['reference_probs'], atol=1e-6)
    np.testing.assert_allclose(np.asarray(run['kl'])[:, 0], 0.0, atol=1e-5)
    assert {'expected_reward_mean', 'kl_mean'} <= set(run['final'])
    # the pairs each training step used: offline the same every step, on-policy new ones
    digest = np.asarray(run['pair_digest'])[:, 1:]            # [seeds, steps]
    if run['mode'] == 'offline':
      assert np.all(digest == digest[:, :1])
    else:
      assert all(len(set(d.tolist())) == steps for d in digest)
  _png_ok(out / 'bandit.png')


def test_nash_command_writes_json_and_png(tmp_path, capsys):
  out = tmp_path / 'nash'
  nash.main(['--out', str(out), '--steps', '30', '--docs_png', ''])
  assert 'nash_md' in capsys.readouterr().out
  with open(out / 'nash.json') as f:
    result = json.load(f)
  assert {'settings', 'preference_matrix', 'equilibrium', 'bt_fit', 'methods'} <= set(result)
  np.testing.assert_allclose(result['equilibrium'], [1 / 3] * 3, atol=1e-6)
  assert result['bt_fit']['residual'] > result['bt_fit']['lower_bound'] - 1e-4 > 0
  assert result['bt_fit']['transitive_control']['residual'] < 1e-6
  assert {'nash_md', 'mirror_descent_selfplay', 'bt_reward_eta0.1', 'bt_reward_eta1'} == set(
      result['methods'])
  for m in result['methods'].values():
    assert np.shape(m['probs']) == (31, 3)
    assert np.shape(m['exploitability']) == (31,) and np.shape(m['distance_l1']) == (31,)
  _png_ok(out / 'nash.png')


def test_nash_md_converges_and_the_bt_route_does_not():
  args = nash.parse_args(['--steps', '500', '--bt_eta', '0.1', '--docs_png', ''])
  methods = nash.run_study(args)['methods']
  assert methods['nash_md']['final_distance_l1'] < 0.05
  assert methods['nash_md']['final_exploitability'] < 0.01
  assert methods['bt_reward_eta0.1']['mean_exploitability_last'] > 0.1


def _table(center):
  return bandit.reward_table(center)[None]


def test_on_policy_dpo_raises_the_far_reward():
  steps = 80
  fn = pb.make_run('on_policy', 'sigmoid', steps=steps, batch=32, num_pairs=32, beta=0.1,
                   lr=0.05, temperature=0.1, num_tokens=9, vocab_size=100)
  out = fn(jax.random.split(jax.random.key(1), 2), _table(bandit.FAR_CENTER))
  er = np.asarray(out['expected_reward'][0])                 # [seeds, steps + 1]
  start = float(bandit.expected_reward(bandit.reference_logits(), bandit.reward_table()))
  np.testing.assert_allclose(er[:, 0], start, rtol=1e-5)
  assert np.all(er[:, -1] > start + 0.02), (start, er[:, -1])
  assert np.all(np.asarray(out['kl'][0])[:, -1] > 0.1)


def test_offline_pairs_are_fixed_and_on_policy_pairs_follow_the_policy():
  table = bandit.reward_table(bandit.FAR_CENTER)
  ref = bandit.reference_logits(num_tokens=9)
  other = ref.at[:, 70].add(5.0)
  dataset = pb.sample_pairs(jax.random.key(0), ref, table, 16, 0.1)
  index = jnp.arange(16)
  k1, k2 = jax.random.split(jax.random.key(3))
  # offline: the dataset's rows whatever the key and the policy
  for key, logits in ((k1, ref), (k2, other)):
    pairs = pb.step_pairs('offline', key, logits, dataset, index, table, 16, 0.1)
    for a, b in zip(pairs, dataset):
      np.testing.assert_array_equal(a, b)
  # on-policy: deterministic given key and policy, different when the policy changes
  same = [pb.step_pairs('on_policy', k1, ref, dataset, index, table, 16, 0.1) for _ in range(2)]
  np.testing.assert_array_equal(same[0].chosen, same[1].chosen)
  moved = pb.step_pairs('on_policy', k1, other, dataset, index, table, 16, 0.1)
  assert not np.array_equal(same[0].chosen, moved.chosen)
  assert np.mean(moved.chosen == 70) > np.mean(same[0].chosen == 70)


def test_offline_epochs_visit_every_pair_once():
  order = np.asarray(pb.epoch_order(jax.random.key(0), 12, steps=9, batch=4))   # 3 epochs
  for epoch in order.reshape(3, 12):
    assert sorted(epoch.tolist()) == list(range(12))


def test_filtered_sft_has_no_negative_gradient_and_budgets_pick_the_best_reward():
  """The bandit's sft objective (likelihood of the chosen responses only) raises the reward;
  the KL-budget summary picks, per seed, the best reward among steps within the budget and
  the first step reaching it."""
  steps = 40
  fn = pb.make_run('on_policy', 'sft', steps=steps, batch=32, num_pairs=32, beta=0.1,
                   lr=0.05, temperature=0.1, num_tokens=9, vocab_size=100)
  out = fn(jax.random.split(jax.random.key(1), 2), _table(bandit.NEAR_CENTER))
  er = np.asarray(out['expected_reward'][0])
  assert np.all(er[:, -1] > er[:, 0] + 0.01)
  er_SxT = np.array([[0.1, 0.5, 0.9, 0.95], [0.2, 0.3, 0.4, 0.8]])
  kl_SxT = np.array([[0.0, 0.4, 1.5, 3.0], [0.0, 0.1, 0.2, 0.6]])
  got = pb.reward_at_kl_budgets(er_SxT, kl_SxT)
  assert got['0.5']['expected_reward'] == pytest.approx((0.5 + 0.4) / 2)
  assert got['0.5']['step'] == pytest.approx((1 + 2) / 2)
  assert got['2']['expected_reward'] == pytest.approx((0.9 + 0.8) / 2)


def test_frontier_is_the_best_score_at_or_below_each_kl(tmp_path):
  from studies import preference_frontier as pf
  pts = np.array([[2.0, 0.5], [0.5, 0.3], [1.0, 0.2], [3.0, 0.9], [0.1, 0.25]])
  got = pf.frontier(pts)
  np.testing.assert_allclose(got[:, 0], [0.1, 0.5, 1.0, 2.0, 3.0])
  np.testing.assert_allclose(got[:, 1], [0.25, 0.3, 0.3, 0.5, 0.9])
  evals = lambda rows: [{'step': s, 'eval/kl': k, 'eval/policy_reward': r,
                         'eval/policy_length': n} for s, k, r, n in rows]
  runs = [{'name': 'a', 'objective': {'name': 'preference', 'loss_type': 'sigmoid',
                                      'mode': 'on_policy', 'beta': 0.1},
           'evals': evals([(0, 0.0, 0.2, 6.0), (40, 0.4, 0.3, 7.0), (80, 1.5, 0.6, 7.0)]),
           'steps': 80},
          {'name': 'b', 'objective': {'name': 'sft', 'mode': 'offline'},
           'evals': evals([(0, 0.0, 0.2, 6.0), (40, 0.2, 0.25, 2.0)]), 'steps': 40}]
  summary = pf.summarise(runs, min_length=6)
  dpo = summary['objectives']['sigmoid (on-policy)']['budgets']
  assert dpo['0.5'] == {'score': 0.3, 'step': 40} and dpo['2']['score'] == 0.6
  flags = {r['name']: r['length_hacked'] for r in summary['runs']}
  assert flags == {'a': False, 'b': True}
  assert 'under the minimum' in pf.markdown(summary)


def test_dynamics_exact_accuracy_and_distinguishable_behaviours_first():
  """The closed-form accuracy against Monte Carlo on fresh pairs, and the study's claim at a
  few steps: the margin of a more distinguishable behaviour grows faster."""
  from studies import preference_dynamics as pd
  deltas = jnp.array([0.5, 2.0])
  diff, directions, blocks = pd.make_data(jax.random.key(0), deltas, dim=8, pairs=200_000,
                                          sigma=1.0)
  theta = jax.random.normal(jax.random.key(1), (8,))
  mc = np.mean(np.asarray(diff @ theta) > 0, axis=1)
  np.testing.assert_allclose(np.asarray(pd.exact_accuracy(theta, directions, blocks, deltas)),
                             mc, atol=0.005)
  out = pd.run(jax.random.key(2), deltas, dim=8, pairs=256, sigma=1.0, beta=0.1, lr=2.0,
               steps=50)
  margin = np.asarray(out['margin'])
  assert margin[0].tolist() == [0.0, 0.0]
  assert np.all(margin[10:, 1] > 2 * margin[10:, 0])
  assert np.asarray(out['preference'])[-1, 1] > np.asarray(out['preference'])[-1, 0]


def test_zoo_table_names_sft_and_shows_lengths():
  from analysis.sweep_tables import preference_table
  evals = lambda length: {'eval/reference_reward': 0.18, 'eval/policy_reward': 0.25,
                          'eval/reference_accept_rate': 0.016, 'eval/policy_accept_rate': 0.03,
                          'eval/reference_length': 6.2, 'eval/policy_length': length,
                          'eval/win_rate': 0.6, 'eval/kl': 0.7, 'eval/accuracy_mean': 0.7,
                          'eval/loss_mean': 1.9}
  summary = {
      'sft_on_policy': {'result': {'objective': {'name': 'sft', 'loss_type': 'sigmoid',
                                                 'mode': 'on_policy'},
                                   'first_eval': evals(6.2), 'last_eval': evals(5.0),
                                   'last_step': 200}},
      'ipo': {'result': {'objective': {'name': 'preference', 'loss_type': 'ipo',
                                       'mode': 'offline'},
                         'first_eval': evals(6.2), 'last_eval': evals(7.5), 'last_step': 200}}}
  rows = [line.split('|')[1:-1] for line in preference_table(summary).splitlines()[2:]]
  cells = {r[0].strip(): [c.strip() for c in r] for r in rows}
  assert cells['sft_on_policy'][1] == 'sft' and cells['ipo'][1:3] == ['ipo', 'offline']
  assert cells['sft_on_policy'][6].endswith('-> 5.000') and cells['ipo'][6].endswith('-> 7.500')
