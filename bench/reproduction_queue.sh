#!/usr/bin/env bash
# Trains the reproduction runs one after another within a wall-clock budget, each resumed
# where it stopped, so that a long queue spans many sittings: run the same command again
# and it goes on. A run that is scored (metrics.json) is skipped.
#
#   OMP_NUM_THREADS=1 taskset -c 1 bench/reproduction_queue.sh DATA_DIR RUNS_DIR MINUTES [TABLE]
#
# DATA_DIR holds mnist.npz (../shared/get-mnist DATA_DIR); RUNS_DIR gets one folder per run;
# TABLE is the REPRODUCTION.md that gets the rows (default: the one beside bench/). After each
# run the orderings at equal epochs (bench/reproduction_orderings.py) are redrawn, and with the
# default table README.md's summary (bench/reproduction_summary.py) is rewritten and the run
# folders are saved into reproduction/runs (bench/reproduction_carry.py), so that a commit
# carries them to the next machine; each call first restores what is saved there.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 DATA_DIR RUNS_DIR MINUTES [TABLE]" >&2
    exit 2
fi
data=$1 runs=$2 minutes=$3
root=$(cd "$(dirname "$0")/.." && pwd)
table=${4:-$root/REPRODUCTION.md}
cli=pyro-vae python=python  # the checkout's own environment first (make .venv/.test)
[ -x "$root/.venv/bin/pyro-vae" ] && cli=$root/.venv/bin/pyro-vae python=$root/.venv/bin/python
deadline=$(( $(date +%s) + ${minutes%.*} * 60 ))
"$python" "$root/bench/reproduction_carry.py" restore "$runs" || true  # another machine's runs
# The paper's rows in the order the targets need them. The VAE's first run went with a machine
# on 2026-12-06 after it was scored; it was trained again after the targets' runs, for the
# reference curve of the orderings. The paper's code's Adam comes last: it compares two
# optimisers, no target needs it.
queue=(
    "burda2015-1layer iwae:k=5"
    "burda2015-1layer iwae-dreg:k=5"
    "burda2015-1layer elbo"
    "burda2015-2layer elbo"
    "vampprior2018 elbo:warmup_steps=50000"
    "vampprior2018-standard elbo:warmup_steps=50000"
    "burda2015-1layer iwae:k=50"
    "burda2015-2layer iwae:k=5"
    "burda2015-1layer-code elbo"
)
for entry in "${queue[@]}"; do
    read -r recipe objective <<< "$entry"
    out="$runs/${recipe}_$(echo "$objective" | tr ':=' '_-')"
    [ -f "$out/metrics.json" ] && continue
    left=$(( (deadline - $(date +%s)) / 60 ))
    if [ "$left" -lt 2 ]; then
        echo "out of time; run the same command again to go on" >&2
        exit 0
    fi
    resume=()
    [ -f "$out/checkpoint.pt" ] && resume=(--resume)
    status=0
    "$cli" reproduce "$recipe" --objective "$objective" --data-dir "$data" --out "$out" \
        --max-minutes "$left" --table "$table" "${resume[@]}" || status=$?
    # The orderings at equal epochs and README's table, brought up to date with the new row,
    # also when the run was stopped (SIGTERM to it exits 143 after writing its row).
    "$python" "$root/bench/reproduction_orderings.py" "$runs" --table "$table" || true
    if [ "$table" = "$root/REPRODUCTION.md" ]; then
        "$python" "$root/bench/reproduction_summary.py" || true
        "$python" "$root/bench/reproduction_carry.py" save "$runs" || true  # skips runs in use
    fi
    [ "$status" -eq 0 ] || exit "$status"
    [ -f "$out/metrics.json" ] || exit 0  # stopped at its budget: the next call resumes it
done
