#!/bin/sh
# The layer rule: a source file may include headers of its own layer and of the layers below, never
# of one above. Layers, bottom up:
#   0 tensor   1 autograd, cuda_kernels   2 nn   3 models   4 detection   5 apps, tests, benchmarks
# Usage: tests/check_layers.sh [ROOT]   (default: the current directory). Prints each include that
# goes up a layer as FILE:LINE: and exits 1 when there is one.
root=${1:-.}
rank() {
    case "$1" in
    tensor) echo 0 ;;
    autograd | cuda_kernels) echo 1 ;;
    nn) echo 2 ;;
    models) echo 3 ;;
    detection) echo 4 ;;
    apps | tests | benchmarks) echo 5 ;;
    *) echo "" ;;
    esac
}
bad=0
for dir in tensor autograd cuda_kernels nn models detection; do
    [ -d "$root/$dir" ] || continue
    mine=$(rank "$dir")
    # every #include "layer/..." of the directory's sources, as FILE:LINE:LAYER
    for hit in $(cd "$root" && grep -rnoE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[a-z_]+/' "$dir" \
                 --include='*.c' --include='*.h' --include='*.cu' --include='*.S' |
                 sed -E 's/^([^:]+:[0-9]+):.*"([a-z_]+)\/$/\1:\2/'); do
        layer=${hit##*:}
        theirs=$(rank "$layer")
        if [ -n "$theirs" ] && [ "$theirs" -gt "$mine" ]; then
            echo "${hit%:*}: $dir (layer $mine) includes $layer/ (layer $theirs)"
            bad=1
        fi
    done
done
[ $bad -eq 0 ] && echo "layers: every include goes down or sideways"
exit $bad
