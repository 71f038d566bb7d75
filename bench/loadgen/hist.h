/*
 * A log-bucketed latency histogram (HdrHistogram's idea, small): values in
 * nanoseconds land in 64 power-of-two ranges of 32 linear sub-buckets each,
 * so any recorded value is reported within 1/32 (3.1%) of itself. Recording
 * is two shifts and an add; one histogram per thread, merged at the end.
 */
#ifndef GEECACHE_LG_HIST_H
#define GEECACHE_LG_HIST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LG_HIST_SUB_BITS 5
#define LG_HIST_SUB (1u << LG_HIST_SUB_BITS)
#define LG_HIST_BUCKETS (64u * LG_HIST_SUB)

struct lg_hist {
	uint64_t n, max, min, sum;
	uint64_t b[LG_HIST_BUCKETS];
};

void lg_hist_init(struct lg_hist *h);
void lg_hist_add(struct lg_hist *h, uint64_t v);
void lg_hist_merge(struct lg_hist *into, const struct lg_hist *from);
/* The value at percentile p (0 < p <= 100): the upper edge of the bucket
 * holding the ceil(p% * n)-th smallest value, capped at the max seen.
 * 0 when empty. */
uint64_t lg_hist_pct(const struct lg_hist *h, double p);
/* Bucket index of v, and the largest value that bucket holds. */
uint32_t lg_hist_index(uint64_t v);
uint64_t lg_hist_upper(uint32_t idx);

#ifdef __cplusplus
}
#endif

#endif
