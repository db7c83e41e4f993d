"""Test set-up: eight fake CPU devices (must be set before JAX is imported), quiet logs."""
import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope='session')
def _quiet_logs():
  from absl import logging
  logging.set_verbosity(logging.WARNING)
