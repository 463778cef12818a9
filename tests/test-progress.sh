#!/bin/bash
# Progress of restore, verify and pack: on a pseudo-terminal a bar on
# stderr (bar, bytes, rate, ETA) redrawn while it runs and cleared at the
# end; nothing of it when stderr is not a terminal or with -q; with
# --output-format json one JSON object per line on stdout (done never
# going back, the last with the result), checked with a JSON parser.
# The restore goes through nginx with --limit-rate so that it lasts, one
# chunk at a time so that the bar moves by chunks.
source "$(dirname "$0")/lib/functions.sh"
source "$TESTS_DIR/lib/nginx.sh"
head -c $((32 << 20)) /dev/urandom >"$T/src.img"
$PROG pack --lazy-chunk-dirs -q --id 3 --time 1700000000 "$T/src.img:drive-scsi0" "$T/ds"
nginx_start "$T/ds"
pty() { python3 "$TESTS_DIR/lib/onpty.py" -- "$@"; }

pty $PROG restore --connections 1 --limit-rate 8M "$NGX_URL" vm/3 drive-scsi0 "$T/a.raw" >"$T/tty.out" ||
	{ cat "$T/tty.out"; fail "restore on a terminal"; }
cmp "$T/a.raw" "$T/src.img" || fail "restore differs"
python3 - "$T/tty.out" <<'PY' || { cat -A "$T/tty.out" | head -20; fail "no progress bar"; }
import re, sys
out = open(sys.argv[1], "rb").read().decode()
draws = re.findall(r"\rrestore drive-scsi0 \[(#*)(-*)\] +(\d+)%  "
                   r"[\d.]+ [KMG]?i?B/32\.0 MiB  [\d.]+ [KMG]?i?B/s  ETA (\d+:\d\d|--:--)", out)
assert len(draws) >= 3, draws
pcts = [int(d[2]) for d in draws]
assert pcts == sorted(pcts) and pcts[-1] > pcts[0], pcts
# Cleared before the summary line.
assert "\r\x1b[K" + "pbs-livemount: restore: drive-scsi0" in out.replace("\r\n", "\n"), out[-300:]
print("# %d redraws, %d%% to %d%%" % (len(draws), pcts[0], pcts[-1]))
PY

# Not a terminal, or -q: no bar.
$PROG restore --limit-rate 8M "$NGX_URL" vm/3 drive-scsi0 "$T/b.raw" 2>"$T/notty.err" >"$T/notty.out"
grep -q "ETA" "$T/notty.err" "$T/notty.out" && fail "a bar without a terminal"
grep -q $'\r' "$T/notty.err" && fail "carriage returns without a terminal"
pty $PROG restore -q --limit-rate 16M "$NGX_URL" vm/3 drive-scsi0 "$T/c.raw" >"$T/q.out"
grep -q "ETA" "$T/q.out" && fail "a bar with -q"

# JSON lines on stdout.
$PROG restore --output-format json --connections 1 --limit-rate 8M "$NGX_URL" vm/3 drive-scsi0 "$T/d.raw" \
	>"$T/json.out" 2>"$T/json.err" || fail "restore --output-format json"
grep -q ETA "$T/json.err" && fail "a bar with JSON output"
$PROG verify --output-format json "$T/ds" vm/3 drive-scsi0 "$T/d.raw" >"$T/vjson.out" ||
	fail "verify --output-format json"
$PROG pack --output-format json --lazy-chunk-dirs --id 4 "$T/src.img:drive-scsi0" "$T/ds" \
	>"$T/pjson.out" || fail "pack --output-format json"
python3 - "$T/json.out" "$T/vjson.out" "$T/pjson.out" <<'PY' || fail "JSON progress"
import json, sys
for path, what, least in zip(sys.argv[1:], ("restore", "verify", "pack"), (2, 1, 1)):
    lines = [json.loads(l) for l in open(path)]
    assert len(lines) >= least, (path, lines)
    done = [l["done"] for l in lines]
    assert done == sorted(done), done
    for l in lines:
        assert l["progress"] == what and l["archive"] == "drive-scsi0.img.fidx"
        assert l["total"] == 32 << 20
    last = lines[-1]
    assert last["result"] == "ok" and last["done"] == last["total"], last
    assert last["percent"] == 100.0 and last["rate"] > 0
    assert all("result" not in l and "eta" in l for l in lines[:-1]), lines
    print("# %s: %d JSON lines" % (what, len(lines)))
PY
# stdout is the image: no JSON on it.
expect_fail $PROG restore --output-format json "$T/ds" vm/3 drive-scsi0 -
grep -q "standard output is the image" "$T/err" || fail "JSON to stdout: $(cat "$T/err")"
echo ok
