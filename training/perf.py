"""Peak FLOP/s of this machine: measured (robust matmul timing) and theoretical (datasheet).

The MFU denominator. `measure_matmul_peak` times a chain of square matrix products inside one
compiled call (so each trial lasts long enough, >= `min_trial_s`, for timer resolution and
dispatch to be negligible), repeats it many times after a warm-up and reports the median with
its spread: on small shared CPU machines a single product swings by 3x between runs.
`theoretical_peak` derives the hardware peak from /proc/cpuinfo on CPUs and from a table of
NVIDIA datasheet numbers on GPUs; it returns None where the hardware is not known.
`keep_freed_memory` sets the host allocator policy that removes a per-call page-fault cost of
XLA's CPU runtime (why one step per call was 1.3-1.7x slower than ten fused steps on CPU).
"""
from __future__ import annotations

import dataclasses
import os
import re
import statistics
import time
from typing import List, Optional, Sequence


@dataclasses.dataclass
class MatmulPeak:
  """FLOP/s of repeated timed trials of an n x n x n product chain."""
  dtype: str
  n: int
  products_per_trial: int
  trial_flops: List[float]     # one FLOP/s figure per timed trial

  @property
  def median(self) -> float:
    return statistics.median(self.trial_flops)

  @property
  def quartiles(self):
    xs = sorted(self.trial_flops)
    if len(xs) < 4:
      return xs[0], xs[-1]
    q = statistics.quantiles(xs, n=4, method='inclusive')
    return q[0], q[2]

  @property
  def min(self) -> float:
    return min(self.trial_flops)

  @property
  def max(self) -> float:
    return max(self.trial_flops)

  def describe(self, unit: float = 1e9, unit_name: str = 'GFLOP/s') -> str:
    q1, q3 = self.quartiles
    return (f'median {self.median / unit:.1f} {unit_name} [IQR {q1 / unit:.1f}-{q3 / unit:.1f}, '
            f'min-max {self.min / unit:.1f}-{self.max / unit:.1f}; {len(self.trial_flops)} trials '
            f'of {self.products_per_trial} x {self.n}^3]')

  def to_dict(self):
    q1, q3 = self.quartiles
    return dict(dtype=self.dtype, n=self.n, products_per_trial=self.products_per_trial,
                trials=len(self.trial_flops), median=self.median, q1=q1, q3=q3, min=self.min,
                max=self.max, trial_flops=self.trial_flops)


def _default_n(platform: str) -> int:
  return 2048 if platform == 'cpu' else 8192


def measure_matmul_peak(dtype: str = 'float32', n: Optional[int] = None, trials: int = 20,
                        min_trial_s: float = 0.1, warmup_s: float = 0.5,
                        device=None) -> MatmulPeak:
  """Median-of-trials FLOP/s of n^3 products on `device` (default: the first JAX device).

  Each trial is one compiled call running `k` chained products c <- c @ b (b scaled by
  1/sqrt(n) so values stay O(1)); k is chosen after the warm-up so that a trial lasts about
  `min_trial_s`. Trials are independent samples: report their median and spread.
  """
  import jax
  import jax.numpy as jnp
  device = device or jax.devices()[0]
  n = n or _default_n(device.platform)
  dt = jnp.dtype(dtype)
  with jax.default_device(device):
    a = jax.random.normal(jax.random.key(0), (n, n), dtype=jnp.float32).astype(dt)
    b = (jax.random.normal(jax.random.key(1), (n, n), dtype=jnp.float32) / n ** 0.5).astype(dt)

  @jax.jit
  def chain(c, b, k):
    return jax.lax.fori_loop(0, k, lambda _, c: c @ b, c)

  def timed(k):
    t = time.perf_counter()
    chain(a, b, k).block_until_ready()
    return time.perf_counter() - t

  timed(1)                                           # compile
  # Warm-up: run products until warmup_s has passed (clocks, caches, thread pools).
  start, k_one = time.perf_counter(), []
  while time.perf_counter() - start < warmup_s or not k_one:
    k_one.append(timed(1))
  per_product = statistics.median(k_one)
  k = max(1, int(round(min_trial_s / max(per_product, 1e-7))))
  flops = []
  for _ in range(trials):
    flops.append(2 * n ** 3 * k / timed(k))
  return MatmulPeak(dtype=str(dt), n=n, products_per_trial=k, trial_flops=flops)


