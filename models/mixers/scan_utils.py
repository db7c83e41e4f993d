"""Shared pieces of the recurrent / convolutional mixers: scans, causal convolutions, options.

Each parallel helper has a step twin that reproduces it one position at a time, so a mixer's
`__call__` and `step` are built from matching parts.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Tuple

import jax
import jax.numpy as jnp

from core import require


# ----------------------------------------------------------------------------------------------
# Options


def option(options: Any, defaults: Mapping[str, Any], name: str) -> Any:
  """`options.<name>`, or the mixer's default when the config does not set it."""
  if options is not None and name in options:
    return options[name]
  return defaults[name]


def check_known(options: Any, defaults: Mapping[str, Any], mixer: str) -> None:
  """Raises ConfigError for an option the mixer does not have (a typo would be ignored)."""
  for name in (options or {}):
    require(name in defaults, option_key(mixer, name), options[name],
            f'not an option of {mixer!r}; its options are {", ".join(sorted(defaults))}')


def option_key(mixer: str, name: str) -> str:
  """The config path of a mixer option, as error messages name it."""
  return f'model.mixer_options.{mixer}.{name}'


def positive_int(options, defaults, mixer: str, name: str, minimum: int = 1,
                 allowed: str = '') -> int:
  """Reads an integer option >= `minimum`; raises ConfigError naming the key otherwise."""
  value = option(options, defaults, name)
  ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
  require(ok, option_key(mixer, name), value, allowed or f'an integer >= {minimum}')
  return int(value)


def positive_float(options, defaults, mixer: str, name: str) -> float:
  """Reads a float option > 0; raises ConfigError naming the key otherwise."""
  value = option(options, defaults, name)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
  require(ok, option_key(mixer, name), value, 'a number > 0')
  return float(value)


def int_or_auto(options, defaults, mixer: str, name: str, auto_value: int) -> int:
  """Reads an option that is 'auto' (-> `auto_value`) or a positive integer.

  Numeric strings ('8') are accepted too, because a command-line override of a string-typed
  config field arrives as a string.
  """
  value = option(options, defaults, name)
  if value == 'auto':
    return auto_value
  if isinstance(value, str) and value.isdigit():
    value = int(value)
  ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
  require(ok, option_key(mixer, name), value, "'auto' or an integer >= 1")
  return int(value)


def torch_default_uniform(key: jax.Array, shape: Tuple[int, ...], fan_in: int) -> jax.Array:
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the default init of PyTorch Linear/Conv1d layers,
  which the reference implementations of Mamba and Hyena rely on for their convolutions."""
  bound = 1.0 / math.sqrt(fan_in)
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


# ----------------------------------------------------------------------------------------------
# Linear recurrences


def linear_scan(a_BxTx, b_BxTx, axis: int = 1) -> jax.Array:
  """Returns h with h_t = a_t * h_{t-1} + b_t along `axis`, h_{-1} = 0 (elementwise).

  Parallel (O(log T) depth) via `jax.lax.associative_scan` on pairs (a, b) under the
  composition (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2).
  """
  def combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2
  _, h = jax.lax.associative_scan(combine, (a_BxTx, b_BxTx), axis=axis)
  return h


# ----------------------------------------------------------------------------------------------
# Short causal depthwise convolution (Mamba's conv1d, Hyena's short filter)


def causal_depthwise_conv(x_BxTxC, kernel_KxC, bias_C=None) -> jax.Array:
  """y[t] = bias + sum_k kernel[k] * x[t - (K-1) + k], with x = 0 before t = 0.

  This is PyTorch's Conv1d(groups=C, padding=K-1) truncated to the first T outputs: the last
  tap multiplies the current input. Computes in x's dtype.
  """
  num_taps = kernel_KxC.shape[0]
  seq_len = x_BxTxC.shape[1]
  kernel_KxC = kernel_KxC.astype(x_BxTxC.dtype)
  x_pad = jnp.pad(x_BxTxC, ((0, 0), (num_taps - 1, 0), (0, 0)))
  y_BxTxC = x_pad[:, 0:seq_len] * kernel_KxC[0]
  for k in range(1, num_taps):  # K is 3 or 4: a static unrolled sum of shifted inputs
    y_BxTxC = y_BxTxC + x_pad[:, k:k + seq_len] * kernel_KxC[k]
  if bias_C is not None:
    y_BxTxC = y_BxTxC + bias_C.astype(x_BxTxC.dtype)
  return y_BxTxC


def causal_depthwise_conv_step(window_BxKm1xC, x_BxC, kernel_KxC, bias_C=None):
  """One position of `causal_depthwise_conv`.

  window_BxKm1xC holds the previous K-1 inputs, oldest first (zeros at the start). Returns
  (y_BxC, new_window) with the new window in the old window's dtype.
  """
  num_taps = kernel_KxC.shape[0]
  dtype = x_BxC.dtype
  full_BxKxC = jnp.concatenate([window_BxKm1xC.astype(dtype), x_BxC[:, None]], axis=1)
  kernel_KxC = kernel_KxC.astype(dtype)
  y_BxC = full_BxKxC[:, 0] * kernel_KxC[0]
  for k in range(1, num_taps):  # same summation order as the parallel form
    y_BxC = y_BxC + full_BxKxC[:, k] * kernel_KxC[k]
  if bias_C is not None:
    y_BxC = y_BxC + bias_C.astype(dtype)
  return y_BxC, full_BxKxC[:, 1:].astype(window_BxKm1xC.dtype)


# ----------------------------------------------------------------------------------------------
# Long causal convolution (S4D, Hyena)


def fft_causal_conv(u_BxTxC, k_TxC) -> jax.Array:
  """y[t] = sum_{j<=t} k[j] * u[t-j] per channel, in float32, via FFT of length 2T.

  Zero-padding to 2T turns the FFT's circular convolution into a linear one, so nothing
  wraps around from the end of the sequence to its start (the result is causal).
  """
  seq_len = u_BxTxC.shape[1]
  if k_TxC.shape[0] != seq_len:
    raise ValueError(f'filter has {k_TxC.shape[0]} taps, sequence has {seq_len} positions')
  fft_len = 2 * seq_len
  u_f = jnp.fft.rfft(u_BxTxC.astype(jnp.float32), n=fft_len, axis=1)
  k_f = jnp.fft.rfft(k_TxC.astype(jnp.float32), n=fft_len, axis=0)
  return jnp.fft.irfft(u_f * k_f[None], n=fft_len, axis=1)[:, :seq_len]
