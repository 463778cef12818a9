/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Progress bars and JSON progress lines (progress.h).  The rate is this
 * run's bytes over this run's time, so a resumed restore's ETA is not
 * flattered by what was there already.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <json-c/json.h>

#include "compiler.h"
#include "progress.h"
#include "snap.h"
#include "util.h"
#include "banned.h"

#define TTY_EVERY_NS 250000000ull
#define JSON_EVERY_NS 1000000000ull

struct progress {
	enum progress_mode mode;
	char *what;
	char *name;		/* the archive */
	char *label;		/* the bar's: its stem */
	uint64_t total;
	uint64_t start_done;
	uint64_t done;
	uint64_t t0;
	uint64_t last;		/* when last shown */
	bool shown;
};

enum progress_mode progress_mode_for(bool json, bool quiet)
{
	if (json)
		return PROGRESS_JSON;
	return !quiet && isatty(STDERR_FILENO) ? PROGRESS_TTY : PROGRESS_NONE;
}

struct progress *progress_start(enum progress_mode mode, const char *what,
				const char *name, uint64_t total,
				uint64_t done)
{
	struct progress *p;

	if (mode == PROGRESS_NONE)
		return NULL;
	p = xcalloc(1, sizeof(*p));
	p->mode = mode;
	p->what = xstrdup(what);
	p->name = xstrdup(name);
	/* "drive-scsi0.img.fidx" shows as "drive-scsi0": room for a bar. */
	p->label = snap_archive_stem(name);
	p->total = total;
	p->start_done = p->done = MIN(done, total);
	p->t0 = p->last = now_ns();
	return p;
}

/* Bytes a second of this run; 0 while too early to say, but at @end. */
static double rate(const struct progress *p, uint64_t now, bool end)
{
	double s = (now - p->t0) / 1e9;

	return s > (end ? 0 : 0.2) ? (p->done - p->start_done) / s : 0;
}

/* A number as JSON with @decimals digits after the point. */
static json_object *json_fixed(double v, int decimals)
{
	char s[48];

	snprintf(s, sizeof(s), "%.*f", decimals, v);
	return json_object_new_double_s(v, s);
}

static void eta_text(double r, uint64_t left, char *out, size_t len)
{
	uint64_t s;

	if (r <= 0) {
		snprintf(out, len, "--:--");
		return;
	}
	s = (uint64_t)(left / r);
	if (s >= 3600)
		snprintf(out, len, "%llu:%02llu:%02llu",
			 (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(out, len, "%llu:%02llu", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
}

static void show_tty(struct progress *p, uint64_t now)
{
	struct winsize ws = { 0 };
	double frac = p->total ? (double)p->done / p->total : 1;
	double r = rate(p, now, false);
	char done[32], total[32], rs[32], eta[32], tail[160];
	char line[1024];
	int cols = 80;
	int bar;
	int fill;

	if (!ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) && ws.ws_col)
		cols = MIN((int)ws.ws_col, 300);
	fmt_bytes(p->done, done, sizeof(done));
	fmt_bytes(p->total, total, sizeof(total));
	fmt_bytes(r, rs, sizeof(rs));
	eta_text(r, p->total - p->done, eta, sizeof(eta));
	snprintf(tail, sizeof(tail), " %3.0f%%  %s/%s  %s/s  ETA %s",
		 frac * 100, done, total, rs, eta);
	bar = cols - (int)strlen(p->what) - (int)strlen(p->label) -
	      (int)strlen(tail) - 6;
	/* A narrow terminal wraps the line rather than lose the bar. */
	bar = MAX(MIN(bar, 192), 10);	/* 192: the strings below */
	fill = (int)(frac * bar);
	snprintf(line, sizeof(line), "\r%s %s [%.*s%.*s]%s\033[K", p->what,
		 p->label, fill,
		 "################################################################"
		 "################################################################"
		 "################################################################",
		 bar - fill,
		 "----------------------------------------------------------------"
		 "----------------------------------------------------------------"
		 "----------------------------------------------------------------",
		 tail);
	if (write(STDERR_FILENO, line, strlen(line)) < 0) {
		/* a terminal gone: nothing to do */
	}
	p->shown = true;
}

static void show_json(struct progress *p, uint64_t now, bool end,
		      int result)
{
	json_object *o = json_object_new_object();
	double r = rate(p, now, end);

	json_object_object_add(o, "progress", json_object_new_string(p->what));
	json_object_object_add(o, "archive", json_object_new_string(p->name));
	json_object_object_add(o, "done", json_object_new_uint64(p->done));
	json_object_object_add(o, "total", json_object_new_uint64(p->total));
	json_object_object_add(o, "percent", json_fixed(
		p->total ? 100.0 * p->done / p->total : 100.0, 1));
	json_object_object_add(o, "rate", json_object_new_uint64((uint64_t)r));
	json_object_object_add(o, "elapsed",
			       json_fixed((now - p->t0) / 1e9, 3));
	if (!end && r > 0)
		json_object_object_add(o, "eta", json_object_new_uint64(
			(uint64_t)((p->total - p->done) / r)));
	if (end)
		json_object_object_add(o, "result", json_object_new_string(
			result ? strerror(-result) : "ok"));
	printf("%s\n", json_object_to_json_string_ext(o,
		JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

void progress_update(struct progress *p, uint64_t done)
{
	uint64_t now;

	if (!p)
		return;
	p->done = MIN(MAX(done, p->start_done), p->total);
	now = now_ns();
	if (now - p->last < (p->mode == PROGRESS_TTY ? TTY_EVERY_NS :
						       JSON_EVERY_NS))
		return;
	p->last = now;
	if (p->mode == PROGRESS_TTY)
		show_tty(p, now);
	else
		show_json(p, now, false, 0);
}

void progress_end(struct progress *p, int result)
{
	static const char clear[] = "\r\033[K";

	if (!p)
		return;
	if (p->mode == PROGRESS_JSON)
		show_json(p, now_ns(), true, result);
	else if (p->shown && write(STDERR_FILENO, clear, sizeof(clear) - 1) < 0) {
		/* a terminal gone */
	}
	free(p->what);
	free(p->name);
	free(p->label);
	free(p);
}
