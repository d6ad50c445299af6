/* SPDX-License-Identifier: MIT */
/* What this host and this moment contribute to names and records: the host name, the clock
 * (created_ns) and random 64-bit ids (save ids, temporary names). */
#include <stdint.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

uint64_t ckpt_store__random64(void)
{
	uint64_t v = 0;

	/* getrandom never blocks after boot-time seeding; fall back to time and pid if it fails. */
	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = ckpt_store__now_ns() ^ ((uint64_t)getpid() << 32);
	return v ? v : 1;
}

uint64_t ckpt_store__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *ckpt_store__hostname(void)
{
	static char host[65];

	if (!host[0]) {
		char h[256] = "";

		gethostname(h, sizeof(h) - 1);
		/* Keep it a single path component of safe characters. */
		size_t j = 0;
		for (size_t i = 0; h[i] && j < sizeof(host) - 1; i++)
			host[j++] = (h[i] == '/' || h[i] == '.' || h[i] < 33) ? '_' : h[i];
		if (!j)
			host[j++] = 'h';
		host[j] = '\0';
	}
	return host;
}
