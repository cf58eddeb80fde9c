#!/bin/sh
# Packs the data-plane benchmark into one archive that runs on another
# Linux x86-64 machine with nothing installed (no Go, no packages, no
# network): a machine with more cores, where the load generator does not
# compete with the proxies. `make bench-pack`; see docs/performance.md.
#
# Usage: bench/pack.sh OUT.tar.xz [BASE_WEFT_PROXY]
# The archive holds stripped builds of weftbench, fortio and weft-proxy
# (and BASE_WEFT_PROXY as weft-proxy-base, measured beside it), this
# machine's nginx and haproxy with the shared libraries they load (all
# but the C library's own), and run.sh, which runs the harness on them.
set -eu
out=$1
base=${2:-}
GO=${GO:-go}
TAGS=${TAGS:-grpcnotrace}
BUILDENV=${BUILDENV:-CGO_ENABLED=0}
root=$(cd "$(dirname "$0")/.." && pwd)
case $out in /*) ;; *) out=$PWD/$out ;; esac
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir "$d/lib"
cd "$root"
env $BUILDENV $GO build -tags "$TAGS" -ldflags "-s -w" -o "$d/weft-proxy" ./cmd/weft-proxy
$GO build -ldflags "-s -w" -o "$d/weftbench" ./bench/cmd/weftbench
(cd tools && $GO build -ldflags "-s -w" -o "$d/fortio" fortio.org/fortio)
if [ -n "$base" ]; then cp "$base" "$d/weft-proxy-base"; fi
for p in nginx haproxy; do
	b=$(command -v $p 2>/dev/null || true)
	if [ -z "$b" ] && [ -x /usr/sbin/$p ]; then b=/usr/sbin/$p; fi
	if [ -z "$b" ]; then
		echo "bench-pack: no $p here (make bench-deps): the archive runs without it" >&2
		continue
	fi
	cp "$b" "$d/$p"
	ldd "$b" | awk '/=> \//{print $3}' | while read -r l; do
		case $(basename "$l") in
		libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*) ;;
		*) cp -L "$l" "$d/lib/" ;;
		esac
	done
done
cat >"$d/run.sh" <<'RUN'
#!/bin/sh
# Runs the packed Weft benchmark; arguments go to weftbench (--help lists
# them), e.g. ./run.sh --quick --out results
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
set -- --fortio ./fortio --weft-proxy ./weft-proxy --caddy "" "$@"
if [ -x ./weft-proxy-base ]; then set -- --weft-proxy-base ./weft-proxy-base "$@"; fi
for p in nginx haproxy; do
	if [ -x ./$p ]; then set -- --$p ./$p "$@"; else set -- --$p "" "$@"; fi
done
exec ./weftbench "$@"
RUN
chmod +x "$d/run.sh"
tar -C "$d" -cJf "$out" .
echo "wrote $out ($(du -h "$out" | cut -f1)); on the other machine: mkdir wb && tar -C wb -xJf $(basename "$out") && wb/run.sh --quick"
