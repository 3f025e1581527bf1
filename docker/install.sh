#!/bin/sh
# Install feedback-annotate and its scorers' dependencies into the Python environment
# that `python` runs: the steps the worker image (Dockerfile) runs, usable in any
# virtual environment too.
#
# Usage: docker/install.sh TORCH_VARIANT [SOURCE]
#   TORCH_VARIANT  cpu: torch's CPU-only build, from the index in TORCH_INDEX_URL
#                  (default: PyTorch's CPU index).
#                  gpu: the PyPI build, which brings its CUDA libraries as pip packages.
#   SOURCE         project directory or wheel to install (default: the current directory).
set -eu

TORCH_REQUIREMENT="torch==2.13.0"
CPU_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"

if [ "$#" -lt 1 ]; then
    echo "usage: $0 cpu|gpu [SOURCE]" >&2
    exit 2
fi
variant="$1"
source="${2:-.}"

case "$variant" in
    cpu) python -m pip install --no-cache-dir "$TORCH_REQUIREMENT" --index-url "$CPU_INDEX_URL" ;;
    gpu) python -m pip install --no-cache-dir "$TORCH_REQUIREMENT" ;;
    *)
        echo "$0: TORCH_VARIANT must be cpu or gpu, got '$variant'" >&2
        exit 2
        ;;
esac

python -m pip install --no-cache-dir "$source[toxicity,profanity]"

# Fail here rather than on a worker if a module or a scorer's dependency is missing.
# The check runs from / so that it imports the installed package, not SOURCE.
cd /
python -c '
import pipeline.cli
from scorers.registry import get_scorer_class, scorer_targets
for alias in scorer_targets():
    get_scorer_class(alias).check_dependencies()
'
annotate --help > /dev/null
