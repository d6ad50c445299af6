/* SPDX-License-Identifier: MIT */
/* Output of the ckpt tool: a small JSON writer, human sizes and times, the progress bar. */
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

void tool_json_init(struct tool_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = 1;
}

static void jstring(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			/* Paths may hold any byte but NUL: control bytes are escaped, bytes above
			 * 127 pass through (valid UTF-8 stays valid; JSON readers decide the rest). */
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

/* The separator and key before a value. */
static void jkey(struct tool_json *j, const char *key)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = 0;
	if (key) {
		jstring(j->f, key);
		fputc(':', j->f);
	}
}

static void jopen(struct tool_json *j, const char *key, char c)
{
	jkey(j, key);
	fputc(c, j->f);
	if (j->depth < (int)(sizeof(j->first) / sizeof(j->first[0])) - 1)
		j->depth++;
	j->first[j->depth] = 1;
}

void tool_json_obj(struct tool_json *j, const char *key)
{
	jopen(j, key, '{');
}

void tool_json_arr(struct tool_json *j, const char *key)
{
	jopen(j, key, '[');
}

void tool_json_end(struct tool_json *j, char close)
{
	fputc(close, j->f);
	if (j->depth > 0)
		j->depth--;
	if (j->depth == 0) {
		fputc('\n', j->f);
		fflush(j->f);
	}
}

void tool_json_str(struct tool_json *j, const char *key, const char *v)
{
	jkey(j, key);
	if (v)
		jstring(j->f, v);
	else
		fputs("null", j->f);
}

void tool_json_u64(struct tool_json *j, const char *key, uint64_t v)
{
	jkey(j, key);
	fprintf(j->f, "%llu", (unsigned long long)v);
}

void tool_json_num(struct tool_json *j, const char *key, double v)
{
	jkey(j, key);
	if (v != v || v > 1e300 || v < -1e300)
		fputs("null", j->f); /* JSON has no NaN or infinity */
	else
		fprintf(j->f, "%.6g", v);
}

void tool_json_bool(struct tool_json *j, const char *key, int v)
{
	jkey(j, key);
	fputs(v ? "true" : "false", j->f);
}

void tool_json_null(struct tool_json *j, const char *key)
{
	jkey(j, key);
	fputs("null", j->f);
}

void tool_size(char *buf, size_t len, uint64_t bytes, int short_form)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (short_form)
		snprintf(buf, len, u ? "%.1f%c" : "%.0f%c", v, u ? units[u][0] : 'B');
	else
		snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", v, units[u]);
}

void tool_time(char *buf, size_t len, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (!ns || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
}

void tool_time_iso(char *buf, size_t len, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "-");
}

double tool_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- progress bar ---- */

/* Bytes this process has sent towards storage so far: write_bytes of /proc/self/io counts
 * O_DIRECT and io_uring writes too (wchar counts only write system calls); whichever grew more
 * since the start of a tracked write is its progress. 0 when /proc is unavailable. */
static uint64_t io_written(uint64_t *wchar)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	unsigned long long v, wb = 0;

	*wchar = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "write_bytes: %llu", &v) == 1)
			wb = v;
		else if (sscanf(line, "wchar: %llu", &v) == 1)
			*wchar = v;
	}
	fclose(f);
	return wb;
}

static uint64_t written_since(struct tool_progress *p)
{
	uint64_t wc, wb = io_written(&wc), a, b;

	a = wb > p->wb0 ? wb - p->wb0 : 0;
	b = wc > p->wc0 ? wc - p->wc0 : 0;
	a = a > b ? a : b;
	return a < p->track_cap ? a : p->track_cap;
}

