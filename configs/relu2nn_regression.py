r"""In-context relu2nn_regression (Garg et al. 2022); see configs/linear_regression.py for the variants.

  python train.py --config configs/relu2nn_regression.py:tiny --workdir runs/relu2nn_regression_tiny
  python eval.py --workdir runs/relu2nn_regression_tiny --suite all
"""
from configs.linear_regression import regression_config


def get_config(arg=None):
  return regression_config('relu2nn_regression', arg)
