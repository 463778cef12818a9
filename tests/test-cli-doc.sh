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
# Unknown commands and options are usage errors (exit 2) with one line.
set +e
$PROG frobnicate 2>"$T/err"; [ $? = 2 ] || fail "unknown command exit"
$PROG restore --bogus 2>"$T/err"; [ $? = 2 ] || fail "unknown option exit"
set -e
echo ok
