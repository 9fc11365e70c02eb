#!/bin/sh
# Hard rule 1 (DESIGN §1): workers/ never includes a storage header that can
# mutate state. Only the pure headers below are allowed; anything else from
# storage/ in workers/ fails this test.
set -u
root=${1:-.}
allowed='base.h tsa.h log.h hist.h record.h bufpool.h'
bad=0
for f in "$root"/workers/*.c "$root"/workers/*.h; do
	[ -e "$f" ] || continue
	for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
		case "$h" in
		*storage/* | ../*) base=${h##*/} ;;
		*) [ -e "$root/workers/$h" ] && continue; base=$h ;;
		esac
		case " $allowed " in
		*" $base "*) ;;
		*) echo "$f includes $h: workers/ may only include $allowed from storage/"; bad=1 ;;
		esac
	done
done
[ $bad -eq 0 ] && echo "workers/ includes only pure storage headers"
exit $bad
