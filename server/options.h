/*
 * geecached's options, declared once. SRV_OPTIONS drives the command-line
 * parser, --help, `stats settings` and the table in docs/server.md.
 *
 *   X(field, short, long, type, default, min, max, stats name, help)
 *
 * Types: INT (decimal), SIZE (bytes, with an optional k/m/g suffix), MIB
 * (mebibytes, memcached's -m), OCTAL (file permissions, printed in octal
 * as memcached's `umask` setting), STR, BACKEND (auto|epoll|io_uring), ACCEPT
 * (handoff|reuseport), PROTOCOL (auto|ascii|binary), COUNT
 * (repeatable flag: -v, -vv), FLAG (no argument). An INT or MIB whose
 * default is "auto", and -m, also take "auto" (0 in the field: resolved at
 * start). A short of 0 means long only. Parsing is strict: a bad flag or
 * value is one line on stderr and exit status 2 (a bad -I in memcached's
 * words, which its users and tests look for).
 */
#ifndef GEECACHE_SRV_OPTIONS_H
#define GEECACHE_SRV_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_OPTIONS(X)                                                          \
	X(port, 'p', "port", INT, "11211", 0, 65535, "tcpport",                 \
	  "TCP port to listen on (0: any free port, printed at start)")         \
	X(listen, 'l', "listen", STR, "127.0.0.1", 0, 0, "interface",           \
	  "addresses to listen on, IPv4 or IPv6, several separated by commas " \
	  "(e.g. 127.0.0.1,::1), all on the -p port")                          \
	X(unix_socket, 's', "unix-socket", STR, "", 0, 0, "domain_socket",      \
	  "listen on this unix socket instead of TCP (-p and -l unused); a "   \
	  "stale socket file is replaced, a live one refused")                 \
	X(unix_mask, 'a', "unix-mask", OCTAL, "0700", 0, 0777, "umask",         \
	  "permissions of the -s socket file, in octal")                       \
	X(threads, 't', "threads", INT, "auto", 1, 256, "num_threads",          \
	  "event loops (auto: one per CPU)")                                    \
	X(memory_limit, 'm', "memory-limit", MIB, "64", 1, 1048576, "maxbytes", \
	  "memory for items in MiB (everything the store holds); auto: the "   \
	  "container's memory limit less a reserve (docs/server.md)")          \
	X(conn_limit, 'c', "conn-limit", INT, "1024", 1, 1048576, "maxconns",   \
	  "max simultaneous connections")                                       \
	X(listen_backlog, 'b', "listen-backlog", INT, "1024", 1, 1048576,       \
	  "tcp_backlog", "listen backlog: connections the kernel queues "       \
	  "before they are accepted")                                           \
	X(max_item_size, 'I', "max-item-size", SIZE, "1m", 1024, 268435456,     \
	  "item_size_max", "largest item accepted (k/m suffix; at most 256m, " \
	  "and half of -m)")                                                   \
	X(disable_evictions, 'M', "disable-evictions", FLAG, "0", 0, 1, NULL,   \
	  "when the store is full, refuse writes (SERVER_ERROR out of memory " \
	  "storing object) instead of evicting items")                         \
	X(disable_cas, 'C', "disable-cas", FLAG, "0", 0, 1, NULL,               \
	  "no CAS, as memcached -C: every item shows cas 0, and compares are " \
	  "made against 0 (text cas: EXISTS)")                                 \
	X(enable_shutdown, 'A', "enable-shutdown", FLAG, "0", 0, 1, NULL,       \
	  "accept the text command shutdown [graceful], which stops the "      \
	  "server as SIGINT or SIGUSR1 do")                                    \
	X(disable_flush_all, 'F', "disable-flush-all", FLAG, "0", 0, 1, NULL,   \
	  "refuse flush_all (CLIENT_ERROR flush_all not allowed; binary: "     \
	  "Auth failure.)")                                                    \
	X(protocol, 'B', "protocol", PROTOCOL, "auto", 0, 0, "binding_protocol", \
	  "protocol of every connection: auto (binary when the first byte is " \
	  "0x80, else text), ascii (text and meta) or binary")                 \
	X(reqs_per_event, 'R', "max-reqs-per-event", INT, "20", 1, 2147483647, \
	  "reqs_per_event", "requests a connection runs before its loop "      \
	  "serves the others (the rest run at the loop's next turn; counted "  \
	  "in conn_yields)")                                                   \
	X(copy_below, 0, "copy-below", SIZE, "1024", 0, 65535,                 \
	  "value_copy_below", "GET values shorter than this are copied into "   \
	  "the reply, longer ones sent from the store (0: none copied)")       \
	X(backend, 0, "backend", BACKEND, "auto", 0, 0, "backend",              \
	  "event backend: auto, epoll, io_uring or kqueue (kqueue: FreeBSD, "  \
	  "macOS, or Linux built with libkqueue)")                             \
	X(accept, 0, "accept", ACCEPT, "reuseport", 0, 0, "accept_mode",        \
	  "how connections reach loops: reuseport (the kernel's hash) or "     \
	  "handoff (one acceptor, to the loop with fewest)")                   \
	X(yield_us, 0, "yield-us", INT, "auto", 0, 1000000, "yield_us",        \
	  "a loop that ran this many microseconds on one batch of events "     \
	  "yields the CPU (sched_yield) before waiting again (0: never; "      \
	  "saturated: after every batch while the loop sleeps under 10% of "   \
	  "the time; adaptive: that, or while yielding raises the server's "   \
	  "rate; auto: adaptive on io_uring, saturated on the other Linux "    \
	  "backends, 50 elsewhere)")                                           \
	X(metrics_port, 0, "metrics-port", INT, "0", 0, 65535, "metrics_port",  \
	  "HTTP port for Prometheus /metrics on the listen address (0: off)")   \
	X(metrics_listen, 0, "metrics-listen", STR, "", 0, 0, "metrics_interface", \
	  "IPv4 or IPv6 address for /metrics (default: the first -l address)") \
	X(idle_timeout, 0, "idle-timeout", INT, "0", 0, 2147483, "idle_timeout", \
	  "close connections idle this many seconds (0: never)")                \
	X(auth_file, 'Y', "auth-file", STR, "", 0, 0, NULL,                     \
	  "require authentication: users from FILE, user:password lines "      \
	  "(binary SASL PLAIN and memcached's text authentication; reread on " \
	  "SIGHUP; refused when others can read it)")                         \
	X(sasl, 'S', "enable-sasl", FLAG, "0", 0, 1, NULL,                      \
	  "memcached's switch for SASL: accepted with -Y, refused without it " \
	  "(geecached reads users only from -Y)")                              \
	X(user, 'u', "user", STR, "", 0, 0, NULL,                               \
	  "after binding, drop to this user (and its groups) when started as " \
	  "root")                                                              \
	X(daemon, 'd', "daemon", FLAG, "0", 0, 1, NULL,                         \
	  "run in the background: the command returns once the server "        \
	  "listens (status 0), or with the start-up error's status")           \
	X(pidfile, 'P', "pidfile", STR, "", 0, 0, NULL,                         \
	  "write the server's pid to this file once it listens; removed at a " \
	  "clean stop")                                                        \
	X(verbose, 'v', "verbose", COUNT, "0", 0, 2, "verbosity",               \
	  "log more (-vv: every connection)")                                   \
	X(version, 'V', "version", FLAG, "0", 0, 1, NULL,                       \
	  "print the version and exit")                                         \
	X(help, 'h', "help", FLAG, "0", 0, 1, NULL, "print this help and exit") \
	X(help_markdown, 0, "help-markdown", FLAG, "0", 0, 1, NULL,             \
	  "print the options as the Markdown table of docs/server.md")         \
	X(help_man, 0, "help-man", FLAG, "0", 0, 1, NULL,                       \
	  "print the manual page geecached(1) (roff)")

