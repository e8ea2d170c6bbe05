"""Public API facade: ``tinyopt.data.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.front.data``.
Library modules import from there, never from here.
"""

from tinyopt.front.data import (CLASS_NAMES, Dataset, DatasetError, dataset, fetch,  # noqa: F401
                                load, main, preprocess)

__all__ = ['CLASS_NAMES', 'Dataset', 'DatasetError', 'dataset', 'fetch', 'load', 'preprocess']

if __name__ == "__main__":  # python -m tinyopt.data fetch
    import sys
    sys.exit(main())
