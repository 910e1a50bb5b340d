#!/usr/bin/env bash
# Trains every zoo model with its default recipe in a fresh cache and checks the
# issue-4 acceptance floors: lenet5 >= 89.0%, resnet8 >= 92.0%,
# mobilenetv2_tiny >= 90.5% top-1 on the 10k test set; det_tiny mAP@[.5:.95]
# >= 0.5 on 500 held-out scenes; each within 10 minutes of training.
set -u
QEVAL=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK"
export QEVAL_CACHE="$WORK/cache"
fails=0
for spec in lenet5:89.0 resnet8:92.0 mobilenetv2_tiny:90.5 det_tiny:0.5; do
  model=${spec%%:*}
  floor=${spec#*:}
  "$QEVAL" train "$model" >"$WORK/$model.out" 2>"$WORK/$model.err" || { echo "FAIL: $model: exit $?"; tail -3 "$WORK/$model.err"; fails=$((fails + 1)); continue; }
  cat "$WORK/$model.out"
  if [ "$model" = det_tiny ]; then
    score=$(grep -o 'mAP@\[.50:.95\] [0-9.]*' "$WORK/$model.out" | awk '{print $2}')
  else
    score=$(grep -o 'top-1 [0-9.]*' "$WORK/$model.out" | awk '{print $2}')
  fi
  # "in 7m12s" or "in 45s"
  secs=$(grep -o ' in [0-9]*m\?[0-9]*s' "$WORK/$model.out" | awk '{t=$2; sub(/s$/,"",t); n=split(t,a,"m"); print (n==2 ? a[1]*60+a[2] : a[1])}')
  if awk "BEGIN{exit !($score >= $floor)}" && [ "$secs" -le 600 ]; then
    echo "ok: $model $score >= $floor in ${secs}s"
  else
    echo "FAIL: $model: $score (floor $floor) in ${secs}s (limit 600)"
    fails=$((fails + 1))
  fi
done
test "$fails" -eq 0
