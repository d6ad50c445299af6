/* SPDX-License-Identifier: MIT */
/* Per-region element width hints (ckpt_region_hint): a table from region name to width that the
 * public call fills and the drain reads when a step's drain starts (config_hint.c). */
#ifndef CKPT_CONFIG_HINT_H
#define CKPT_CONFIG_HINT_H

#include <stddef.h>

#include "error.h"

struct ckpt_hints; /* opaque; NULL is an empty table */

/* Record `width` (0, 1, 2, 4 or 8; 0 removes the hint) for the region named by the len bytes of
 * name (1..255), creating the table in *h on first use. CKPT_OK, or CKPT_ENOMEM described in err
 * (the table is then as it was). Not thread-safe: the caller serializes it with every reader. */
int ckpt_config__hint_set(struct ckpt_hints **h, const char *name, size_t len, unsigned width,
			  struct ckpt_err *err);
/* The width hinted for that name, or 0 when none (h may be NULL). */
unsigned ckpt_config__hint_get(const struct ckpt_hints *h, const char *name, size_t len);
/* NULL-safe. */
void ckpt_config__hints_free(struct ckpt_hints *h);

#endif
