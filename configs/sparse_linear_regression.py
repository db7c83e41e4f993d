r"""In-context sparse_linear_regression (Garg et al. 2022); see configs/linear_regression.py for the variants.

  python train.py --config configs/sparse_linear_regression.py:tiny --workdir runs/sparse_linear_regression_tiny
  python eval.py --workdir runs/sparse_linear_regression_tiny --suite all
"""
from configs.linear_regression import regression_config


def get_config(arg=None):
  return regression_config('sparse_linear_regression', arg)
