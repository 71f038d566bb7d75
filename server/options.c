/* geecached's option table: parsing, help, settings. See options.h. */
#include "server/options.h"

#include "cache/cache.h"
#include "netpoll/netpoll.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

const struct srv_opt_desc srv_opts[] = {
#define SRV_X_DESC(f, s, l, type, def, lo, hi, st, help)                       \
	{#f, s, l, SRV_##type, def, lo, hi, st, help,                           \
	 offsetof(struct srv_options, f), offsetof(struct srv_options, f##_str)},
	SRV_OPTIONS(SRV_X_DESC)
#undef SRV_X_DESC
};
const size_t srv_nopts = sizeof(srv_opts) / sizeof(srv_opts[0]);

static int64_t *num(struct srv_options *o, const struct srv_opt_desc *d)
{
	return (int64_t *)((char *)o + d->off);
}

static const char **str(struct srv_options *o, const struct srv_opt_desc *d)
{
	return (const char **)((char *)o + d->off_str);
}

/* Parses v for option d into o; 0 or -EINVAL (not a value), -EDOM (below
 * the option's range), -ERANGE (above it). */
static int set_value(struct srv_options *o, const struct srv_opt_desc *d,
                     const char *v)
{
	*str(o, d) = v;
	switch (d->type) {
	case SRV_STR:
		return *v ? 0 : -EINVAL;
	case SRV_BACKEND: {
		/* netpoll's table names them (a backend this build lacks is
		 * refused when the loops start, with the reason) */
		enum np_backend be;
		return np_backend_parse(v, &be) == 0 ? 0 : -EINVAL;
	}
	case SRV_ACCEPT:
		return strcmp(v, "handoff") == 0 || strcmp(v, "reuseport") == 0 ? 0 : -EINVAL;
	case SRV_PROTOCOL:
		return strcmp(v, "auto") == 0 || strcmp(v, "ascii") == 0 ||
		       strcmp(v, "binary") == 0 ? 0 : -EINVAL;
	case SRV_FLAG:
	case SRV_COUNT:
		*num(o, d) = strtoll(v, NULL, 10);
		return 0;
	default:
		break;
	}
	if (strcmp(d->field, "yield_us") == 0 &&
	    (strcmp(v, "saturated") == 0 || strcmp(v, "adaptive") == 0)) {
		*num(o, d) = 0; /* the word stays in yield_us_str (server/main.c) */
		return 0;
	}
	if (strcmp(v, "auto") == 0 && (d->type == SRV_MIB || strcmp(d->def, "auto") == 0)) {
		*num(o, d) = 0; /* resolved at start (-m: srv_memory_auto) */
		return 0;
	}
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, d->type == SRV_OCTAL ? 8 : 10);
	if (end == v || errno)
		return -EINVAL;
	int64_t mul = 1;
	if (d->type == SRV_SIZE && *end) {
		switch (*end | 0x20) {
		case 'k': mul = 1024; break;
		case 'm': mul = 1024 * 1024; break;
		case 'g': mul = 1024 * 1024 * 1024; break;
		default: return -EINVAL;
		}
		end++;
		if ((*end | 0x20) == 'b')
			end++;
	}
	if (*end || n < 0)
		return -EINVAL;
	if (n > INT64_MAX / mul)
		return -ERANGE;
	n *= mul;
	if (n < d->min)
		return -EDOM;
	if (n > d->max)
		return -ERANGE;
	*num(o, d) = n;
	return 0;
}

static void defaults(struct srv_options *o)
{
	memset(o, 0, sizeof(*o));
	for (size_t i = 0; i < srv_nopts; i++)
		set_value(o, &srv_opts[i], srv_opts[i].def);
}

static int bad(FILE *err, const char *what, const char *arg)
{
	fprintf(err, "geecached: %s '%s' (see geecached --help)\n", what, arg);
	return 2;
}

static int apply(struct srv_options *o, const struct srv_opt_desc *d,
                 const char *v, FILE *err, const char *as_given)
{
	int r = set_value(o, d, v);
	if (r == 0)
		return 0;
	char what[160];
	/* -I: memcached's words (geecached's store stops at 256 MiB, where
	 * memcached's stops at a gigabyte) */
	if (r == -EDOM && d->shrt == 'I')
		snprintf(what, sizeof(what), "Item max size cannot be less than %" PRId64
		         " bytes: -I", d->min);
	else if (r == -ERANGE && d->shrt == 'I')
		snprintf(what, sizeof(what), "Cannot set item size limit higher than %" PRId64
		         " megabytes: -I", d->max >> 20);
	else if (r == -EDOM || r == -ERANGE)
		snprintf(what, sizeof(what), "value out of range [%" PRId64 ", %" PRId64
		         "] for --%s:", d->min, d->max, d->lng);
	else
		snprintf(what, sizeof(what), "bad value for --%s:", d->lng);
	(void)as_given;
	return bad(err, what, v);
}

int srv_options_parse(struct srv_options *o, int argc, char **argv, FILE *err)
{
	defaults(o);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const struct srv_opt_desc *d = NULL;
		const char *val = NULL;
		if (a[0] == '-' && a[1] == '-' && a[2]) {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t n = eq ? (size_t)(eq - name) : strlen(name);
			for (size_t k = 0; k < srv_nopts; k++)
				if (strlen(srv_opts[k].lng) == n &&
				    strncmp(srv_opts[k].lng, name, n) == 0)
					d = &srv_opts[k];
			if (!d)
				return bad(err, "unknown option", a);
			if (d->type == SRV_FLAG || d->type == SRV_COUNT) {
				if (eq)
					return bad(err, "option takes no value", a);
				*num(o, d) += 1;
				continue;
			}
			if (eq)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else
				return bad(err, "missing value for", a);
		} else if (a[0] == '-' && a[1] && a[1] != '-') {
			/* -vv, -p11211, -p 11211 */
			for (const char *p = a + 1; *p; p++) {
				d = NULL;
				for (size_t k = 0; k < srv_nopts; k++)
					if (srv_opts[k].shrt && srv_opts[k].shrt == *p)
						d = &srv_opts[k];
				if (!d)
					return bad(err, "unknown option", a);
				if (d->type == SRV_FLAG || d->type == SRV_COUNT) {
					*num(o, d) += 1;
					d = NULL;
					continue;
				}
				if (p[1])
					val = p + 1;
				else if (i + 1 < argc)
					val = argv[++i];
				else
					return bad(err, "missing value for", a);
				break;
			}
			if (!d)
				continue;
		} else {
			return bad(err, "unexpected argument", a);
		}
		int r = apply(o, d, val, err, a);
		if (r)
			return r;
	}
	if (o->verbose > 2)
		o->verbose = 2;
	if (o->sasl && !*o->auth_file_str) {
		fprintf(err, "geecached: -S (SASL) needs -Y FILE: geecached reads its users "
		        "only from an auth file of user:password lines (memcached's "
		        "SASL databases are not read)\n");
		return 2;
	}
	if (o->memory_limit && o->max_item_size > o->memory_limit * 1024 * 1024 / 2) {
		fprintf(err, "geecached: Cannot set item size limit higher than 1/2 of "
		        "memory max: -I %" PRId64 " with -m %" PRId64 " (MiB)\n",
		        o->max_item_size, o->memory_limit);
		return 2;
	}
	return 0;
}

