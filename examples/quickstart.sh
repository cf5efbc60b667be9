#!/usr/bin/env bash
# The whole detkit chain on the embedded synthetic data, one stage command at a time.
# `detkit quickstart OUT` runs the same steps from Python; this script shows the commands a user types.
#   bash examples/quickstart.sh [OUT] [TRAIN_MINUTES]
set -euo pipefail
OUT=${1:-runs/example}
MINUTES=${2:-9}
SYNTH_OPTS=${SYNTH_OPTS:-}                                   # e.g. "--train 64 --val 16 --calib 16 --test 16 --imgsz 96" for a smoke run
TRAIN_OPTS=${TRAIN_OPTS:-}                                   # e.g. "train.imgsz=96"

detkit data synth "$OUT/data" --domains $SYNTH_OPTS                    # train/val/calib/test + six shifted domains
detkit data validate "$OUT/data"                            # exit 1 on errors
detkit data stats "$OUT/data" --plots "$OUT/data/stats"
detkit train recipe:rtdetr-r18-cpu --data "$OUT/data" --out "$OUT/train" --name run \
  train.time_limit_minutes="$MINUTES" $TRAIN_OPTS                    # any recipe field: key=value
detkit eval "$OUT/train/run" --data "$OUT/data" --split test --out "$OUT/eval" --name test \
  --robustness --coco-o "$OUT/data/coco_o" --corruptions gaussian_noise,motion_blur,fog,jpeg_compression --severities 3 \
  --calibration
detkit calibrate "$OUT/train/run" --data "$OUT/data" --split calib --eval-split test --method isotonic \
  --out "$OUT/calibrator.json"
detkit export onnx "$OUT/train/run" --calibrator "$OUT/calibrator.json" --out "$OUT/export/model.onnx"
detkit eval "$OUT/export/model.onnx" --data "$OUT/data" --split test --out "$OUT/eval" --name onnx
detkit predict "$OUT/export/model.onnx" "$OUT/data/images/test" --out "$OUT/predict"
detkit bench "$OUT/export/model.onnx" --backends torch,onnxruntime --batch 1
