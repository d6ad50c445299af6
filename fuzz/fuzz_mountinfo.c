/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the /proc/self/mountinfo parser and the persistence verdict built on it
 * (ckpt_storage__find_mount, ckpt_storage__by_name, ckpt_storage__verdict). Mount points, roots
 * and sources come from whoever mounted them (FUSE, user namespaces, container runtimes).
 * Input: the first line is the path to look up (made absolute), the rest is the mountinfo text;
 * the last byte of the input picks the cluster type. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "ckpt.h"
#include "fuzz_common.h"
#include "storage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

/* The path is the mount point or below it. */
static int holds(const char *point, const char *path)
{
	size_t n = strlen(point);

	if (!strcmp(point, "/"))
		return path[0] == '/';
	return !strncmp(path, point, n) && (path[n] == '\0' || path[n] == '/');
}

static void verdict(const struct ckpt_mount *m, const char *path, enum ckpt_cluster cluster)
{
	struct ckpt_fsinfo *s = calloc(2, sizeof(*s));
	const struct ckpt_fstype *t;
	char reason[CKPT_ERRMSG_MAX];
	enum ckpt_verdict v;

	FUZZ_CHECK(s);
	snprintf(s[0].path, sizeof(s[0].path), "%s", path);
	snprintf(s[0].fstype, sizeof(s[0].fstype), "%s", m->fstype);
	s[0].have_mount = 1;
	s[0].mount = *m;
	s[0].dev = makedev(m->major, m->minor);
	s[0].node_local = -1;
	if ((t = ckpt_storage__by_name(m->fstype))) {
		s[0].cls = t->cls;
		s[0].caveat = t->caveat;
		s[0].magic = t->magic;
		FUZZ_CHECK(ckpt_storage__by_magic(t->magic) || t->magic == 0);
	}
	FUZZ_CHECK(ckpt_storage__class_name(s[0].cls) != NULL);
	s[1] = s[0]; /* local_dir on the same mount */
	reason[0] = '\0';
	v = ckpt_storage__verdict(&s[0], NULL, cluster, "/home", reason, sizeof(reason));
	FUZZ_CHECK(ckpt_storage__verdict_name(v) && reason[0]);
	v = ckpt_storage__verdict(&s[0], &s[1], cluster, "/home", reason, sizeof(reason));
	FUZZ_CHECK(ckpt_storage__verdict_name(v) && reason[0]);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const enum ckpt_cluster clusters[] = { CKPT_CLUSTER_NONE, CKPT_CLUSTER_SLURM,
						      CKPT_CLUSTER_KUBERNETES };
	struct ckpt_mount m, m2;
	enum ckpt_cluster cluster;
	const uint8_t *nl;
	char *path, *text;
	size_t plen;

	if (len < 1)
		return 0;
	cluster = clusters[data[len - 1] % 3];
	nl = memchr(data, '\n', len);
	plen = nl ? (size_t)(nl - data) : len;
	path = malloc(plen + 2);
	text = malloc(len - plen + 1);
	FUZZ_CHECK(path && text);
	path[0] = '/';
	memcpy(path + 1, data, plen);
	path[plen + 1] = '\0';
	if (data[0] == '/')
		memmove(path, path + 1, plen + 1);
	memcpy(text, data + plen, len - plen);
	text[len - plen] = '\0';

	if (ckpt_storage__find_mount(&m, text, path, 0) == CKPT_OK) {
		FUZZ_CHECK(m.point[0] == '/' && holds(m.point, path));
		FUZZ_CHECK(memchr(m.root, '\0', sizeof(m.root)) && memchr(m.fstype, '\0', sizeof(m.fstype)));
		FUZZ_CHECK(memchr(m.source, '\0', sizeof(m.source)));
		/* with the device of the entry found: an entry (maybe another) of that device */
		FUZZ_CHECK(ckpt_storage__find_mount(&m2, text, path, makedev(m.major, m.minor)) ==
			   CKPT_OK);
		FUZZ_CHECK(holds(m2.point, path));
		verdict(&m, path, cluster);
	} else {
		FUZZ_CHECK(m.point[0] == '\0');
	}
	free(path);
	free(text);
	return 0;
}
