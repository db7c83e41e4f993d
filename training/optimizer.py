"""AdamW with warm-up, cosine or constant schedule, and global-norm clipping."""
from __future__ import annotations

import math

import jax
import optax

from core import require

SCHEDULES = ('cosine', 'constant')


def _finite_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def validate_optimizer_config(train_config) -> None:
  """Raises ConfigError (one line) for any bad optimiser key; call before building."""
  t = train_config
  require(t.schedule in SCHEDULES, 'train.schedule', t.schedule, f'allowed: {", ".join(SCHEDULES)}')
  require(_finite_number(t.learning_rate) and t.learning_rate > 0, 'train.learning_rate',
          t.learning_rate, 'must be a finite number > 0')
  require(isinstance(t.warmup_steps, int) and 0 <= t.warmup_steps, 'train.warmup_steps',
          t.warmup_steps, 'must be an integer >= 0')
  require(_finite_number(t.final_lr_fraction) and 0 <= t.final_lr_fraction <= 1,
          'train.final_lr_fraction', t.final_lr_fraction, 'must be in [0, 1]')
  require(_finite_number(t.grad_clip_norm) and t.grad_clip_norm >= 0, 'train.grad_clip_norm',
          t.grad_clip_norm, 'must be a finite number >= 0 (0: off)')
  require(_finite_number(t.weight_decay) and t.weight_decay >= 0, 'train.weight_decay',
          t.weight_decay, 'must be a finite number >= 0')
  for key in ('adam_b1', 'adam_b2'):
    require(_finite_number(t[key]) and 0 <= t[key] < 1, f'train.{key}', t[key],
            'must be in [0, 1)')


def learning_rate_schedule(train_config, learning_rate=None):
  """Warm-up then cosine or constant. `learning_rate` (may be traced) overrides the config's."""
  t = train_config
  peak = t.learning_rate if learning_rate is None else learning_rate
  warmup = optax.linear_schedule(0.0, peak, max(t.warmup_steps, 1))
  if t.schedule == 'cosine':
    decay_steps = max(t.num_steps - t.warmup_steps, 1)
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=t.final_lr_fraction)
  else:
    after = optax.constant_schedule(peak)
  if t.warmup_steps == 0:
    return after
  return optax.join_schedules([warmup, after], [t.warmup_steps])


# Parameters the defining papers exclude from weight decay even though they are matrices:
# state-space dynamics (Mamba's A_log, S4D's A and step), Hyena's implicit filter network.
NO_DECAY_NAMES = ('A_log', 'log_dt', 'log_A_real', 'A_imag', 'sine_freq', 'filter_in',
                  'filter_inner', 'filter_out', 'embedding')


def _is_norm_or_bias(name: str) -> bool:
  """Path components of normalisation layers and of biases / norm gains, whatever their ndim:
  'mixer_norm', 'norm' (GLA's and retention's per-head norms hold (heads, width) scales and
  biases), 'bias', 'input_bias', 'dt_bias', 'filter_bias' (Hyena's, shape (1, d)), 'scale'."""
  name = name.lower()
  return 'norm' in name or 'bias' in name or name == 'scale'


def _decays(path, param) -> bool:
  """Decay weight matrices only: not biases, norm scales (by name: a per-head norm's scale is
  2-D), embeddings or SSM dynamics."""
  names = [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]
  return (param.ndim >= 2 and not any(n in NO_DECAY_NAMES for n in names)
          and not any(_is_norm_or_bias(n) for n in names))


def make_optimizer(train_config, learning_rate=None,
                   weight_decay=None) -> optax.GradientTransformation:
  """AdamW of the config; `learning_rate` / `weight_decay` (may be traced: one value per seed
  of a vmapped run) override the config's. The state's structure never depends on them."""
  t = train_config
  validate_optimizer_config(t)
  decay = t.weight_decay if weight_decay is None else weight_decay
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(_decays, params)
  adamw = optax.adamw(learning_rate_schedule(t, learning_rate), b1=t.adam_b1, b2=t.adam_b2,
                      eps=1e-8, weight_decay=decay, mask=decay_mask)
  if t.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), adamw)
  return adamw