enum srv_opt_type {
	SRV_INT, SRV_SIZE, SRV_MIB, SRV_OCTAL, SRV_STR, SRV_BACKEND, SRV_ACCEPT,
	SRV_PROTOCOL, SRV_COUNT, SRV_FLAG
};

struct srv_options {
#define SRV_X_FIELD(f, s, l, type, def, lo, hi, st, help) int64_t f; const char *f##_str;
	SRV_OPTIONS(SRV_X_FIELD)
#undef SRV_X_FIELD
};

struct srv_opt_desc {
	const char *field;
	char shrt;
	const char *lng;
	enum srv_opt_type type;
	const char *def;
	int64_t min, max;
	const char *stat;
	const char *help;
	size_t off, off_str;
};

extern const struct srv_opt_desc srv_opts[];
extern const size_t srv_nopts;

/* Parses argv into *o (defaults first). Returns 0, or 2 after printing one
 * line to `err` for a bad flag or value. */
int srv_options_parse(struct srv_options *o, int argc, char **argv, FILE *err);

/* Prints --help to f. */
void srv_options_help(FILE *f);

/* Prints the options as a Markdown table (docs/server.md holds its output;
 * a test keeps them equal). */
void srv_options_markdown(FILE *f);

/* Prints the manual page (man(7) roff): the options from the table, then
 * signals, files and deployment notes. The build writes it to
 * geecached.1 (a test checks that every option is in it). */
void srv_options_man(FILE *f, const char *version);

/* The store's segment size for -m limit_bytes: 1 MiB, halved (down to
 * 64 KiB) while the store would hold fewer than 64 segments, so that a
 * small store still has segments to write into and evict while many
 * connections write at once. -I does not enter: items over a quarter of
 * a segment get blocks of their own (docs/cache.md, "Large items"). */
size_t srv_seg_size(size_t limit_bytes);

/* The value of option i as text (what `stats settings` prints). */
void srv_options_value(const struct srv_options *o, size_t i, char *buf,
                       size_t len);

#endif
