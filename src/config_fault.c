/* SPDX-License-Identifier: MIT */
/* The crash-test hook of the fault_kill_at key: SIGKILL at a named point (docs/FORMAT.md lists
 * the points, tests/test_crash.c and tests/test_torture.sh kill processes there). */
#include <signal.h>
#include <string.h>

#include "config.h"

void ckpt_config__fault(const char *fault_kill_at, const char *point)
{
	if (fault_kill_at && !strcmp(fault_kill_at, point))
		raise(SIGKILL);
}
