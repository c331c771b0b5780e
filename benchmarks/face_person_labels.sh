#!/bin/sh
# A face + person label set by rule from face boxes, for trying the 2-class variant (mobilenet0.25_2cls)
# where no person annotations exist: each face (x y w h) keeps its line with class 1 appended, and gets a
# person box below it, 3 face widths wide and 7 face heights tall from 0.3 face heights above the face
# (a head-and-torso rule of thumb, not an annotation), class 2, without landmarks. Faces under 10
# pixels wide get no person. Reads RetinaFace labels (label.txt) or WIDER's bbx_gt text format.
#   benchmarks/face_person_labels.sh IN_LABELS > OUT_LABELS   (the images stay where they are: pass
#   --images to build/train and build/eval when OUT_LABELS is not beside them)
set -eu
in=$1
case "$in" in
*bbx_gt*)
    # name, count, then per face "x y w h blur expression illumination invalid occlusion pose"
    awk 'function person(x, y, w, h) { if (w >= 10) printf "%.1f %.1f %.1f %.1f -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 1 2\n", x - w, y - 0.3 * h, 3 * w, 7 * h }
         state == 0 { print "# " $1; state = 1; next }
         state == 1 { n = $1; rows = n ? n : 1; state = 2; next }
         state == 2 { if (n && $8 == 0 && $3 > 0 && $4 > 0) { printf "%s %s %s %s -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 1 1\n", $1, $2, $3, $4; person($1, $2, $3, $4) }
                      if (--rows == 0) state = 0 }' "$in" ;;
*)
    awk 'function person(x, y, w, h) { if (w >= 10) printf "%.1f %.1f %.1f %.1f -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 1 2\n", x - w, y - 0.3 * h, 3 * w, 7 * h }
         /^#/ { print; next }
         NF >= 4 { line = $0; sub(/[ \t]+$/, "", line)
                   if (NF == 4) line = line " -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 1"
                   print line " 1"; person($1, $2, $3, $4) }' "$in" ;;
esac
