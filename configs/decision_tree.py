r"""In-context decision_tree (Garg et al. 2022); see configs/linear_regression.py for the variants.

  python train.py --config configs/decision_tree.py:tiny --workdir runs/decision_tree_tiny
  python eval.py --workdir runs/decision_tree_tiny --suite all
"""
from configs.linear_regression import regression_config


def get_config(arg=None):
  return regression_config('decision_tree', arg)
