# Sourced by the guest builders: guest_cached NAME KEY BUILDER [DIR]
# prints DIR/NAME-KEY.img, built first with "BUILDER OUT" when missing
# (older NAME-*.img removed).  DIR: PBSLM_CACHE or
# /var/cache/pbs-livemount-tests.
guest_cached() {
	local name=$1 key=$2 builder=$3
	local dir=${4:-${PBSLM_CACHE:-/var/cache/pbs-livemount-tests}}
	local out=$dir/$name-$key.img
	if [ ! -f "$out" ]; then
		mkdir -p "$dir"
		rm -f "$dir/$name"-*.img
		"$builder" "$out.tmp" >&2
		mv "$out.tmp" "$out"
	fi
	echo "$out"
}