size_t srv_seg_size(size_t limit_bytes)
{
	enum { MIN_SEG = 64 * 1024, MIN_SEGS = 64 };
	size_t seg = CACHE_SEG_SIZE_DEFAULT;
	while (seg > MIN_SEG && limit_bytes / seg < MIN_SEGS)
		seg /= 2;
	return seg;
}

void srv_options_help(FILE *f)
{
	fprintf(f, "usage: geecached [options]\n\n"
	           "A memcached-compatible cache server (binary, text and meta "
	           "protocols).\n\n");
	for (size_t i = 0; i < srv_nopts; i++) {
		const struct srv_opt_desc *d = &srv_opts[i];
		char flags[64];
		const char *arg = d->type == SRV_FLAG || d->type == SRV_COUNT ? "" : " <v>";
		if (d->shrt)
			snprintf(flags, sizeof(flags), "-%c, --%s%s", d->shrt, d->lng, arg);
		else
			snprintf(flags, sizeof(flags), "    --%s%s", d->lng, arg);
		fprintf(f, "  %-28s %s", flags, d->help);
		if (d->type != SRV_FLAG && d->type != SRV_COUNT && *d->def)
			fprintf(f, " (default %s)", d->def);
		fputc('\n', f);
	}
}

void srv_options_value(const struct srv_options *o, size_t i, char *buf, size_t len)
{
	const struct srv_opt_desc *d = &srv_opts[i];
	struct srv_options *m = (struct srv_options *)o;
	if (d->type == SRV_STR || d->type == SRV_BACKEND || d->type == SRV_ACCEPT ||
	    d->type == SRV_PROTOCOL)
		snprintf(buf, len, "%s", *str(m, d));
	else if (d->type == SRV_MIB)
		snprintf(buf, len, "%" PRId64, *num(m, d) * 1024 * 1024);
	else if (d->type == SRV_OCTAL)
		snprintf(buf, len, "%" PRIo64, *num(m, d));
	else
		snprintf(buf, len, "%" PRId64, *num(m, d));
}

