#!/usr/bin/env bash
# Reads package paths (one a line) and prints them with the packages whose
# tests take longest first, in that order, then the rest as they came.
# go test starts packages in the order given, as many at a time as there are
# cores; on a 2-core machine a long package started last ran alone for
# minutes at the end of CI's passes. The list is by measurement (CI's logs,
# 2026-12-03: handlers, storage on sqld, spa and projection take 90-210 s
# each, the next ones 20-50 s); a package missing from it only runs later.
set -euo pipefail
longest=(handlers storage spa projection faults/httpload sim schedule bus shells/http shells/lambda)
all=()
while IFS= read -r p; do
	all+=("$p")
done
module="$(go list -m)"
for short in "${longest[@]}"; do
	for p in "${all[@]}"; do
		if [[ "$p" == "$module/$short" || "$p" == "./$short" ]]; then
			echo "$p"
		fi
	done
done
for p in "${all[@]}"; do
	rel="${p#"$module"/}"
	rel="${rel#./}"
	skip=0
	for short in "${longest[@]}"; do
		[[ "$rel" == "$short" ]] && skip=1
	done
	((skip)) || echo "$p"
done
