/*
 * kafka-test-broker: a Kafka-protocol test broker built on librdkafka's mock cluster.
 *
 *   kafka-test-broker [brokerCount]        (default 1)
 *
 * Prints one line "BOOTSTRAP host:port,..." on stdout when the cluster listens, then reads
 * line commands on stdin and answers each with one line "OK" or "ERR <why>":
 *
 *   create <topic> <partitions>          create a topic (replication factor 1)
 *   down <brokerId>  /  up <brokerId>    take a broker down (connections dropped) / up again
 *   rtt <brokerId> <ms>                  add round-trip latency to a broker
 *   error <apiKey> <errorCode> <count>   the next <count> requests of <apiKey> fail with <errorCode>
 *   clear <apiKey>                       drop pushed errors of <apiKey>
 *   quit                                 shut down
 *
 * EOF on stdin, SIGTERM and SIGINT shut down cleanly. Broker ids start at 1. Logs go to stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop_requested = 0;
static int broker_cnt = 1;

static void on_signal(int sig) {
        (void)sig;
        stop_requested = 1;
}

__attribute__((format(printf, 1, 2))) static void reply(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
}

/* Parses a whole base-10 integer in [min, max]; returns 0 on success. */
static int parse_long(const char *s, long min, long max, long *out) {
        char *end;
        long v;
        if (!s || !*s)
                return -1;
        errno = 0;
        v     = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

static void reply_err(rd_kafka_resp_err_t err) {
        if (err)
                reply("ERR %s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
        else
                reply("OK");
}

/* Handles one command line; returns 1 when the broker should quit. */
static int handle(rd_kafka_mock_cluster_t *mcluster, char *line) {
        char *argv[8];
        int argc = 0;
        char *save = NULL, *tok;
        long a, b, c;

        for (tok = strtok_r(line, " \t\r\n", &save); tok && argc < 8;
             tok = strtok_r(NULL, " \t\r\n", &save))
                argv[argc++] = tok;
        if (tok) {
                reply("ERR too many arguments");
                return 0;
        }
        if (argc == 0) {
                reply("ERR empty command");
                return 0;
        }

        if (!strcmp(argv[0], "quit") && argc == 1) {
                reply("OK");
                return 1;
        } else if (!strcmp(argv[0], "create")) {
                if (argc != 3 || parse_long(argv[2], 1, 10000, &a)) {
                        reply("ERR usage: create <topic> <partitions 1..10000>");
                        return 0;
                }
                reply_err(rd_kafka_mock_topic_create(mcluster, argv[1], (int)a, 1));
        } else if (!strcmp(argv[0], "down") || !strcmp(argv[0], "up")) {
                if (argc != 2 || parse_long(argv[1], 1, broker_cnt, &a)) {
                        reply("ERR usage: %s <brokerId 1..%d>", argv[0], broker_cnt);
                        return 0;
                }
                reply_err(!strcmp(argv[0], "down")
                              ? rd_kafka_mock_broker_set_down(mcluster, (int32_t)a)
                              : rd_kafka_mock_broker_set_up(mcluster, (int32_t)a));
        } else if (!strcmp(argv[0], "rtt")) {
                if (argc != 3 || parse_long(argv[1], 1, broker_cnt, &a) ||
                    parse_long(argv[2], 0, 3600000, &b)) {
                        reply("ERR usage: rtt <brokerId 1..%d> <ms>", broker_cnt);
                        return 0;
                }
                reply_err(rd_kafka_mock_broker_set_rtt(mcluster, (int32_t)a, (int)b));
        } else if (!strcmp(argv[0], "error")) {
                rd_kafka_resp_err_t *errs;
                long i;
                if (argc != 4 || parse_long(argv[1], 0, 32767, &a) ||
                    parse_long(argv[2], -32768, 32767, &b) ||
                    parse_long(argv[3], 1, 100000, &c)) {
                        reply("ERR usage: error <apiKey> <errorCode> <count 1..100000>");
                        return 0;
                }
                errs = malloc(sizeof(*errs) * (size_t)c);
                if (!errs) {
                        reply("ERR out of memory");
                        return 0;
                }
                for (i = 0; i < c; i++)
                        errs[i] = (rd_kafka_resp_err_t)b;
                rd_kafka_mock_push_request_errors_array(mcluster, (int16_t)a, (size_t)c, errs);
                free(errs);
                reply("OK");
        } else if (!strcmp(argv[0], "clear")) {
                if (argc != 2 || parse_long(argv[1], 0, 32767, &a)) {
                        reply("ERR usage: clear <apiKey>");
                        return 0;
                }
                rd_kafka_mock_clear_request_errors(mcluster, (int16_t)a);
                reply("OK");
        } else {
                reply("ERR unknown command '%s' (create, down, up, rtt, error, clear, quit)", argv[0]);
        }
        return 0;
}

int main(int argc, char **argv) {
        char errstr[512];
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mcluster;
        struct sigaction sa;
        char buf[8192];
        size_t used = 0;
        long n;

        if (argc > 2 || (argc == 2 && parse_long(argv[1], 1, 64, &n))) {
                fprintf(stderr, "usage: %s [brokerCount 1..64]\n", argv[0]);
                return 2;
        }
        if (argc == 2)
                broker_cnt = (int)n;

#ifdef __linux__
        /* Belt and braces next to EOF on stdin: go when the parent goes. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "kafka-test-broker: %s\n", errstr);
                return 1;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "kafka-test-broker: rd_kafka_new failed: %s\n", errstr);
                return 1;
        }
        mcluster = rd_kafka_mock_cluster_new(rk, broker_cnt);
        if (!mcluster) {
                fprintf(stderr, "kafka-test-broker: rd_kafka_mock_cluster_new failed\n");
                rd_kafka_destroy(rk);
                return 1;
        }

        reply("BOOTSTRAP %s", rd_kafka_mock_cluster_bootstraps(mcluster));

        while (!stop_requested) {
                struct pollfd pfd = {.fd = 0, .events = POLLIN};
                ssize_t r;
                char *nl;
                int quit = 0;

                int pr = poll(&pfd, 1, 500);
                if (pr < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("kafka-test-broker: poll");
                        break;
                }
                if (pr == 0)
                        continue;

                r = read(0, buf + used, sizeof(buf) - 1 - used);
                if (r < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        perror("kafka-test-broker: read");
                        break;
                }
                if (r == 0)
                        break; /* EOF: the parent is gone or done */
                used += (size_t)r;
                buf[used] = '\0';

                while ((nl = memchr(buf, '\n', used))) {
                        size_t len = (size_t)(nl - buf) + 1;
                        *nl        = '\0';
                        quit       = handle(mcluster, buf);
                        memmove(buf, buf + len, used - len);
                        used -= len;
                        buf[used] = '\0';
                        if (quit)
                                break;
                }
                if (quit)
                        break;
                if (used == sizeof(buf) - 1) {
                        reply("ERR line too long");
                        used = 0;
                }
        }

        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return 0;
}