void srv_options_markdown(FILE *f)
{
	fprintf(f, "| flag | default | range | `stats settings` | meaning |\n"
	           "|---|---|---|---|---|\n");
	for (size_t i = 0; i < srv_nopts; i++) {
		const struct srv_opt_desc *d = &srv_opts[i];
		bool arg = d->type != SRV_FLAG && d->type != SRV_COUNT;
		char flag[64], range[64] = "";
		if (d->shrt)
			snprintf(flag, sizeof(flag), "`-%c`, `--%s`", d->shrt, d->lng);
		else
			snprintf(flag, sizeof(flag), "`--%s`", d->lng);
		if (d->type == SRV_INT || d->type == SRV_SIZE || d->type == SRV_MIB)
			snprintf(range, sizeof(range), "%" PRId64 "..%" PRId64, d->min, d->max);
		else if (d->type == SRV_OCTAL)
			snprintf(range, sizeof(range), "0..0%" PRIo64, d->max);
		fprintf(f, "| %s | %s | %s | %s | %s |\n", flag, arg ? d->def : "", range,
		        d->stat ? d->stat : "", d->help);
	}
}

/* roff text: backslashes and hyphens escaped, a leading '.' or '\'' kept
 * from being read as a request. */
static void roff(FILE *f, const char *t)
{
	if (*t == '.' || *t == '\'')
		fputs("\\&", f);
	for (; *t; t++) {
		if (*t == '\\')
			fputs("\\e", f);
		else if (*t == '-')
			fputs("\\-", f);
		else
			fputc(*t, f);
	}
}

void srv_options_man(FILE *f, const char *version)
{
	fprintf(f, ".\\\" Generated by geecached --help-man from server/options.h; do not edit.\n"
	           ".TH GEECACHED 1 \"\" \"geecached %s\" \"User Commands\"\n"
	           ".SH NAME\n"
	           "geecached \\- a memcached\\-compatible cache server\n"
	           ".SH SYNOPSIS\n"
	           ".B geecached\n"
	           "[\\fIoptions\\fR]\n"
	           ".SH DESCRIPTION\n"
	           ".B geecached\n"
	           "speaks memcached's binary, text and meta protocols over TCP or a unix socket.\n"
	           "Existing memcached clients and proxies work with it unchanged.\n"
	           ".SH OPTIONS\n", version);
	for (size_t i = 0; i < srv_nopts; i++) {
		const struct srv_opt_desc *d = &srv_opts[i];
		bool arg = d->type != SRV_FLAG && d->type != SRV_COUNT;
		fputs(".TP\n", f);
		if (d->shrt)
			fprintf(f, "\\fB\\-%c\\fR, ", d->shrt);
		fputs("\\fB\\-\\-", f);
		roff(f, d->lng);
		fputs(arg ? "\\fR \\fIvalue\\fR\n" : "\\fR\n", f);
		roff(f, d->help);
		if (arg && *d->def) {
			fputs(" (default ", f);
			roff(f, d->def);
			fputc(')', f);
		}
		fputs(".\n", f);
	}
	fputs(".SH SIGNALS\n"
	      ".TP\n.B SIGINT\\fR, \\fBSIGTERM\\fR, \\fBSIGUSR1\n"
	      "Stop gracefully: stop accepting, answer what was read, flush, exit 0.\n"
	      ".TP\n.B SIGHUP\n"
	      "Reread the \\fB\\-Y\\fR auth file; a bad file keeps the users already read.\n"
	      ".TP\n.B SIGUSR2\n"
	      "Ignored.\n"
	      ".SH SECURITY\n"
	      "Traffic is not encrypted (no TLS): keys, values and passwords cross the\n"
	      "network in the clear. Listen on a private address (\\fB\\-l\\fR), let a\n"
	      "firewall admit only the clients, require authentication with\n"
	      "\\fB\\-Y\\fR, and run as an unprivileged user (\\fB\\-u\\fR, or the\n"
	      "systemd unit geecached.service).\n"
	      ".SH FILES\n"
	      ".TP\n.I /etc/default/geecached\n"
	      "Flags for geecached.service (GEECACHED_OPTS).\n"
	      ".SH SEE ALSO\n"
	      ".BR memcached (1)\n", f);
}
