#include "bench/loadgen/hist.h"

#include <math.h>
#include <string.h>

void lg_hist_init(struct lg_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

uint32_t lg_hist_index(uint64_t v)
{
	if (v < LG_HIST_SUB)
		return (uint32_t)v; /* exact below 32 */
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - LG_HIST_SUB_BITS;
	/* range r = shift + 1 holds [2^msb, 2^(msb+1)) in 32 steps */
	return (shift + 1) * LG_HIST_SUB + (uint32_t)((v >> shift) - LG_HIST_SUB);
}

uint64_t lg_hist_upper(uint32_t idx)
{
	if (idx < LG_HIST_SUB)
		return idx;
	unsigned shift = idx / LG_HIST_SUB - 1;
	uint64_t sub = idx % LG_HIST_SUB + LG_HIST_SUB;
	return ((sub + 1) << shift) - 1;
}

void lg_hist_add(struct lg_hist *h, uint64_t v)
{
	h->b[lg_hist_index(v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
	if (v < h->min)
		h->min = v;
}

void lg_hist_merge(struct lg_hist *into, const struct lg_hist *from)
{
	for (uint32_t i = 0; i < LG_HIST_BUCKETS; i++)
		into->b[i] += from->b[i];
	into->n += from->n;
	into->sum += from->sum;
	if (from->max > into->max)
		into->max = from->max;
	if (from->min < into->min)
		into->min = from->min;
}

uint64_t lg_hist_pct(const struct lg_hist *h, double p)
{
	if (!h->n)
		return 0;
	uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->n);
	if (want < 1)
		want = 1;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < LG_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			uint64_t u = lg_hist_upper(i);
			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}