# ---------------------------------------------------------------------------------------------
# Theoretical peaks.

@dataclasses.dataclass
class TheoreticalPeak:
  flops: float
  description: str      # how it was derived (hardware, formula, source)


# Dense (no sparsity) peaks in TFLOP/s from NVIDIA datasheets: fp32 on the CUDA cores, tf32
# and bf16 on the tensor cores. Matched against jax's device_kind, first match wins.
GPU_PEAKS_TFLOPS = (
    # (substrings that must all occur in device_kind (lower case), name, fp32, tf32, bf16)
    (('h200', 'nvl'), 'H200 NVL', 60.0, 417.0, 835.0),
    (('h200',), 'H200 SXM', 67.0, 494.7, 989.4),
    (('h100', 'pcie'), 'H100 PCIe', 51.0, 378.0, 756.0),
    (('h100', 'nvl'), 'H100 NVL', 60.0, 417.0, 835.0),
    (('h100',), 'H100 SXM', 67.0, 494.7, 989.4),
    (('a100',), 'A100', 19.5, 156.0, 312.0),
)


def _gpu_peak(device_kind: str, dtype: str) -> Optional[TheoreticalPeak]:
  kind = device_kind.lower()
  for keys, name, fp32, tf32, bf16 in GPU_PEAKS_TFLOPS:
    if all(k in kind for k in keys):
      if dtype in ('bfloat16', 'float16'):
        return TheoreticalPeak(bf16 * 1e12, f'{name} {dtype} dense tensor-core peak '
                               f'{bf16:g} TFLOP/s (NVIDIA datasheet)')
      if dtype == 'float32':
        import jax
        precision = str(jax.config.jax_default_matmul_precision or 'default').lower()
        if precision in ('highest', 'float32'):
          return TheoreticalPeak(fp32 * 1e12, f'{name} float32 CUDA-core peak {fp32:g} '
                                 f'TFLOP/s (NVIDIA datasheet; matmul precision highest)')
        return TheoreticalPeak(tf32 * 1e12, f'{name} tf32 dense tensor-core peak {tf32:g} '
                               f'TFLOP/s (NVIDIA datasheet; float32 matmuls at default precision '
                               f'run as tf32; CUDA-core fp32 peak is {fp32:g})')
  return None


