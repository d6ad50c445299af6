/* SPDX-License-Identifier: MIT */
/* Per-region element width hints: an open-addressing hash table (FNV-1a, linear probing) from
 * region name to width. A job may hint thousands of regions (one per tensor) and the drain looks
 * each of a step's regions up once per drain, so lookups must not be linear in the table. A hint
 * set back to 0 keeps its slot with width 0 (no tombstones needed): it reads as "no hint". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "config_hint.h"

struct hint {
	char *name; /* NULL: empty slot */
	size_t len;
	unsigned width;
};

struct ckpt_hints {
	struct hint *slot;
	size_t cap; /* a power of two */
	size_t used;
};

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

/* The slot of name, or the empty slot where it would go (the table is never full). */
static struct hint *find(const struct ckpt_hints *h, const char *name, size_t len)
{
	size_t i = (size_t)fnv1a(name, len) & (h->cap - 1);

	while (h->slot[i].name &&
	       (h->slot[i].len != len || memcmp(h->slot[i].name, name, len) != 0))
		i = (i + 1) & (h->cap - 1);
	return &h->slot[i];
}

/* Double the table (or make its first 16 slots). The names move, nothing is copied. */
static int grow(struct ckpt_hints *h)
{
	struct ckpt_hints n = { NULL, h->cap ? 2 * h->cap : 16, h->used };

	if (!(n.slot = calloc(n.cap, sizeof(*n.slot))))
		return -1;
	for (size_t i = 0; i < h->cap; i++)
		if (h->slot[i].name)
			*find(&n, h->slot[i].name, h->slot[i].len) = h->slot[i];
	free(h->slot);
	*h = n;
	return 0;
}

int ckpt_config__hint_set(struct ckpt_hints **hp, const char *name, size_t len, unsigned width,
			  struct ckpt_err *err)
{
	struct ckpt_hints *h = *hp;
	struct hint *s;

	if (!h) {
		if (!width)
			return CKPT_OK; /* removing from an empty table */
		if (!(h = calloc(1, sizeof(*h))))
			goto nomem;
		*hp = h;
	}
	/* at most half full: probes stay short and find() always meets an empty slot */
	if (2 * (h->used + 1) > h->cap && grow(h) < 0)
		goto nomem;
	s = find(h, name, len);
	if (!s->name) {
		if (!width)
			return CKPT_OK;
		if (!(s->name = malloc(len)))
			goto nomem;
		memcpy(s->name, name, len);
		s->len = len;
		h->used++;
	}
	s->width = width;
	return CKPT_OK;
nomem:
	return ckpt_err__set(err, CKPT_ENOMEM, "out of memory for the hint of region '%.*s'",
			     (int)len, name);
}

unsigned ckpt_config__hint_get(const struct ckpt_hints *h, const char *name, size_t len)
{
	if (!h || !h->cap)
		return 0;
	return find(h, name, len)->width;
}

void ckpt_config__hints_free(struct ckpt_hints *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->cap; i++)
		free(h->slot[i].name);
	free(h->slot);
	free(h);
}
