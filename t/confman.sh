#!/bin/sh
# t/confman.sh -- man/strata.conf.5 is what tools/confman writes from the settings tables (every
# key stratad knows, with its default and doc), and it renders as a man page. TAP.
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
echo "1..3"
out=$(mktemp "${TMPDIR:-/tmp}/strata-confman.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT INT TERM
if "$top_builddir/tools/confman" > "$out" && cmp -s "$out" "$top_srcdir/man/strata.conf.5"; then
	echo "ok 1 - man/strata.conf.5 is up to date with the settings tables"
else
	echo "not ok 1 - man/strata.conf.5 differs from tools/confman's output: run make regen-man"
	diff "$top_srcdir/man/strata.conf.5" "$out" | head -20 | sed 's/^/# /'
fi
# every key of both tables is on the page: listeners, a tier key, a topic key, an alias
missing=
for k in listeners log.dirs strata.tier.url strata.tier.prefetch.threads metrics.listener \
	retention.ms local.retention.bytes remote.storage.enable compression.type; do
	grep -q "^\.B $(printf '%s' "$k" | sed 's/\./\\./g')\$" "$top_srcdir/man/strata.conf.5" || missing="$missing $k"
done
if [ -z "$missing" ]; then echo "ok 2 - the page documents every sampled key"; else
	echo "not ok 2 - keys missing from the page:$missing"; fi
if command -v groff > /dev/null 2>&1; then
	warn=$(groff -man -Tutf8 -ww -z "$top_srcdir/man/strata.conf.5" 2>&1)
	if [ -z "$warn" ]; then echo "ok 3 - groff renders it without warnings"; else
		echo "not ok 3 - groff warns:"; printf '%s\n' "$warn" | head -10 | sed 's/^/# /'; fi
else
	echo "ok 3 # SKIP groff not installed"
fi
