"""AdamW with warm-up, cosine or constant schedule, and global-norm clipping."""
from __future__ import annotations

import jax
import optax

from data.base import require

SCHEDULES = ('cosine', 'constant')


def learning_rate_schedule(train_config):
  t = train_config
  require(t.schedule in SCHEDULES, 'train.schedule', t.schedule, f'allowed: {", ".join(SCHEDULES)}')
  require(t.learning_rate > 0, 'train.learning_rate', t.learning_rate, 'must be > 0')
  require(0 <= t.warmup_steps, 'train.warmup_steps', t.warmup_steps, 'must be >= 0')
  warmup = optax.linear_schedule(0.0, t.learning_rate, max(t.warmup_steps, 1))
  if t.schedule == 'cosine':
    decay_steps = max(t.num_steps - t.warmup_steps, 1)
    after = optax.cosine_decay_schedule(t.learning_rate, decay_steps, alpha=t.final_lr_fraction)
  else:
    after = optax.constant_schedule(t.learning_rate)
  if t.warmup_steps == 0:
    return after
  return optax.join_schedules([warmup, after], [t.warmup_steps])


# Parameters the defining papers exclude from weight decay even though they are matrices:
# state-space dynamics (Mamba's A_log, S4D's A and step), Hyena's implicit filter network.
NO_DECAY_NAMES = ('A_log', 'log_dt', 'log_A_real', 'A_imag', 'sine_freq', 'filter_in',
                  'filter_inner', 'filter_out', 'embedding')


def _decays(path, param) -> bool:
  """Decay matrices only (not biases, norm scales, embeddings, SSM dynamics)."""
  names = [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]
  return param.ndim >= 2 and not any(n in NO_DECAY_NAMES for n in names)


def make_optimizer(train_config) -> optax.GradientTransformation:
  t = train_config
  require(t.grad_clip_norm >= 0, 'train.grad_clip_norm', t.grad_clip_norm, 'must be >= 0 (0: off)')
  require(t.weight_decay >= 0, 'train.weight_decay', t.weight_decay, 'must be >= 0')
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(_decays, params)
  adamw = optax.adamw(learning_rate_schedule(t), b1=t.adam_b1, b2=t.adam_b2, eps=1e-8,
                      weight_decay=t.weight_decay, mask=decay_mask)
  if t.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), adamw)
  return adamw