static void draw(struct tool_progress *p)
{
	uint64_t done = atomic_load(&p->done), total = p->total;
	double el = tool_now() - p->t0, rate, frac;
	char sd[32], st[32], sr[32], eta[32], bar[48], label[sizeof(p->label)], tail[160];
	struct winsize ws;
	int cols = 80, width, fill;

	pthread_mutex_lock(&p->mu);
	memcpy(label, p->label, sizeof(label));
	if (p->track_cap)
		done += written_since(p);
	pthread_mutex_unlock(&p->mu);
	if (p->scale > 1) {
		done /= p->scale;
		total /= p->scale;
	}
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		cols = ws.ws_col;
	rate = el > 0 ? (double)done / el : 0;
	frac = total ? (double)done / (double)total : 1;
	if (frac > 1)
		frac = 1;
	tool_size(sd, sizeof(sd), done, 0);
	tool_size(st, sizeof(st), total, 0);
	tool_size(sr, sizeof(sr), (uint64_t)rate, 0);
	if (rate > 0 && done < total) {
		unsigned long s = (unsigned long)((double)(total - done) / rate + 0.5);

		if (s >= 3600)
			snprintf(eta, sizeof(eta), "ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
		else
			snprintf(eta, sizeof(eta), "ETA %lu:%02lu", s / 60, s % 60);
	} else {
		snprintf(eta, sizeof(eta), "ETA --:--");
	}
	/* label [#####.....]  42% 1.20 GiB/2.80 GiB 850.00 MiB/s ETA 0:02, fitted to the width */
	snprintf(tail, sizeof(tail), "%3d%% %s/%s %s/s %s", (int)(frac * 100), sd, st, sr, eta);
	width = cols - 1 - (int)strlen(tail) - (int)strlen(label) - 4;
	if (width > (int)sizeof(bar) - 1)
		width = sizeof(bar) - 1;
	fill = (int)(frac * (width > 0 ? width : 0));
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width > 0 ? width : 0] = '\0';
	pthread_mutex_lock(&p->mu);
	if (width >= 10)
		fprintf(stderr, "\r\033[K%s [%s] %s", label, bar, tail);
	else if ((int)(strlen(label) + strlen(tail)) + 2 < cols)
		fprintf(stderr, "\r\033[K%s %s", label, tail);
	else
		fprintf(stderr, "\r\033[K%.*s", cols > 1 ? cols - 1 : 1, tail);
	fflush(stderr);
	pthread_mutex_unlock(&p->mu);
}

void tool_progress_track_writes(struct tool_progress *p, uint64_t cap)
{
	pthread_mutex_lock(&p->mu);
	p->wb0 = io_written(&p->wc0);
	p->track_cap = cap;
	pthread_mutex_unlock(&p->mu);
}

void tool_progress_untrack(struct tool_progress *p)
{
	pthread_mutex_lock(&p->mu);
	p->track_cap = 0;
	pthread_mutex_unlock(&p->mu);
}

static void *progress_thread(void *arg)
{
	struct tool_progress *p = arg;
	struct timespec ts;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		draw(p);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

void tool_progress_init(struct tool_progress *p, int enabled)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->enabled = enabled;
}

void tool_progress_begin(struct tool_progress *p, uint64_t total, unsigned scale)
{
	tool_progress_end(p);
	atomic_store(&p->done, 0);
	p->total = total;
	p->scale = scale;
	p->t0 = tool_now();
	p->stop = 0;
	if (p->enabled && pthread_create(&p->thread, NULL, progress_thread, p) == 0)
		p->running = 1;
}

void tool_progress_label(struct tool_progress *p, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&p->mu);
	va_start(ap, fmt);
	vsnprintf(p->label, sizeof(p->label), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&p->mu);
}

void tool_progress_msg(struct tool_progress *p, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&p->mu);
	if (p->running)
		fputs("\r\033[K", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
	pthread_mutex_unlock(&p->mu);
}

void tool_progress_end(struct tool_progress *p)
{
	if (!p->running)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	p->running = 0;
	fputs("\r\033[K", stderr);
	fflush(stderr);
}

void tool_progress_destroy(struct tool_progress *p)
{
	tool_progress_end(p);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
}
