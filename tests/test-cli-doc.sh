#!/bin/bash
# Every long option that a command's --help shows is in the man page, and
# the man page passes mandoc -Tlint.
source "$(dirname "$0")/lib/functions.sh"
requires mandoc
man=$TESTS_DIR/../man/pbs-livemount.1
mandoc -Tlint -W warning "$man" || fail "mandoc -Tlint"
cmds=$($PROG --help | awk '/^commands:/{f=1;next} f && /^  [a-z]/{print $1}')
[ -n "$cmds" ] || fail "no commands in --help"
for c in $cmds; do
	$PROG "$c" --help >"$T/help" || fail "$c --help failed"
	grep -q "^usage: pbs-livemount $c" "$T/help" || fail "$c usage line"
	grep -q "^\.Cm $c" "$man" || fail "command $c missing from man page"
	for o in $(grep -o -- '--[a-z][a-z0-9-]*' "$T/help" | sort -u); do
		grep -q -- "^\.It .*Fl -${o#--}\b" "$man" ||
			fail "option $o of '$c' missing from the man page"
	done
done
# The other way round: every option the man page lists under a command
# (.Ss mount, .Ss restore, ...) is one that command takes, and every
# common option is taken by each command that reads a repository.
section() {	# the .It lines of subsection $1 of OPTIONS
	awk -v s="$1" '/^\.Ss /{f = ($2 == s)} /^\.Sh /{if ($2 != "OPTIONS") f = 0}
		f && /^\.It /' "$man" | grep -o 'Fl -[a-z][a-z0-9-]*' |
		sed 's/^Fl /-/' | sort -u
}
for c in $(awk '/^\.Sh OPTIONS/{f=1;next} /^\.Sh /{f=0} f && /^\.Ss [a-z]+$/{print $2}' "$man"); do
	$PROG "$c" --help >"$T/help" || fail "$c --help"
	for o in $(section "$c"); do
		grep -q -- "^ *\(-., \)\?$o\b" "$T/help" ||
			fail "man page lists $o under $c, but $c --help does not"
	done
done
for c in mount restore verify list pack; do
	$PROG "$c" --help >"$T/help"
	for o in $(section Common); do
		grep -q -- "^ *\(-., \)\?$o\b" "$T/help" ||
			fail "common option $o missing from $c --help"
	done
done
# Unknown commands and options are usage errors (exit 2) with one line;
# a prefix of a long option is not that option.
set +e
$PROG frobnicate 2>"$T/err"; [ $? = 2 ] || fail "unknown command exit"
$PROG restore --bogus 2>"$T/err"; [ $? = 2 ] || fail "unknown option exit"
assert_one_line_error
grep -qx "pbs-livemount restore: unknown option '--bogus' (pbs-livemount restore --help)" \
	"$T/err" || fail "unknown option message: $(cat "$T/err")"
$PROG restore --target /x y z w v 2>"$T/err"; [ $? = 2 ] ||
	fail "--target taken for --target-zeroed"
grep -q "unknown option '--target'" "$T/err" || fail "prefix: $(cat "$T/err")"
$PROG mount --cache 64M a b c 2>"$T/err"; [ $? = 2 ] || fail "--cache accepted"
# Sizes: decimals, nonsense and too large, each named.
$PROG mount --cache-size abc a b c 2>"$T/err"; [ $? = 2 ] || fail "size abc"
assert_one_line_error; assert_err_contains "bad size 'abc'"
$PROG mount --cache-size 99999999999T a b c 2>"$T/err"; [ $? = 2 ] || fail "size"
assert_err_contains "too large"
$PROG mount --read-only --cache-size 1.5G a b c 2>"$T/err"
grep -q "cache-size" "$T/err" && fail "1.5G refused: $(cat "$T/err")"
set -e
[ "$($PROG -V)" = "$($PROG --version)" ] || fail "-V"
echo ok
