#!/usr/bin/env bash
# One prepared GPU check for a lent device (an H200 here), inside 8 minutes, from the source tree
# (no `pip install -e .`): `pytest -m gpu`, then benchmarks/gpu_bench.py's figures.
#
#   bash benchmarks/gpu_check.sh                 # on the device; figures in $OUT (else ./gpu_check_results)
#   bash benchmarks/gpu_check.sh --dry           # this CPU, tiny sizes, seconds (tests/train/test_gpu_check.py)
#   bash benchmarks/gpu_check.sh --out DIR       # figures in DIR
#
# The device image has torch and torchvision but not pydantic / ruamel.yaml (nor typer, rich, PyYAML
# where missing): carry them as wheels in .whl/ or shared/wheels/ (docs/benchmarks.md says how);
# they are installed into a private folder with pip --no-index, nothing is fetched.
set -u
cd "$(dirname "$0")/.."
DRY=0
RESULTS="${OUT:-./gpu_check_results}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry) DRY=1 ;;
    --out) RESULTS="$2"; shift ;;
    *) echo "gpu_check.sh: unknown option $1 (use --dry, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

for wheels in .whl shared/wheels; do
  if compgen -G "$wheels/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/cnnspec-gpu-check-site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl \
      || { echo "gpu_check.sh: installing the wheels in $wheels failed" >&2; exit 1; }
    export PYTHONPATH="$PYTHONPATH:$site"   # after the tree: the source tree's cnnspec wins
  fi
done

# pytest -m gpu: the whole suite's GPU tests on the device (about 2 minutes there); in the dry run one
# file's, which skip without CUDA: it shows the command runs, not that the tests pass.
if [ "$DRY" = 1 ]; then
  tests=(tests/train/test_train_gpu.py); limit=120
else
  tests=(tests); limit=170
fi
timeout "$limit" python3 -m pytest -m gpu -q -p no:cacheprovider "${tests[@]}" >"$RESULTS/pytest_gpu.txt" 2>&1
pytest_exit=$?

bench=(--out "$RESULTS" --pytest-log "$RESULTS/pytest_gpu.txt" --pytest-exit "$pytest_exit")
[ "$DRY" = 1 ] && bench+=(--dry)
# The bench's own budget (200 s) plus its last measurement: the script as a whole stays under 8 minutes.
timeout 280 python3 benchmarks/gpu_bench.py "${bench[@]}" --budget 200 2>&1 | tee "$RESULTS/gpu_bench.log"
bench_exit=${PIPESTATUS[0]}
echo "gpu_check: pytest -m gpu exit $pytest_exit, gpu_bench exit $bench_exit; figures in $RESULTS/gpu_check.json"
[ "$bench_exit" = 0 ]
