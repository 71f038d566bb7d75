/*
 * geecache-bench's request encoding, response parsing and verification,
 * kept apart from the I/O so that tests can drive them with bytes.
 *
 * Values are verifiable without state: the value of key k is len(k) bytes
 * of a fixed pseudo-random pattern starting at offset off(k) = k mod 251.
 * Every SET of k writes exactly that, so any GET hit for k must return it;
 * anything else (wrong length, wrong bytes, another key's value) is an
 * error. SETs send the value as a slice of the pattern block (no copy).
 */
#ifndef GEECACHE_LG_H
#define GEECACHE_LG_H

#include "bufpool/bufpool.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_KEY_LEN 12 /* "k" + 11 digits: the 12-byte keys of the brief */
#define LG_PATTERN_PAD 256

enum lg_proto { LG_BINARY, LG_TEXT };
enum lg_op { LG_GET, LG_SET };

struct lg_values {
	uint32_t min, max;       /* value length range */
	struct bp_slice pattern; /* max + LG_PATTERN_PAD bytes */
};

/* Makes the pattern block from pool. 0 or -ENOMEM. */
int lg_values_init(struct lg_values *v, struct bp_pool *pool, uint32_t min,
                   uint32_t max);
void lg_values_deinit(struct lg_values *v);

/* Length and start of key k's value. */
uint32_t lg_value_len(const struct lg_values *v, uint64_t k);
static inline uint32_t lg_value_off(uint64_t k)
{
	return (uint32_t)(k % 251u);
}

/* Writes key k's name (LG_KEY_LEN bytes, no NUL). */
void lg_key(uint64_t k, char out[LG_KEY_LEN]);

/* Appends a GET or SET of key k to out. 0 or -ENOMEM. */
int lg_encode(struct bp_chain *out, enum lg_proto proto, enum lg_op op,
              uint64_t k, const struct lg_values *v, uint32_t opaque);

enum lg_result {
	LG_HIT,      /* GET found the right value */
	LG_MISS,     /* GET found nothing */
	LG_STORED,   /* SET succeeded */
	LG_WRONG,    /* a value that is not key k's, or a reply of the wrong kind */
	LG_SRV_ERR,  /* the server answered an error (out of memory, ...) */
};

/* Parses the reply at the head of in to a request (op, k) and verifies it.
 * Returns the reply's length (> 0; *res set), -EAGAIN when incomplete, or
 * -EBADMSG when the bytes cannot be a reply (the stream is lost). Does not
 * consume. */
ssize_t lg_parse_reply(const struct bp_chain *in, enum lg_proto proto,
                       enum lg_op op, uint64_t k, const struct lg_values *v,
                       uint32_t opaque, enum lg_result *res);

/* Zipf(alpha) over [0, n): a CDF table built at start (n doubles), sampled
 * by binary search. alpha 0 is uniform without a table. */
struct lg_zipf {
	uint64_t n;
	double alpha;
	double *cdf;
};
int lg_zipf_init(struct lg_zipf *z, uint64_t n, double alpha);
void lg_zipf_deinit(struct lg_zipf *z);
/* u uniform in [0, 1). */
uint64_t lg_zipf_sample(const struct lg_zipf *z, double u);

#ifdef __cplusplus
}
#endif

#endif
