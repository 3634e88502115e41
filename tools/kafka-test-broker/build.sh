#!/usr/bin/env bash
# Builds the Kafka test broker (librdkafka's mock cluster behind a small stdin/stdout launcher).
# Idempotent: does nothing when the binary is newer than broker.c. Needs a C compiler and
# librdkafka's development files (Debian/Ubuntu: apt-get install librdkafka-dev).
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$dir/broker.c"
bin="$dir/kafka-test-broker"
cc="${CC:-cc}"

if [[ -x "$bin" && "$bin" -nt "$src" && "$bin" -nt "${BASH_SOURCE[0]}" ]]; then
  exit 0
fi

if ! command -v "$cc" >/dev/null 2>&1; then
  echo "kafka-test-broker: no C compiler ('$cc') found; install one (e.g. apt-get install gcc)" >&2
  exit 1
fi

# Is librdkafka with its mock cluster header available?
if ! printf '#include <librdkafka/rdkafka.h>\n#include <librdkafka/rdkafka_mock.h>\nint main(void){return rd_kafka_mock_cluster_new ? 0 : 1;}\n' \
    | "$cc" -x c -o /dev/null - -lrdkafka >/dev/null 2>&1; then
  echo "kafka-test-broker: librdkafka development files not found (need <librdkafka/rdkafka_mock.h> and -lrdkafka);" \
       "install them, e.g. apt-get install librdkafka-dev" >&2
  exit 1
fi

# Build to a temporary file and rename, so concurrent builds never leave a half-written binary.
tmp="$(mktemp "$dir/.kafka-test-broker.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$cc" -O2 -Wall -o "$tmp" "$src" -lrdkafka
chmod 755 "$tmp"
mv -f "$tmp" "$bin"
trap - EXIT
echo "kafka-test-broker: built $bin" >&2
