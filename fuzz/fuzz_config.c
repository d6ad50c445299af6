/* SPDX-License-Identifier: MIT */
/* libFuzzer target: configuration values (ckpt_config_set / _get, the CKPT_* environment path
 * through ckpt_config_new and ckpt_config__check, ckpt_config__parse_size) and the step directory
 * names read from disk (ckpt_store__parse_step).
 * Input: byte 0 selects a key (values past the last key: the input names the key itself, as
 * "key=value"); the rest, up to a NUL, is the value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "config.h"
#include "fuzz_common.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static void env_name(const char *key, char *buf, size_t len)
{
	size_t j = snprintf(buf, len, "CKPT_");

	for (; *key && j + 1 < len; key++)
		buf[j++] = (char)(*key >= 'a' && *key <= 'z' ? *key - 'a' + 'A' : *key);
	buf[j] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char *s, *key, *val, *eq, *value = NULL, envname[300], step_name[32];
	const char *got;
	ckpt_config *cfg, *cfg2;
	struct ckpt_config *dup;
	struct ckpt_err err;
	uint64_t sz, step;
	unsigned sel;
	int rc, known;

	if (len < 1)
		return 0;
	sel = data[0];
	s = malloc(len);
	FUZZ_CHECK(s);
	memcpy(s, data + 1, len - 1);
	s[len - 1] = '\0';
	if (sel < CKPT_NKEYS) {
		key = (char *)ckpt_config__key(sel);
		val = s;
	} else if ((eq = strchr(s, '='))) {
		*eq = '\0';
		key = s;
		val = eq + 1;
	} else {
		key = s;
		val = s;
	}

	/* the sizes and step names that come from users and from directory listings */
	if (ckpt_config__parse_size(val, &sz) == 0)
		FUZZ_CHECK(val[0] >= '0' && val[0] <= '9');
	if (ckpt_store__parse_step(val, &step) == 0) {
		snprintf(step_name, sizeof(step_name), "step-%020llu", (unsigned long long)step);
		FUZZ_CHECK(!strcmp(step_name, val));
	}

	FUZZ_CHECK(ckpt_config_new(&cfg) == CKPT_OK);
	rc = ckpt_config_set(cfg, key, val);
	FUZZ_CHECK(rc == CKPT_OK || rc == CKPT_EINVAL);
	FUZZ_CHECK(ckpt_config_errmsg(cfg) != NULL);
	FUZZ_CHECK((rc == CKPT_OK) == (ckpt_config_errmsg(cfg)[0] == '\0'));
	got = ckpt_config_get(cfg, key);
	known = got != NULL;
	if (rc == CKPT_OK) {
		char *copy;

		/* what get prints, set accepts, and it then prints the same */
		FUZZ_CHECK(got != NULL);
		copy = strdup(got);
		FUZZ_CHECK(copy);
		if (copy[0]) {
			FUZZ_CHECK(ckpt_config_set(cfg, key, copy) == CKPT_OK);
			FUZZ_CHECK(!strcmp(ckpt_config_get(cfg, key), copy));
		}
		free(copy);
		FUZZ_CHECK(ckpt_config__dup(&dup, cfg) == CKPT_OK);
		FUZZ_CHECK(!strcmp(ckpt_config_get(dup, key), ckpt_config_get(cfg, key)));
		ckpt_config_free(dup);
		value = strdup(ckpt_config_get(cfg, key));
		FUZZ_CHECK(value);
	}
	ckpt_config_free(cfg);

	/* the same value through the environment: a bad one is kept aside for ckpt_open */
	if (known && *val) {
		env_name(key, envname, sizeof(envname));
		FUZZ_CHECK(setenv(envname, val, 1) == 0);
		FUZZ_CHECK(ckpt_config_new(&cfg2) == CKPT_OK);
		err.msg[0] = '\0';
		FUZZ_CHECK((ckpt_config__check(cfg2, &err) == CKPT_OK) == (rc == CKPT_OK));
		FUZZ_CHECK(rc == CKPT_OK || strstr(err.msg, envname));
		if (rc == CKPT_OK)
			FUZZ_CHECK(!strcmp(ckpt_config_get(cfg2, key), value));
		ckpt_config_free(cfg2);
		unsetenv(envname);
	}
	free(value);
	free(s);
	return 0;
}
