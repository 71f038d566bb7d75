/*
 * bufpool/decimal.h — unsigned decimal numbers read from and written into
 * bytes: the one implementation that proto (request lines, answers) and
 * cache (incr/decr values stored as text) share. Header-only, no state,
 * no allocation; any thread.
 *
 * It lives in bufpool because both users already depend on bufpool and on
 * nothing else in common (DESIGN.md: cache must not use proto), and
 * because it is what a chain's bytes are turned into and made from. Prefix
 * bp_dec_.
 *
 * Rules:
 *  - Parsing takes exactly n bytes, all of them digits: no sign, no spaces,
 *    no leading '+', at most BP_DEC_U64_MAX_DIGITS digits (leading zeros
 *    count), and the value must fit 64 bits. Anything else is refused and
 *    *out is not written.
 *  - Formatting writes the digits (no terminator) and returns the end; the
 *    caller provides BP_DEC_U64_MAX_DIGITS bytes (BP_DEC_I64_MAX_CHARS for
 *    the signed form).
 */
#ifndef GEECACHE_BUFPOOL_DECIMAL_H
#define GEECACHE_BUFPOOL_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

#define BP_DEC_U64_MAX_DIGITS 20 /* 18446744073709551615 */
#define BP_DEC_I64_MAX_CHARS 20  /* -9223372036854775808 */

/* The value of the n decimal digits at s: 1 and *out set, or 0 (not all
 * digits, empty, too long, or above UINT64_MAX). */
static inline int bp_dec_parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > BP_DEC_U64_MAX_DIGITS)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';
		if (d > 9)
			return 0;
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*out = v;
	return 1;
}

/* Writes v's digits at w (1..20 bytes); returns the end. */
static inline char *bp_dec_put_u64(char *w, uint64_t v)
{
	char tmp[BP_DEC_U64_MAX_DIGITS];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*w++ = tmp[--n];
	return w;
}

/* Same for a signed value ('-' first when negative). */
static inline char *bp_dec_put_i64(char *w, int64_t v)
{
	if (v < 0) {
		*w++ = '-';
		return bp_dec_put_u64(w, (uint64_t)0 - (uint64_t)v);
	}
	return bp_dec_put_u64(w, (uint64_t)v);
}

#endif /* GEECACHE_BUFPOOL_DECIMAL_H */
