#!/usr/bin/env bash
# An installation runs on its own: `cmake --install` into a temporary prefix, the
# prefix moved elsewhere (the shipped model is found relative to the executable,
# not where it was installed, nor in the source tree), then the installed
# `bertune train --preset main-pretrained` fine-tunes the installed model for 2 steps
# on a small slice of NSMC from a working directory outside the source tree. With
# the installed models taken away, the same command must fail and name where the
# model belongs: the source tree's models/ is no fallback for an installed binary.
#
# Usage: install_test.sh BUILD_DIR SHARED_DIR
set -euo pipefail
build=$1
shared=$(cd "$2" && pwd)
tmp=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/bertune-install.XXXXXX")" && pwd -P)  # as /proc/self/exe names it
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install_test: $*" >&2; exit 1; }

"${CMAKE:-cmake}" --install "$build" --prefix "$tmp/staged" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install failed"; }
mv "$tmp/staged" "$tmp/prefix"
prefix=$tmp/prefix
models=$prefix/share/bertune/models
for f in bin/bertune share/bertune/models/nsmc-bert-small/model.safetensors \
         share/bertune/models/nsmc-bert-small/vocab.txt share/doc/bertune/README.md; do
  [ -e "$prefix/$f" ] || fail "the installation lacks $f"
done

# 200 reviews to train on, 40 to test on (ratings_*.txt: a header line, then id<TAB>text<TAB>label).
mkdir -p "$tmp/data" "$tmp/work"
head -n 201 "$shared/data/nsmc/ratings_train.txt" >"$tmp/data/train.txt"
head -n 41 "$shared/data/nsmc/ratings_test.txt" >"$tmp/data/test.txt"
train() {  # train OUTPUT_DIR LOG
  (cd "$tmp/work" && env -u BERTUNE_MODELS BERTUNE_SHARED="$shared" BERTUNE_CACHE="$tmp/cache" \
     OMP_NUM_THREADS=2 "$prefix/bin/bertune" train --preset main-pretrained \
     --train-file "$tmp/data/train.txt" --test-file "$tmp/data/test.txt" --validation-split 40 \
     --max-steps 2 --per-device-train-batch-size 8 --per-device-eval-batch-size 40 \
     --eval-steps 2 --save-steps 2 --logging-steps 1 --output-dir "$1") >"$2" 2>&1
}

train "$tmp/work/run" "$tmp/run.log" || { cat "$tmp/run.log"; fail "the installed bertune train failed"; }
grep -q "Saved the final model to" "$tmp/run.log" || { cat "$tmp/run.log"; fail "the run did not finish"; }
grep -rqF "$models/nsmc-bert-small" "$tmp/work/run" ||
  { cat "$tmp/run.log"; fail "the run's output does not name the installed model $models/nsmc-bert-small"; }

mv "$models" "$tmp/models-away"
if train "$tmp/work/run2" "$tmp/run2.log"; then
  cat "$tmp/run2.log"; fail "without its installed models the installed binary still trained (a source-tree fallback?)"
fi
grep -qF "$models/nsmc-bert-small" "$tmp/run2.log" ||
  { cat "$tmp/run2.log"; fail "the error does not name the installed model's place $models/nsmc-bert-small"; }
echo "install_test: the relocated installation fine-tuned $models/nsmc-bert-small; without it the run fails naming that place"
