#!/usr/bin/env bash
# Every GPU measurement the README's GPU rows come from, plus the GPU-vs-CPU check of the shipped models, in one go.
#
#     bash bench/gpu_all.sh OUTDIR        # on a machine with a CUDA GPU; one text file per script in OUTDIR
#
# Each script has its own time limit (seconds, in front of it) so that one slow part cannot starve the others.
set -u
out=${1:-bench-gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
run() {
  local name=$1 limit=$2
  shift 2
  echo "== $name ($limit s): $*" | tee -a "$out/$name.txt"
  timeout "$limit" "$py" "$@" >> "$out/$name.txt" 2>&1
  echo "rc=$?" >> "$out/$name.txt"
  tail -n 25 "$out/$name.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu_check.txt" 2>&1
run gpu_check 70 tools/gpu_check.py
run video_sweep 100 bench/video_sweep.py --device cuda --dtype bfloat16 --repeat 5 --moves 5
run sweep_speed 80 bench/sweep_speed.py --device cuda
run sweep_speed 50 bench/sweep_speed.py --device cuda --dtype bfloat16 --skip-base
run batch_export 110 bench/batch_export.py --device cuda --dtype bfloat16 --images 1024 --batch-size 256
run attention_memory 70 bench/attention_memory.py --device cuda
run fusion_clip 45 bench/fusion_latency.py --gpu-clip --device cuda --dtype bfloat16
run video_sweep_fp32 50 bench/video_sweep.py --device cuda --dtype float32 --repeat 3 --moves 3
run family_forward 120 bench/family_forward.py --device cuda --dtype bfloat16 --repeat 10
