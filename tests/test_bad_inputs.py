"""Every bad input is answered in one line: a corpus of malformed command lines.

For each entry point (train.py, eval.py, sweep.py, bench.py, python -m data.build_regbench) a
list of malformed command lines, each with a distinctive substring its error must contain.
Every case must: exit non-zero; print exactly one line on stderr, starting with `error: ` and
naming the problem; print no traceback; and write nothing (the tree under the test's root
directory, which holds the --workdir and every fixture run, is identical before and after).

Speed: the cases of one entry point run in ONE subprocess (tests/bad_inputs_harness.py), which
executes the entry point as `__main__` per case with absl's flags reset in between (train.py
and eval.py define flags of the same names, so each entry point has its own process). A few
cases also run as true subprocesses (`test_true_subprocess_agrees`) to check that the
in-process harness sees what a user sees.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(REPO, 'tests', 'bad_inputs_harness.py')

LR = 'configs/linear_regression.py:tiny'
W = '{root}/new_workdir'          # must never be created


def T(*extra, config=LR, workdir=W):
  return ['--config', config, '--workdir', workdir, *extra]


def TC(key_value, **kw):
  return T(f'--config.{key_value}', **kw)


# The fixture run: small enough to train in a few seconds.
RUN_ARGS = ['--config.model.num_layers=1', '--config.model.d_model=16',
            '--config.train.num_steps=2', '--config.train.steps_per_call=1',
            '--config.train.checkpoint_every=1', '--config.eval.num_log_evals=0',
            '--config.train.progress=False', '--config.train.batch_size=8',
            '--config.train.warmup_steps=0']

# (id, argv, substring the one-line error must contain)
TRAIN = [
    # --- the config file and the flags themselves
    ('config_file_missing', T(config='configs/nope.py:tiny'), "configs/nope.py' does not exist"),
    ('config_file_missing_with_override', T('--config.train.num_steps=5',
                                            config='configs/nope.py'), 'does not exist'),
    ('config_file_is_directory', T(config='configs'), 'is not a file'),
    ('config_file_empty_name', ['--config=', '--workdir', W], '--config'),
    ('config_file_syntax_error', T(config='{root}/cfg_syntax.py'), 'cfg_syntax.py'),
    ('config_file_no_get_config', T(config='{root}/cfg_noget.py'), 'get_config'),
    ('config_file_raises', T(config='{root}/cfg_raises.py'), 'broken on purpose'),
    ('config_variant_unknown', T(config='configs/linear_regression.py:huge'), "'huge'"),
    ('config_missing', ['--workdir', W], '--config is required'),
    ('workdir_missing', ['--config', LR], '--workdir is required'),
    ('unknown_flag', T('--bogus'), 'bogus'),
    ('unknown_flag_value', T('--bogus=3'), 'bogus'),
    ('positional_argument', T('extra'), 'unexpected arguments'),
    ('overwrite_not_bool', T('--overwrite=maybe'), 'overwrite'),
    # --- unknown keys at every depth
    ('unknown_top_key', TC('bogus=1'), "'bogus' is unknown"),
    ('unknown_train_key', TC('train.bogus=1'), "'train.bogus' is unknown"),
    ('unknown_task_key', TC('task.bogus=1'), "'task.bogus' is unknown"),
    ('unknown_model_key', TC('model.bogus=1'), "'model.bogus' is unknown"),
    ('unknown_eval_key', TC('eval.bogus=1'), "'eval.bogus' is unknown"),
    ('unknown_objective_key', TC('objective.bogus=1'), "'objective.bogus' is unknown"),
    ('unknown_mixer_options_mixer', TC('model.mixer_options.bogus.x=1'),
     "'model.mixer_options.bogus.x' is unknown"),
    ('unknown_attention_option', TC('model.mixer_options.attention.bogus=1'),
     "'model.mixer_options.attention.bogus' is unknown"),
    ('unknown_mamba_option', TC('model.mixer_options.mamba.bogus=1'),
     "'model.mixer_options.mamba.bogus' is unknown"),
    ('unknown_baseline_option', TC('eval.baselines.knn.bogus=1'), 'eval.baselines.knn'),
    ('key_under_a_value', TC('train.num_steps.x=1'), 'train.num_steps.x'),
    # --- wrong types
    ('num_steps_text', TC('train.num_steps=abc'), "config.train.num_steps='abc' is invalid"),
    ('num_steps_float', TC('train.num_steps=1.5'), "config.train.num_steps='1.5' is invalid"),
    ('batch_size_text', TC('train.batch_size=big'), 'train.batch_size'),
    ('learning_rate_text', TC('train.learning_rate=abc'), 'train.learning_rate'),
    ('progress_not_bool', TC('train.progress=maybe'), 'train.progress'),
    ('distributed_not_bool', TC('train.distributed=abc'), 'train.distributed'),
    ('curriculum_not_bool', TC('task.curriculum=maybe'), 'task.curriculum'),
    ('n_dims_text', TC('task.n_dims=eight'), 'task.n_dims'),
    ('d_model_float', TC('model.d_model=64.5'), 'model.d_model'),
    ('every_text', TC('eval.every=often'), 'eval.every'),
    # --- out of range: train
    ('num_steps_zero', TC('train.num_steps=0'), 'train.num_steps=0'),
    ('num_steps_negative', TC('train.num_steps=-5'), 'train.num_steps=-5'),
    ('batch_size_zero', TC('train.batch_size=0'), 'train.batch_size=0'),
    ('batch_size_negative', TC('train.batch_size=-8'), 'train.batch_size=-8'),
    ('learning_rate_inf', TC('train.learning_rate=inf'), 'train.learning_rate=inf'),
    ('learning_rate_nan', TC('train.learning_rate=nan'), 'train.learning_rate=nan'),
    ('learning_rate_negative', TC('train.learning_rate=-0.001'), 'train.learning_rate=-0.001'),
    ('learning_rate_zero', TC('train.learning_rate=0.0'), 'train.learning_rate=0.0'),
    ('weight_decay_negative', TC('train.weight_decay=-1.0'), 'train.weight_decay=-1.0'),
    ('weight_decay_inf', TC('train.weight_decay=inf'), 'train.weight_decay=inf'),
    ('adam_b1_one', TC('train.adam_b1=1.0'), 'train.adam_b1=1.0'),
    ('adam_b2_nan', TC('train.adam_b2=nan'), 'train.adam_b2=nan'),
    ('final_lr_fraction_above_one', TC('train.final_lr_fraction=1.5'), 'train.final_lr_fraction'),
    ('grad_clip_negative', TC('train.grad_clip_norm=-1.0'), 'train.grad_clip_norm'),
    ('warmup_negative', TC('train.warmup_steps=-1'), 'train.warmup_steps=-1'),
    ('schedule_unknown', TC('train.schedule=bogus'), "train.schedule='bogus'"),
    ('num_seeds_zero', TC('train.num_seeds=0'), 'train.num_seeds=0'),
    ('num_seeds_negative', TC('train.num_seeds=-2'), 'train.num_seeds=-2'),
    ('seed_negative', TC('train.seed=-1'), 'train.seed=-1'),
    ('steps_per_call_zero', TC('train.steps_per_call=0'), 'train.steps_per_call=0'),
    ('log_every_zero', TC('train.log_every=0'), 'train.log_every=0'),
    ('checkpoint_every_zero', TC('train.checkpoint_every=0'), 'train.checkpoint_every=0'),
    ('checkpoint_every_not_multiple', TC('train.checkpoint_every=15'), 'multiple'),
    ('keep_checkpoints_zero', TC('train.keep_checkpoints=0'), 'train.keep_checkpoints=0'),
    ('keep_log_checkpoints_negative', TC('train.keep_log_checkpoints=-1'),
     'train.keep_log_checkpoints=-1'),
    # --- out of range: eval
    ('eval_every_negative', TC('eval.every=-1'), 'eval.every=-1'),
    ('eval_num_log_evals_negative', TC('eval.num_log_evals=-1'), 'eval.num_log_evals=-1'),
    ('eval_train_prompts_zero', TC('eval.train_prompts=0'), 'eval.train_prompts=0'),
    ('eval_num_prompts_zero', TC('eval.num_prompts=0'), 'eval.num_prompts=0'),
    ('eval_batch_size_zero', TC('eval.batch_size=0'), 'eval.batch_size=0'),
    ('eval_suite_unknown', TC('eval.suite=bogus'), "config.eval.suite='bogus'"),
    ('eval_train_suites_unknown', TC('eval.train_suites=in_distribution,bogus'),
     "config.eval.train_suites='in_distribution,bogus' is invalid: suites of this task"),
    ('eval_temperature_negative', TC('eval.temperature=-1.0'), 'eval.temperature=-1.0'),
    ('eval_top_k_negative', TC('eval.top_k=-1'), 'eval.top_k=-1'),
    ('eval_ngram_delta_nan', TC('eval.ngram_delta=nan'), 'eval.ngram_delta=nan'),
    ('baseline_knn_k_zero', TC('eval.baselines.knn.k=0'), 'knn.k=0'),
    # --- out of range / unknown: task
    ('task_unknown', TC('task.name=bogus'), "task.name='bogus' is invalid"),
    ('n_dims_zero', TC('task.n_dims=0'), 'task.n_dims=0'),
    ('n_dims_negative', TC('task.n_dims=-3'), 'task.n_dims=-3'),
    ('n_points_zero', TC('task.n_points=0'), 'task.n_points=0'),
    ('x_distribution_unknown', TC('task.x_distribution=bogus'), 'task.x_distribution'),
    ('x_scale_nan', TC('task.x_scale=nan'), 'task.x_scale'),
    ('y_scale_inf', TC('task.y_scale=inf'), 'task.y_scale'),
    ('num_tasks_negative', TC('task.num_tasks=-1'), 'task.num_tasks=-1'),
    ('noise_std_negative', TC('task.noise_std=-1.0', config='configs/noisy_linear_regression.py'),
     'task.noise_std'),
    ('sparsity_zero', TC('task.sparsity=0', config='configs/sparse_linear_regression.py'),
     'task.sparsity=0'),
    ('sparsity_above_dims', TC('task.sparsity=99', config='configs/sparse_linear_regression.py'),
     'task.sparsity=99'),
    ('hidden_size_zero', TC('task.hidden_size=0', config='configs/relu2nn_regression.py'),
     'task.hidden_size=0'),
    ('tree_depth_negative', TC('task.depth=-1', config='configs/decision_tree.py'),
     'task.depth=-1'),
    ('regbench_seq_len_one', TC('task.seq_len=1', config='configs/regbench.py:tiny'),
     'task.seq_len=1'),
    ('regbench_num_train_dfas_zero', TC('task.num_train_dfas=0', config='configs/regbench.py'),
     'task.num_train_dfas=0'),
    ('regbench_vocab_zero', TC('task.vocab_size=0', config='configs/regbench.py'),
     'task.vocab_size=0'),
    # --- model: unknown names and bad sizes
    ('mixer_unknown', TC('model.mixer=bogus'), "unknown mixer 'bogus'"),
    ('mixer_pattern_unknown', TC('model.mixer=attention,bogus'), 'bogus'),
    ('mixer_empty', TC('model.mixer='), 'model.mixer'),
    ('norm_unknown', TC('model.norm=bogus'), 'model.norm'),
    ('norm_position_unknown', TC('model.norm_position=middle'), 'model.norm_position'),
    ('position_unknown', TC('model.position=bogus'), 'model.position'),
    ('mlp_unknown', TC('model.mlp=bogus'), 'model.mlp'),
    ('dtype_unknown', TC('model.dtype=float64'), 'model.dtype'),
    ('num_layers_zero', TC('model.num_layers=0'), 'model.num_layers=0'),
    ('d_model_zero', TC('model.d_model=0'), 'model.d_model=0'),
    ('num_heads_zero', TC('model.num_heads=0'), 'model.num_heads=0'),
    ('num_heads_not_dividing', TC('model.num_heads=3'), 'model.num_heads=3'),
    ('mlp_ratio_negative', TC('model.mlp_ratio=-1.0'), 'model.mlp_ratio'),
    ('mlp_ratio_nan', TC('model.mlp_ratio=nan'), 'model.mlp_ratio'),
    ('max_len_too_short', TC('model.max_len=5'), 'model.max_len=5'),
    ('max_len_negative', TC('model.max_len=-1'), 'model.max_len=-1'),
    ('mamba_state_dim_zero', T('--config.model.mixer=mamba',
                               '--config.model.mixer_options.mamba.state_dim=0'), 'state_dim'),
    ('mamba_block_size_zero', T('--config.model.mixer=mamba',
                                '--config.model.mixer_options.mamba.block_size=0'),
     'model.mixer_options.mamba.block_size=0'),
    ('gla_chunk_zero', T('--config.model.mixer=gla',
                         '--config.model.mixer_options.gla.chunk_size=0'), 'chunk_size'),
    ('linear_attention_feature_map_unknown',
     T('--config.model.mixer=linear_attention',
       '--config.model.mixer_options.linear_attention.feature_map=bogus'), 'feature_map'),
    # --- objectives
    ('objective_unknown', TC('objective.name=bogus'), "'bogus'"),
    ('objective_next_token_on_regression', TC('objective.name=next_token'),
     "task 'linear_regression' accepts"),
    ('objective_regression_on_regbench', TC('objective.name=regression_mse',
                                            config='configs/regbench.py'),
     "task 'regbench' accepts"),
    # --- train.seed_values
    ('seed_values_garbage', TC('train.seed_values=garbage'), 'train.seed_values'),
    ('seed_values_wrong_length', TC('train.seed_values=train.learning_rate=0.001,0.002'),
     'lists 2 values'),
    ('seed_values_shape_key', TC('train.seed_values=model.d_model=32'), 'cannot vary'),
    ('seed_values_unknown_key', TC('train.seed_values=train.bogus=1'), 'cannot vary'),
    ('seed_values_not_number', TC('train.seed_values=train.learning_rate=abc'),
     'is not a number'),
    ('seed_values_inf', TC('train.seed_values=train.learning_rate=inf'), 'must be finite'),
    ('seed_values_negative_seed', TC('train.seed_values=train.seed=-1'), 'seeds must be'),
    ('seed_values_twice', T('--config.train.num_seeds=1', '--config.train.seed_values='
                            'train.learning_rate=0.001;train.learning_rate=0.002'),
     'given twice'),
    ('seed_values_negative_lr', TC('train.seed_values=train.learning_rate=-1'), 'must be > 0'),
    ('seed_values_task_value_bad', T('--config.train.num_seeds=2', '--config.train.seed_values='
                                     'task.noise_std=0.5,-1',
                                     config='configs/noisy_linear_regression.py'),
     'task.noise_std'),
    # --- train.init_from
    ('init_from_nowhere', TC('train.init_from={root}/nowhere'), 'nowhere'),
    ('init_from_file', TC('train.init_from={root}/afile'), 'afile'),
    ('init_from_not_a_run', TC('train.init_from={root}/notarun'), 'notarun'),
    ('init_from_other_width', TC('train.init_from={run}'), 'model.d_model'),
    ('init_from_missing_step', T('--config.train.init_from={run}:999', *RUN_ARGS[:2]), '999'),
    ('init_from_bad_step', TC('train.init_from={run}:abc'), 'abc'),
    # --- work directories
    ('workdir_is_file', T(workdir='{root}/afile'), 'is not a directory'),
    ('workdir_under_file', T(workdir='{root}/afile/sub'), 'is not a directory'),
    ('workdir_corrupt_config', T(workdir='{root}/corrupt_run'), 'config.json'),
    ('workdir_other_config', T(workdir='{run}'), 'holds a run of a different config'),
    ('workdir_empty_string', T(workdir=''), '--workdir is required'),
    # root may write anywhere but /proc: a directory nobody can create
    ('workdir_uncreatable', T(workdir='/proc/icl_lab_bad_input'), 'icl_lab_bad_input'),
]

E = lambda *extra, workdir='{run}': ['--workdir', workdir, *extra]  # noqa: E731
EVAL = [
    ('workdir_missing', [], '--workdir is required'),
    ('workdir_nowhere', E(workdir='{root}/nowhere'), 'does not exist'),
    ('workdir_is_file', E(workdir='{root}/afile'), 'not a directory'),
    ('workdir_not_a_run', E(workdir='{root}/notarun'), 'holds no config.json'),
    ('workdir_corrupt_config', E(workdir='{root}/corrupt_run'), 'config.json'),
    ('workdir_config_not_object', E(workdir='{root}/list_config_run'), 'config.json'),
    ('workdir_unknown_task', E(workdir='{root}/unknown_task_run'), "task.name='bogus'"),
    ('workdir_bad_config_value', E(workdir='{root}/bad_value_run'), 'train.num_steps=-1'),
    ('workdir_without_checkpoints', E(workdir='{root}/no_checkpoints_run'),
     'no complete checkpoint'),
    ('num_prompts_negative', E('--num_prompts', '-5'), '--num_prompts=-5'),
    ('num_prompts_zero', E('--num_prompts', '0'), '--num_prompts=0'),
    ('num_prompts_text', E('--num_prompts=abc'), 'num_prompts'),
    ('num_prompts_float', E('--num_prompts=1.5'), 'num_prompts'),
    ('checkpoint_missing', E('--checkpoint', '999'), '--checkpoint=999 not found'),
    ('checkpoint_negative', E('--checkpoint=-1'), '--checkpoint=-1 is invalid'),
    ('checkpoint_text', E('--checkpoint=last'), 'checkpoint'),
    ('suite_unknown', E('--suite', 'bogus'), "--suite='bogus'"),
    ('suite_one_unknown', E('--suite', 'in_distribution,bogus'), "--suite='bogus'"),
    ('suite_empty_list', E('--suite', ','), '--suite'),
    ('seed_negative', E('--seed=-1'), '--seed=-1'),
    ('all_checkpoints_and_checkpoint', E('--all-checkpoints', '--checkpoint=2'),
     'exclude each other'),
    ('positional_argument', E('extra'), 'unexpected arguments'),
    ('unknown_flag', E('--bogus'), 'bogus'),
    ('config_override_not_a_flag', E('--config.train.num_steps=1'), 'config.train.num_steps'),
    ('eval_dir_is_file', E(workdir='{root}/run_eval_file'), 'eval'),
]

S = lambda sweep, *extra, workdir=W: ['--sweep', sweep, '--workdir', workdir, *extra]  # noqa
ZOO = '{root}/sweep_ok.py'   # a valid one-member sweep
SWEEP = [
    ('sweep_file_missing', S('{root}/nope_sweep.py'), "nope_sweep.py' does not exist"),
    ('sweep_file_syntax_error', S('{root}/sweep_syntax.py'), 'SyntaxError'),
    ('sweep_file_no_get_sweep', S('{root}/sweep_noget.py'), 'defines no get_sweep()'),
    ('sweep_file_raises', S('{root}/sweep_raises.py'), 'broken on purpose'),
    ('sweep_not_a_dict', S('{root}/sweep_list.py'), 'sweep_list.py'),
    ('sweep_lacks_members', S('{root}/sweep_nomembers.py'), "lacks 'members'"),
    ('sweep_members_not_list', S('{root}/sweep_members_dict.py'), 'members'),
    ('sweep_member_not_dict', S('{root}/sweep_member_str.py'), 'member'),
    ('sweep_member_without_name', S('{root}/sweep_noname.py'), 'unique name'),
    ('sweep_duplicate_names', S('{root}/sweep_dupnames.py'), 'unique name'),
    ('sweep_member_unknown_key', S('{root}/sweep_unknown_key.py'), 'train.bogus'),
    ('sweep_member_unknown_section', S('{root}/sweep_unknown_section.py'), "no section 'bogus'"),
    ('sweep_member_bad_value', S('{root}/sweep_bad_value.py'), 'train.num_steps=-1'),
    ('sweep_member_unknown_mixer', S('{root}/sweep_bad_mixer.py'), "unknown mixer 'bogus'"),
    ('sweep_member_unknown_train_suite', S('{root}/sweep_bad_train_suites.py'),
     "config.eval.train_suites='bogus'"),
    ('sweep_config_missing', S('{root}/sweep_config_missing.py'), 'does not exist'),
    ('sweep_negative_seed', S('{root}/sweep_negative_seed.py'), 'seed'),
    ('sweep_seeds_not_ints', S('{root}/sweep_text_seeds.py'), "seeds=['x'] is invalid"),
    ('only_unknown', S(ZOO, '--only', 'bogus'), "unknown members ['bogus']"),
    ('worker_without_num_workers', S(ZOO, '--worker', '0'), 'go together'),
    ('worker_out_of_range', S(ZOO, '--worker', '3', '--num-workers', '2'), '--worker=3'),
    ('num_workers_zero', S(ZOO, '--worker', '0', '--num-workers', '0'), '--num-workers=0'),
    ('worker_negative', S(ZOO, '--worker=-1', '--num-workers=2'), '--worker=-1'),
    ('worker_text', S(ZOO, '--worker=a'), 'worker'),
    ('num_prompts_negative', S(ZOO, '--num_prompts=-1'), '--num_prompts=-1'),
    ('gather_with_worker', S(ZOO, '--gather', '--worker=0', '--num-workers=1'), '--gather'),
    ('workdir_is_file', S(ZOO, workdir='{root}/afile'), 'is not a directory'),
    ('workdir_under_file', S(ZOO, workdir='{root}/afile/sub'), 'is not a directory'),
    ('workdir_uncreatable', S(ZOO, workdir='/proc/icl_lab_bad_input'), 'icl_lab_bad_input'),
    ('sweep_missing', ['--workdir', W], '--sweep and --workdir are required'),
    ('workdir_missing', ['--sweep', ZOO], '--sweep and --workdir are required'),
    ('positional_argument', S(ZOO, 'extra'), 'unexpected arguments'),
    ('unknown_flag', S(ZOO, '--bogus'), 'bogus'),
]

BENCH = [
    ('sizes_unknown', ['--sizes=huge'], "'huge'"),
    ('sizes_empty', ['--sizes='], '--sizes'),
    ('steps_negative', ['--steps=-1'], '--steps=-1'),
    ('batch_negative', ['--batch=-4'], '--batch=-4'),
    ('dtype_unknown', ['--dtype=float64'], '--dtype'),
    ('task_unknown', ['--task=bogus'], "--task='bogus'"),
    ('mixers_unknown', ['--mixers=bogus'], "'bogus'"),
    ('mixer_option_unknown', ['--mixers=mamba:bogus=1'], "'bogus=1' is not key=value with a key of mamba"),
    ('mixer_option_without_value', ['--mixers=mamba:scan'], "'scan' is not key=value"),
    ('lengths_text', ['--mixers=attention', '--lengths=abc'], '--lengths'),
    ('lengths_zero', ['--mixers=attention', '--lengths=0,128'], '--lengths'),
    ('json_unwritable', ['--json={root}/nowhere/out.json'], '--json'),
    ('json_is_directory', ['--json={root}/notarun'], '--json'),
    ('positional_argument', ['extra'], 'unexpected arguments'),
    ('steps_text', ['--steps=abc'], '--steps'),
    ('unknown_flag', ['--bogus'], 'bogus'),
]
# bench.py parses its flags with absl's default parser (`app.run(main)`), which prints
# 'FATAL Flags parsing error: ...' and a second line; the fix is one line in bench.py
# (`app.run(main, flags_parser=cli.parse_flags)`), outside this test's owner's part of the file.
KNOWN_GAPS = {}   # (entry, case id) -> why a case still fails; empty: every input is answered

B = lambda *extra: ['--data_dir', '{root}/tfds', *extra]  # noqa: E731
BUILD_REGBENCH = [
    ('task_key_unknown', B('--task.bogus=1'), 'task.bogus'),
    ('num_test_dfas_zero', B('--task.num_test_dfas=0'), 'task.num_test_dfas=0'),
    ('num_test_dfas_negative', B('--task.num_test_dfas=-5'), 'task.num_test_dfas=-5'),
    ('num_train_dfas_zero', B('--task.num_train_dfas=0'), 'task.num_train_dfas=0'),
    ('seq_len_text', B('--task.seq_len=abc'), 'task.seq_len'),
    ('seq_len_float', B('--task.seq_len=1.5'), 'task.seq_len=1.5'),
    ('max_string_len_inf', B('--task.max_string_len=inf'), 'task.max_string_len'),
    ('vocab_size_zero', B('--task.vocab_size=0'), 'task.vocab_size=0'),
    ('alphabet_above_vocab', B('--task.alphabet_max=100'), 'task.alphabet_max=100'),
    ('strings_min_above_max', B('--task.strings_min=5', '--task.strings_max=3'),
     'task.strings_max=3'),
    ('pool_seed_negative', B('--task.pool_seed=-1'), 'task.pool_seed=-1'),
    ('predict_separator_not_bool', B('--task.predict_separator=maybe'),
     'task.predict_separator'),
    ('task_override_without_value', B('--task.seq_len'), '--task.seq_len'),
    ('unknown_flag', B('--bogus=1'), '--bogus'),
    ('positional_argument', B('extra'), 'extra'),
    ('config_file_missing', B('--config', 'configs/nope.py'), 'does not exist'),
    ('config_file_syntax_error', B('--config', '{root}/cfg_syntax.py'), 'cfg_syntax.py'),
    ('config_variant_unknown', B('--config', 'configs/regbench.py:huge'), "'huge'"),
    ('config_not_regbench', B('--config', LR), 'regbench'),
    ('data_dir_missing_value', ['--data_dir'], '--data_dir'),
    ('data_dir_is_file', ['--data_dir', '{root}/afile'], 'afile'),
    ('data_dir_under_file', ['--data_dir', '{root}/afile/sub'], 'afile'),
    ('data_dir_uncreatable', ['--data_dir', '/proc/icl_lab_bad_input', '--task.num_test_dfas=5'],
     'icl_lab_bad_input'),
]

ENTRIES = {
    'train.py': TRAIN,
    'eval.py': EVAL,
    'sweep.py': SWEEP,
    'bench.py': BENCH,
    'data.build_regbench': BUILD_REGBENCH,
}

# A handful run as real subprocesses too: their result must equal the harness's.
TRUE_SUBPROCESS = [('train.py', 'config_file_missing'), ('train.py', 'num_steps_text'),
                   ('eval.py', 'num_prompts_zero'), ('sweep.py', 'sweep_file_syntax_error'),
                   ('bench.py', 'steps_negative'), ('data.build_regbench', 'unknown_flag'),
                   ('train.py', 'workdir_other_config'), ('eval.py', 'checkpoint_missing')]

SWEEP_FILES = {
    'sweep_syntax.py': 'def get_sweep(:\n',
    'sweep_noget.py': 'X = 1\n',
    'sweep_raises.py': 'def get_sweep():\n  raise RuntimeError("broken on purpose")\n',
    'sweep_list.py': 'def get_sweep():\n  return []\n',
    'sweep_nomembers.py': f'def get_sweep():\n  return {{"config": "{LR}"}}\n',
    'sweep_members_dict.py': f'def get_sweep():\n  return {{"config": "{LR}", '
                             f'"members": {{"a": 1}}}}\n',
    'sweep_member_str.py': f'def get_sweep():\n  return {{"config": "{LR}", "members": ["a"]}}\n',
}


def _sweep(members, **extra):
  body = {'config': LR, 'members': members, **extra}
  return f'def get_sweep():\n  return {body!r}\n'


SWEEP_FILES.update({
    'sweep_ok.py': _sweep([{'name': 'a'}], overrides={'train.num_steps': 10}),
    'sweep_noname.py': _sweep([{'model.mixer': 'attention'}]),
    'sweep_dupnames.py': _sweep([{'name': 'a'}, {'name': 'a'}]),
    'sweep_unknown_key.py': _sweep([{'name': 'a', 'train.bogus': 1}]),
    'sweep_unknown_section.py': _sweep([{'name': 'a', 'bogus.key': 1}]),
    'sweep_bad_value.py': _sweep([{'name': 'a', 'train.num_steps': -1}]),
    'sweep_bad_mixer.py': _sweep([{'name': 'a', 'model.mixer': 'bogus'}]),
    'sweep_bad_train_suites.py': _sweep([{'name': 'a', 'eval.train_suites': 'bogus'}]),
    'sweep_negative_seed.py': _sweep([{'name': 'a'}], seeds=[0, -1]),
    'sweep_text_seeds.py': _sweep([{'name': 'a'}], seeds=['x']),
    'sweep_config_missing.py': 'def get_sweep():\n  return {"config": "configs/nope.py:tiny", '
                               '"members": [{"name": "a"}]}\n',
})


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def _env():
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  return env


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  """The tree every case runs against: a real (tiny) run, broken runs, broken files."""
  root = str(tmp_path_factory.mktemp('bad_inputs'))
  run = os.path.join(root, 'run')
  out = subprocess.run([sys.executable, 'train.py', '--config', LR, '--workdir', run,
                        *RUN_ARGS], cwd=REPO, env=_env(), capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  _write(os.path.join(root, 'afile'), 'a regular file\n')
  _write(os.path.join(root, 'notarun', 'README'), 'not a run\n')
  _write(os.path.join(root, 'corrupt_run', 'config.json'), '{"task": {"name": ')
  _write(os.path.join(root, 'list_config_run', 'config.json'), '[1, 2, 3]\n')
  with open(os.path.join(run, 'config.json')) as f:
    config = json.load(f)
  for name, edit in (('unknown_task_run', ('task', 'name', 'bogus')),
                     ('bad_value_run', ('train', 'num_steps', -1)),
                     ('no_checkpoints_run', None)):
    changed = json.loads(json.dumps(config))
    if edit:
      changed[edit[0]][edit[1]] = edit[2]
    _write(os.path.join(root, name, 'config.json'), json.dumps(changed))
  shutil.copytree(run, os.path.join(root, 'run_eval_file'))
  _write(os.path.join(root, 'run_eval_file', 'eval'), 'eval is a file here\n')
  _write(os.path.join(root, 'cfg_syntax.py'), 'def get_config(arg=None:\n')
  _write(os.path.join(root, 'cfg_noget.py'), 'X = 1\n')
  _write(os.path.join(root, 'cfg_raises.py'),
         'def get_config(arg=None):\n  raise RuntimeError("broken on purpose")\n')
  for name, text in SWEEP_FILES.items():
    _write(os.path.join(root, name), text)
  return root


def _argv(argv, root):
  return [a.format(root=root, run=os.path.join(root, 'run')) for a in argv]


_RESULTS = {}   # (entry, root) -> results


def harness_results(entry, root):
  """Runs every case of `entry` in one subprocess (once per module); {case id: result}."""
  if (entry, root) not in _RESULTS:
    spec = dict(entry=entry, root=root,
                cases=[dict(id=i, argv=_argv(argv, root)) for i, argv, _ in ENTRIES[entry]])
    cases_path = os.path.join(root, '..', f'cases_{entry}.json')
    results_path = os.path.join(root, '..', f'results_{entry}.json')
    with open(cases_path, 'w') as f:
      json.dump(spec, f)
    out = subprocess.run([sys.executable, HARNESS, cases_path, results_path], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(results_path) as f:
      _RESULTS[entry, root] = json.load(f)
  return _RESULTS[entry, root]


def check_one_line(result, expected, what):
  err = result['stderr']
  lines = err.splitlines()
  assert not result['traceback'] and 'Traceback' not in err, f'{what}: traceback\n{err}'
  assert result['code'] != 0, f'{what}: exit code 0; stderr {err!r}'
  assert len(lines) == 1, f'{what}: {len(lines)} lines on stderr:\n{err}'
  assert lines[0].startswith('error: '), f'{what}: {lines[0]!r}'
  assert expected in lines[0], f'{what}: {expected!r} not in {lines[0]!r}'
  assert result['changed'] == [], f'{what}: wrote {result["changed"]}'


CASES = [pytest.param(entry, case_id, expected, id=f'{entry}:{case_id}', marks=(
    [pytest.mark.xfail(reason=KNOWN_GAPS[entry, case_id], strict=True)]
    if (entry, case_id) in KNOWN_GAPS else []))
         for entry, cases in ENTRIES.items() for case_id, _, expected in cases]


def test_corpus_size_and_unique_ids():
  assert len(CASES) >= 100
  for entry, cases in ENTRIES.items():
    ids = [c[0] for c in cases]
    assert len(ids) == len(set(ids)), entry


@pytest.mark.parametrize('entry,case_id,expected', CASES)
def test_bad_input_is_one_line(root, entry, case_id, expected):
  result = harness_results(entry, root)[case_id]
  check_one_line(result, expected, f'{entry} {case_id}')
  # Rejected before compiling: well under a second alone; the bound allows a loaded machine.
  assert result['seconds'] < 20, f'{entry} {case_id} took {result["seconds"]:.1f}s'
  assert not os.path.exists(os.path.join(root, 'new_workdir'))


@pytest.mark.parametrize('entry,case_id', TRUE_SUBPROCESS, ids=[f'{e}:{c}' for e, c in
                                                                 TRUE_SUBPROCESS])
def test_true_subprocess_agrees(root, entry, case_id):
  """The harness is faithful: a real `python <entry> ...` prints the same line, same code."""
  argv = _argv(next(a for i, a, _ in ENTRIES[entry] if i == case_id), root)
  command = ([sys.executable, entry] if entry.endswith('.py') else
             [sys.executable, '-m', entry]) + argv
  out = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=300)
  expected = harness_results(entry, root)[case_id]
  assert (out.returncode, out.stderr) == (expected['code'], expected['stderr'])
  assert not os.path.exists(os.path.join(root, 'new_workdir'))


def test_read_only_workdir(root):
  """A work directory this user cannot write to (not testable as root: root writes anyway)."""
  if os.geteuid() == 0:
    pytest.skip('root can write to a read-only directory')
  ro = os.path.join(root, 'read_only')
  os.makedirs(ro, exist_ok=True)
  os.chmod(ro, 0o555)
  try:
    out = subprocess.run([sys.executable, 'train.py', '--config', LR, '--workdir',
                          os.path.join(ro, 'w')], cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=300)
    lines = out.stderr.splitlines()
    assert out.returncode != 0 and len(lines) == 1 and lines[0].startswith('error: ')
    assert 'not writable' in lines[0]
  finally:
    os.chmod(ro, 0o755)
