/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The status command: a reader of the ".status" JSON document.  Single
 * threaded; no state between calls.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"
#include "mountpoint.h"
#include "status.h"
#include "util.h"
#include "banned.h"

#define BAR_WIDTH 30

static const char *human(double v, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned int u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

static double num(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_double(v);
}

static const char *str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return "?";
	return json_object_get_string(v);
}

/* --in-place and --seed: what did not cross the network, and the
 * check's progress while it runs. */
static void print_reuse(json_object *d, FILE *out)
{
	json_object *r;
	json_object *c;
	char a[32];
	char b[32];

	if (!json_object_object_get_ex(d, "reused", &r))
		return;
	fprintf(out, "  %-24s reused %s: %.0f chunks from the target, %.0f "
		"from seeds; %.0f fetched", "",
		human(num(r, "not_downloaded"), a, sizeof(a)),
		num(r, "target_chunks"), num(r, "seed_chunks"),
		num(d, "fetched_chunks"));
	if (json_object_object_get_ex(d, "check", &c))
		fprintf(out, "; checked %.0f of %.0f at %s/s", num(c, "done"),
			num(c, "total"), human(num(c, "rate"), b, sizeof(b)));
	fprintf(out, "\n");
}

static void print_human(json_object *doc, FILE *out)
{
	json_object *disks;
	json_object *cache;
	json_object *cut;
	json_object *last;
	char a[32];
	char b[32];

	if (num(doc, "took") >= 0)
		fprintf(out, "%s: %s, took %.0f s", str(doc, "snapshot"),
			str(doc, "state"), num(doc, "took"));
	else if (json_object_object_get_ex(doc, "stalled", NULL))
		fprintf(out, "%s: stalled (%s), %.0f s elapsed",
			str(doc, "snapshot"), str(doc, "stalled"),
			num(doc, "elapsed"));
	else
		fprintf(out, "%s: %s, %.0f s elapsed", str(doc, "snapshot"),
			str(doc, "state"), num(doc, "elapsed"));
	if (json_object_object_get_ex(doc, "cache", &cache))
		fprintf(out, ", cache hit rate %.0f%%",
			100 * num(cache, "hit_rate"));
	if (json_object_object_get_ex(doc, "cutover", &cut))
		fprintf(out, ", cut over in %.3f s (%.0f disks)",
			num(cut, "took"), num(cut, "disks"));
	if (json_object_object_get_ex(doc, "cutover_waiting", NULL))
		fprintf(out, ", waiting to cut over (%s)",
			str(doc, "cutover_waiting"));
	if (json_object_object_get_ex(doc, "cutover_error", NULL))
		fprintf(out, ", cut-over failed (%s)",
			str(doc, "cutover_error"));
	if (num(doc, "stream_errors"))
		fprintf(out, ", %.0f stream errors", num(doc, "stream_errors"));
	if (json_object_get_boolean(json_object_object_get(doc,
							   "stream_yielding")))
		fprintf(out, ", stream giving way to the guest");
	if (json_object_object_get_ex(doc, "last_restart", &last))
		fprintf(out, ", %.0f server restarts (the last: %s; the guest "
			"waited %.0f ms)", num(doc, "restarts"),
			str(last, "cause"), num(last, "guest_wait_ms"));
	fprintf(out, "\n");
	if (!json_object_object_get_ex(doc, "disks", &disks))
		return;
	for (size_t i = 0; i < json_object_array_length(disks); i++) {
		json_object *d = json_object_array_get_idx(disks, i);
		double pct = num(d, "percent");
		int fill = (int)(pct / 100 * BAR_WIDTH + 0.5);
		char bar[BAR_WIDTH + 1];

		for (int k = 0; k < BAR_WIDTH; k++)
			bar[k] = k < fill ? '#' : '-';
		bar[BAR_WIDTH] = '\0';
		fprintf(out, "  %-24s [%s] %6.2f%%  %s/s%s", str(d, "name"), bar,
			pct, human(num(d, "rate"), a, sizeof(a)),
			num(doc, "took") >= 0 ? " average" : "");
		if (num(d, "eta") >= 0 && pct < 100)
			fprintf(out, "  ETA %.0f s", num(d, "eta"));
		fprintf(out, "  fetched %s  errors %.0f%s\n",
			human(num(d, "fetched"), b, sizeof(b)),
			num(d, "read_errors"),
			json_object_get_boolean(json_object_object_get(
				d, "complete")) ? "  complete" : "");
		print_reuse(d, out);
	}
}

int status_read(const char *who, const char *mnt, char **text,
		json_object **doc)
{
	char *path = xasprintf("%s/.status", mnt);
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	/* st_size of .status is 0 (generated on open): read to EOF. */
	ret = read_file_any(path, 1 << 20, &buf, &len);
	if (ret) {
		if (who && !mountpoint_dead(who, mnt, ret))
			log_err("%s: cannot read '%s': %s (is a pbs-livemount "
				"mounted there?)", who, path, strerror(-ret));
		goto out;
	}
	*doc = json_tokener_parse((char *)buf);
	if (!*doc) {
		if (who)
			log_err("%s: cannot parse '%s'", who, path);
		ret = -EBADMSG;
		goto out;
	}
	if (text) {
		*text = (char *)buf;
		buf = NULL;
	}
out:
	free(buf);
	free(path);
	return ret;
}

int status_run(const struct status_conf *conf, FILE *out)
{
	bool tty = isatty(fileno(out));

	for (;;) {
		json_object *doc = NULL;
		char *text = NULL;
		bool failed;
		bool done;
		int ret;

		ret = status_read("status", conf->mountpoint, &text, &doc);
		if (ret)
			return ret;
		if (conf->json)
			fputs(text, out);
		else
			print_human(doc, out);
		done = !strcmp(str(doc, "state"), "complete") ||
		       !strcmp(str(doc, "state"), "verified") ||
		       !strcmp(str(doc, "state"), "verify-failed") ||
		       !strcmp(str(doc, "state"), "read-only");
		failed = !strcmp(str(doc, "state"), "verify-failed");
		json_object_put(doc);
		free(text);
		fflush(out);
		if (!conf->watch || done)
			return failed ? -EUCLEAN : 0;
		sleep(1);
		if (tty && !conf->json)
			fputs("\033[H\033[J", out);
	}
}
