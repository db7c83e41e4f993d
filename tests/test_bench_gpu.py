"""bench_gpu.py --smoke runs end to end and writes a row per (mixer, dtype) with finite numbers.

Two mixers (one with a chunk-parallel form) keep it short; every mixer's bfloat16 compute is
checked against float32 in tests/test_model.py."""
import json
import math
import os
import subprocess
import sys
from tests.conftest import FAST_COMPILE


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = ('float32', 'bfloat16')
MIXERS_RUN = ('attention', 'gla')


def test_smoke_writes_json_and_markdown(tmp_path):
  env = dict(os.environ, XLA_FLAGS=FAST_COMPILE, JAX_PLATFORMS='cpu')   # one device, as a user runs it
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'bench_gpu.py'), '--smoke',
                        f'--mixers={",".join(MIXERS_RUN)}', f'--out={tmp_path}'], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads((tmp_path / 'bench_gpu.json').read_text())
  markdown = (tmp_path / 'bench_gpu.md').read_text()
  mixers = sorted(MIXERS_RUN)
  sizes = {(r['mixer'], r['dtype']): r for r in result['rows'] if r['section'] == 'sizes'}
  assert set(sizes) == {(m, d) for m in mixers for d in DTYPES}
  for row in sizes.values():
    for key in ('step_ms', 'steps_per_s', 'examples_per_s', 'compile_s', 'mfu_measured'):
      assert math.isfinite(row[key]) and row[key] > 0, (row['mixer'], row['dtype'], key)
    assert row['params'] > 0
  md_rows = [line.split('|')[1:-1] for line in markdown.splitlines()
             if line.startswith('| sizes ')]
  md_keys = {(cells[2].strip(), cells[3].strip()) for cells in md_rows}
  assert md_keys == set(sizes) and len(md_rows) == len(sizes)
  for cells in md_rows:
    assert math.isfinite(float(cells[10])) and float(cells[10]) > 0   # step (ms)
  for section in ('seeds', 'garg', 'chunks'):
    rows = [r for r in result['rows'] if r['section'] == section]
    assert {r['dtype'] for r in rows} == set(DTYPES), section
    assert all(math.isfinite(r['step_ms']) and r['step_ms'] > 0 for r in rows), section
    assert f'| {section} ' in markdown
  garg = [r for r in result['rows'] if r['section'] == 'garg']
  assert all(math.isfinite(r['full_run_hours']) for r in garg)
