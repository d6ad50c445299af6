/* SPDX-License-Identifier: MIT */
/* What the log_level key controls: the library's warning and info lines on standard error. */
#include <stdarg.h>
#include <stdio.h>

#include "config.h"

void ckpt_config__log(const struct ckpt_config *cfg, int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!cfg || cfg->log_level < level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* one write per line, so that lines of concurrent ranks do not interleave */
	fprintf(stderr, "libckpt: %s: %s\n", level <= 1 ? "warning" : "info", line);
}
