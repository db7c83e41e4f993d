r"""In-context language learning on random regular languages (REGBENCH, Akyürek et al. 2024).

  python -m data.build_regbench --task.max_string_len=12 --task.seq_len=256  # optional: eval
                                                      # builds the frozen test set if missing
  python train.py --config configs/regbench.py:tiny --workdir runs/regbench_tiny
  python eval.py --workdir runs/regbench_tiny

Variants: tiny (3 layers / 64 wide / 2 heads; strings of at most 12 symbols, 256-token
prompts, which hold the longest, 19 * 13 = 247 tokens; batch 32, 1,500 steps: minutes on a
2-core CPU), small (6/128/4, the benchmark's 49-symbol strings) and standard (12/256/8, 2,500
training automata as in the paper's smallest setting; --config.task.num_train_dfas=40000 for
its largest). small and standard use task.seq_len=0: the context is the longest prompt the
string settings allow (19 strings of 49 symbols and a separator: 950 tokens), so no prompt is
cut; the authors' 512-token cut (which truncates ~8.5% of prompts) is --config.task.seq_len=512.
"""
from configs.common import base_config, parse_variant


def get_config(arg=None):
  variant = parse_variant(arg)
  if variant == 'tiny':
    task = dict(max_string_len=12, seq_len=256, predict_separator=True)
    train = dict(num_steps=1500, batch_size=32, learning_rate=3e-3, warmup_steps=100,
                 checkpoint_every=500, steps_per_call=10)
  elif variant == 'small':
    task = dict(seq_len=0, predict_separator=True)
    train = dict(num_steps=20_000, batch_size=32, learning_rate=5e-4, warmup_steps=500,
                 checkpoint_every=1000)
  else:
    task = dict(seq_len=0, predict_separator=True)
    train = dict(num_steps=100_000, batch_size=32, learning_rate=2.5e-4, warmup_steps=1000,
                 checkpoint_every=2000)
  config = base_config('regbench', variant, task_overrides=task, train_overrides=train,
                       model_overrides=dict(mlp='gelu'))
  config.eval.num_prompts = 500   # the frozen test set holds task.num_test_dfas prompts
  config.eval.batch_size = 50
  return config
