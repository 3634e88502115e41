#!/usr/bin/env bash
# Makes sure the local Postgres runs on 127.0.0.1:5432 with trust auth for user postgres, and has
# prepared transactions enabled (participants use PREPARE TRANSACTION). Safe to run again.
set -euo pipefail
version=$(ls /etc/postgresql | sort -n | tail -1)
cluster="$version main"
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
conf=/etc/postgresql/$version/main
if ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  pg_ctlcluster --skip-systemctl-redirect $cluster reload 2>/dev/null || true
fi
pg_ctlcluster --skip-systemctl-redirect $cluster start 2>/dev/null || true
psql_() { psql -h 127.0.0.1 -U postgres -d postgres -Atqc "$1"; }
for _ in $(seq 1 30); do psql_ 'select 1' >/dev/null 2>&1 && break; sleep 1; done
if [ "$(psql_ 'show max_prepared_transactions')" -lt 64 ]; then
  psql_ 'ALTER SYSTEM SET max_prepared_transactions = 64'
  psql_ 'ALTER SYSTEM SET max_connections = 300'
  pg_ctlcluster --skip-systemctl-redirect $cluster restart
  for _ in $(seq 1 30); do psql_ 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi
echo "postgres $version ready: max_prepared_transactions=$(psql_ 'show max_prepared_transactions'), max_connections=$(psql_ 'show max_connections')"
