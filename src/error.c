/* SPDX-License-Identifier: MIT */
/* The public calls that need nothing (ckpt_strerror's table, ckpt_version) and the translation of
 * errno into pinned CKPT_* codes. ckpt_version lives here, not in api.c, so that a program that
 * calls only these and the modules below (the ckpt tool) links none of the context, drain and
 * MPI code, and needs no MPI library at run time. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ckpt.h"
#include "error.h"

const char *ckpt_version(void)
{
	return PACKAGE_VERSION;
}

const char *ckpt_strerror(int rc)
{
	switch (rc) {
	case CKPT_OK: return "success";
	case CKPT_EINVAL: return "invalid argument";
	case CKPT_ENOMEM: return "out of memory";
	case CKPT_EIO: return "input/output error";
	case CKPT_ENOSPC: return "no space left on a checkpoint tier";
	case CKPT_ENOENT: return "no such step, region or directory";
	case CKPT_ECORRUPT: return "checkpoint data is corrupt (checksum or format)";
	case CKPT_ENOTSUP: return "not supported by this build or system";
	case CKPT_ETIMEDOUT: return "timed out";
	case CKPT_EPERM: return "permission denied";
	case CKPT_EMPI: return "MPI error or ranks disagree";
	case CKPT_EBUSY: return "the job rank is already open, or another process is the job's writer";
	case CKPT_ENRANKS: return "the step was saved by another number of ranks";
	case CKPT_ESTALE: return "the save being read was replaced and removed";
	default: return "unknown libckpt error code";
	}
}

int ckpt_err__from_errno(int errnum)
{
	switch (errnum) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return CKPT_ENOSPC;
	case EACCES:
	case EPERM:
	case EROFS:
		return CKPT_EPERM;
	case ENOMEM:
		return CKPT_ENOMEM;
	case ENOENT:
		return CKPT_ENOENT;
	case ETIMEDOUT:
		return CKPT_ETIMEDOUT;
	default:
		return CKPT_EIO;
	}
}

int ckpt_err__set(struct ckpt_err *e, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return rc;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return rc;
}

int ckpt_err__errno(struct ckpt_err *e, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (e) {
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		n = strlen(e->msg);
		if (n < sizeof(e->msg))
			snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(errnum));
	}
	return ckpt_err__from_errno(errnum);
}

void ckpt_err__clear(struct ckpt_err *e)
{
	if (e)
		e->msg[0] = '\0';
}

void ckpt_err__copy(struct ckpt_err *dst, const struct ckpt_err *src)
{
	if (dst && src && dst != src)
		memcpy(dst->msg, src->msg, sizeof(dst->msg));
}
