#!/usr/bin/env bash
# Makes sure a MariaDB server (10.5 or later: prepared XA transactions survive their connection)
# runs on 127.0.0.1:3306 with user root and an empty password over TCP, for the XA adapter's tests
# and the chaos run. Installs and starts it when missing. Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
q() { mysql --protocol=tcp -h 127.0.0.1 -P 3306 -uroot -N -e "$1"; }

if q 'select 1' >/dev/null 2>&1; then
  echo "mariadb ready: $(q 'select version()')"
  exit 0
fi

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  apt-get install -y -qq mariadb-server mariadb-client >/dev/null
fi
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if ! mysqladmin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
    --user=mysql --bind-address=127.0.0.1 --port=3306 --socket=/run/mysqld/mysqld.sock
fi
for _ in $(seq 1 60); do mysqladmin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1 && break; sleep 1; done
# Debian's root@localhost authenticates by unix socket only; the tests connect over TCP without a password.
mysql --socket=/run/mysqld/mysqld.sock -uroot <<'SQL'
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
for _ in $(seq 1 30); do q 'select 1' >/dev/null 2>&1 && break; sleep 1; done
echo "mariadb ready: $(q 'select version()')"
