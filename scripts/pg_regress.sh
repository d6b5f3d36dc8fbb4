#!/usr/bin/env bash
# PostgreSQL's own regression suite through pgwarden: src/test/regress of the installed server's
# exact version (from Debian's postgresql-15 source package, fetched with `apt-get source` from
# the deb-src entry scripts/setup.sh adds, and cached under .cache/), run with pg_regress against a
# throwaway PostgreSQL 15 directly and then through pgwarden (relay mode, with a policy whose rule
# judges every statement and allows it, and batch recording on). Every test must end the same way
# both times, and the gateway must not lose track of the protocol once.
# Usage: scripts/pg_regress.sh BUILD_DIR        (prints "pg_regress: N tests, ...")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:?usage: scripts/pg_regress.sh BUILD_DIR}" && pwd)
BIN="$build/core/pgwarden"
[ -x "$BIN" ] || { echo "no pgwarden binary at $BIN" >&2; exit 2; }

# The installed server's version, or (when the mirror no longer has that source) the nearest
# other 15.x source it has: the suite runs the same way directly and through pgwarden either way.
installed=$(dpkg-query -W -f='${Version}' postgresql-15)
cache=""
for version in "$installed" $(apt-cache showsrc postgresql-15 2>/dev/null | sed -n 's/^Version: //p' | sort -rV); do
  upstream=${version%%-*}
  if [ -f "$PGW_ROOT/.cache/pg-regress-$upstream/autoinc.c" ]; then
    cache="$PGW_ROOT/.cache/pg-regress-$upstream"
    break
  fi
  echo "pg_regress: fetching the regression suite of PostgreSQL $upstream (apt-get source postgresql-15=$version)"
  dl=$(mktemp -d)
  if (cd "$dl" && apt-get source --download-only -q "postgresql-15=$version" >"$dl/apt.log" 2>&1) &&
    tar -xjf "$dl/postgresql-15_$upstream.orig.tar.bz2" -C "$dl" "postgresql-$upstream/src/test/regress" \
      "postgresql-$upstream/contrib/spi"; then
    cache="$PGW_ROOT/.cache/pg-regress-$upstream"
    mkdir -p "$(dirname "$cache")"
    rm -rf "$cache"
    mv "$dl/postgresql-$upstream/src/test/regress" "$cache"
    # The suite's triggers test loads two of contrib/spi's modules too.
    cp "$dl/postgresql-$upstream/contrib/spi/autoinc.c" "$dl/postgresql-$upstream/contrib/spi/refint.c" "$cache/"
    rm -rf "$dl"
    break
  fi
  grep -E "^E:" "$dl/apt.log" | head -3
  rm -rf "$dl"
done
[ -n "$cache" ] || { echo "pg_regress: no source of postgresql-15 could be fetched (deb-src entry missing?)" >&2; exit 1; }
echo "pg_regress: server $installed, suite from $(basename "$cache")"

pgw_work_dir regress "${PGW_REGRESS_KEEP:-}"

# The suite's C functions (regress, autoinc, refint), built against the installed server's headers.
cp -r "$cache" "$work/regress"
cat > "$work/regress/Makefile.pgwarden" <<'MAKE'
MODULES = regress autoinc refint
PG_CONFIG = /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
MAKE
make -s -C "$work/regress" -f Makefile.pgwarden >"$work/make.log" 2>&1 || { cat "$work/make.log"; exit 1; }
chmod -R a+rX "$work/regress"

PG_PORT=$(pgw_free_port)
pgw_pg_start "$work/pg" "$PG_PORT" "max_connections = 100" "max_prepared_transactions = 10"
export PGPASSWORD=$PGW_PG_PASSWORD PGUSER=$PGW_PG_USER PGHOST=127.0.0.1

# A rule that judges every statement of the superuser and allows it: the classifier and the
# policy stage see the whole suite. Batch recording on.
echo '{"rules": [{"name": "everything", "users": ["postgres"], "allow": ["*"]}]}' >"$work/policy.json"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/seal.key"
chmod 600 "$work/seal.key"
pgw_gateway_start "$work/gw.log" "$BIN" --upstream "127.0.0.1:$PG_PORT" --threads 2 --no-pin \
  --policy "$work/policy.json" --record-dir "$work/rec" --record-key-file "$work/seal.key" \
  --admin-listen 127.0.0.1:0 $(pgw_metrics_token)
gw_pid=$PGW_GW_PID
GW_PORT=$PGW_GW_PORT
ADMIN_PORT=$PGW_ADMIN_PORT

run() {  # run NAME PORT: the parallel schedule; a per-test status list in $work/NAME.status
  local name=$1 port=$2 out="$work/out-$1"
  mkdir -p "$out/results"
  chmod 777 "$out" "$out/results"  # the server writes COPY TO files there
  local started=$SECONDS rc=0
  /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
    --bindir=/usr/lib/postgresql/15/bin --inputdir="$work/regress" --outputdir="$out" \
    --dlpath="$work/regress" --host=127.0.0.1 --port="$port" --user="$PGW_PG_USER" \
    --schedule="$work/regress/parallel_schedule" >"$work/$name.log" 2>&1 || rc=$?
  # "     boolean                      ... ok           21 ms" / "... FAILED" / "... failed (ignored)"
  sed -nE 's/^(test |     |ok [0-9]+ +[+-] )?[ ]*([a-z0-9_]+) +\.\.\. *(ok|FAILED|failed \(ignored\)).*/\2 \3/p' \
    "$work/$name.log" | sort >"$work/$name.status"
  echo "pg_regress ($name): $(wc -l <"$work/$name.status") tests in $((SECONDS - started)) s," \
    "$(grep -vc ' ok$' "$work/$name.status" || :) not ok, exit code $rc"
}
run direct "$PG_PORT"
run gateway "$GW_PORT"

failed=0
if [ "$(wc -l <"$work/direct.status")" -lt 150 ]; then
  echo "pg_regress: the direct run did not run the suite:"
  tail -30 "$work/direct.log"
  failed=1
fi
if ! diff -u "$work/direct.status" "$work/gateway.status" >"$work/status.diff"; then
  echo "pg_regress: results differ through pgwarden:"
  cat "$work/status.diff"
  [ -f "$work/out-gateway/regression.diffs" ] && head -100 "$work/out-gateway/regression.diffs"
  failed=1
fi
pgw_gateway_finish pg_regress "$ADMIN_PORT" errors || failed=1
statements=$("$BIN" export --record-dir "$work/rec" --format jsonl | grep -c '"type":"query"' || :)
echo "pg_regress: $(wc -l <"$work/gateway.status") tests, results identical through pgwarden:" \
  "$([ "$failed" -eq 0 ] && echo yes || echo NO); $statements statements recorded"
exit "$failed"