def read_cpuinfo(path: str = '/proc/cpuinfo') -> dict:
  """The first processor's fields of /proc/cpuinfo ({} where unreadable)."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return {}
  info = {}
  for line in text.split('\n\n')[0].splitlines():
    if ':' in line:
      key, value = line.split(':', 1)
      info[key.strip()] = value.strip()
  mhz = [float(m) for m in re.findall(r'^cpu MHz\s*:\s*([\d.]+)', text, re.M)]
  if mhz:
    info['cpu MHz'] = str(max(mhz))
  return info


def usable_cpu_cores() -> float:
  """CPUs this process may use: its affinity mask, capped by a cgroup v2 cpu quota."""
  try:
    cores = float(len(os.sched_getaffinity(0)))
  except AttributeError:
    cores = float(os.cpu_count() or 1)
  try:
    with open('/sys/fs/cgroup/cpu.max') as f:
      quota, period = f.read().split()
    if quota != 'max':
      cores = min(cores, float(quota) / float(period))
  except (OSError, ValueError):
    pass
  return cores


def cpu_fp32_flops_per_cycle(info: dict) -> Optional[tuple]:
  """(fp32 FLOPs per cycle per core, reason) from the vector extensions, or None."""
  flags = set(info.get('flags', '').split())
  vendor = info.get('vendor_id', '')
  family = int(info.get('cpu family', '0') or 0)
  if 'avx512f' in flags:
    if vendor == 'AuthenticAMD' and family == 25:      # Zen 4: AVX-512 on 256-bit FMA units
      return 32, 'AVX-512 on Zen 4 (2 x 256-bit FMA)'
    return 64, 'AVX-512 + 2 FMA units (16 lanes x 2 FMA x 2)'
  if 'avx2' in flags and 'fma' in flags:
    return 32, 'AVX2 + FMA (8 lanes x 2 FMA x 2)'
  if 'avx' in flags:
    return 16, 'AVX (8-lane add + 8-lane mul)'
  if 'sse2' in flags:
    return 8, 'SSE2 (4-lane add + 4-lane mul)'
  return None


def _read_number(path: str) -> Optional[float]:
  try:
    with open(path) as f:
      return float(f.read().strip())
  except (OSError, ValueError):
    return None


def cpu_peak(dtype: str = 'float32', info: Optional[dict] = None,
             cores: Optional[float] = None) -> Optional[TheoreticalPeak]:
  info = read_cpuinfo() if info is None else info
  if dtype != 'float32' or not info:
    return None   # bf16 on CPU: depends on AVX512_BF16 / AMX use by XLA; not tabulated
  per_cycle = cpu_fp32_flops_per_cycle(info)
  model = info.get('model name', 'unknown CPU')
  ghz, source = None, ''
  m = re.search(r'@\s*([\d.]+)\s*GHz', model)
  max_khz = _read_number('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq')
  if max_khz:
    ghz, source = max_khz / 1e6, 'maximum (boost) clock from cpufreq'
  elif m:
    ghz, source = float(m.group(1)), 'nominal clock from model name'
  elif info.get('cpu MHz'):
    ghz, source = float(info['cpu MHz']) / 1000, 'clock from cpu MHz'
  if per_cycle is None or not ghz:
    return None
  cores = usable_cpu_cores() if cores is None else cores
  flops = cores * ghz * 1e9 * per_cycle[0]
  return TheoreticalPeak(flops, f'{model}: {cores:g} cores x {ghz:.2f} GHz x {per_cycle[0]} '
                         f'FLOP/cycle ({per_cycle[1]}; {source}'
                         f'{"" if max_khz else "; boost clocks can exceed it"})')


def theoretical_peak(dtype: str = 'float32', device=None) -> Optional[TheoreticalPeak]:
  """The hardware's dense peak for `dtype` matmuls, or None where it is not known."""
  import jax
  device = device or jax.devices()[0]
  if device.platform == 'cpu':
    return cpu_peak(dtype)
  if device.platform == 'gpu' or 'nvidia' in device.device_kind.lower():
    return _gpu_peak(device.device_kind, dtype)
  return None


# ---------------------------------------------------------------------------------------------
# Host memory policy.

def keep_freed_memory() -> bool:
  """Makes glibc malloc keep freed memory instead of returning it to the OS; True if applied.

  XLA's CPU runtime allocates each call's temporary buffer (hundreds of MiB for a train step)
  from one of its worker threads and frees it at the end of the call. glibc serves such large
  blocks from worker threads with a fresh mmap and unmaps them on free, so every call pays a
  page fault per 4 KiB page and the kernel's zeroing of the whole buffer (~90 ms of system time
  per call for the small model, a third of its step). With one malloc arena, no mmap for large
  blocks and no trimming, the buffer is reused across calls without faults.
  Call before JAX starts its thread pools (before the first computation); returns False where
  glibc's mallopt is not available. Equivalent to running under
  GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=
  (a value above the largest temporary buffer). The process's resident memory then stays at
  its peak.
  """
  import ctypes
  import ctypes.util
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
  mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
  ok = mallopt(M_ARENA_MAX, 1) and mallopt(M_MMAP_MAX, 0)
  ok = ok and mallopt(M_TRIM_THRESHOLD, -1)    # -1: never trim (mallopt(3))
  return bool(ok)
