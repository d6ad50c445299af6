/* SPDX-License-Identifier: MIT */
/* Error messages: one-line details recorded where a system error is translated. */
#ifndef CKPT_ERROR_H
#define CKPT_ERROR_H

#include <stdarg.h>

#define CKPT_ERRMSG_MAX 512

/* A message buffer. Lives in a context, a drain job or a step record, never thread-local,
 * because drain threads fail on another thread than the one that asks. */
struct ckpt_err {
	char msg[CKPT_ERRMSG_MAX];
};

/* Record "fmt..." in e (NULL-safe) and return rc unchanged. */
int ckpt_err__set(struct ckpt_err *e, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Record "fmt...: strerror(errnum)" and return the CKPT code errnum maps to. */
int ckpt_err__errno(struct ckpt_err *e, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The CKPT code for an errno value (ENOSPC -> CKPT_ENOSPC, EACCES -> CKPT_EPERM, ...). */
int ckpt_err__from_errno(int errnum);
void ckpt_err__clear(struct ckpt_err *e);
void ckpt_err__copy(struct ckpt_err *dst, const struct ckpt_err *src);

#endif
