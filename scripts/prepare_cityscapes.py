"""Convert Cityscapes (raw official release | MTAN .npy) into the project's HDF5 schema.

Usage: see docs/datasets.md ("Cityscapes") or `python scripts/prepare_cityscapes.py --help`.
"""

import sys

from mtl_attack.data.convert.cli import main_cityscapes
from mtl_attack.data.schema import DatasetFileError

if __name__ == "__main__":
    try:
        main_cityscapes()
    except (DatasetFileError, ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
