"""Convert raw Tiny-Taskonomy into the project's HDF5 schema.

Usage: see docs/datasets.md ("NYUv2 and Tiny-Taskonomy") or
`python scripts/prepare_taskonomy.py --help`.
"""

import sys

from mtl_attack.data.convert.cli import main_taskonomy
from mtl_attack.data.schema import DatasetFileError

if __name__ == "__main__":
    try:
        main_taskonomy()
    except (DatasetFileError, ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
