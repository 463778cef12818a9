/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The ".status" JSON document: its writer (any thread; no state) and the
 * status command that reads it (single threaded).  Version 1; fields are
 * only ever added.
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

/* ---- the writer ---- */

static void add(json_object *o, const char *key, json_object *v)
{
	json_object_object_add(o, key, v);
}

static json_object *u64(uint64_t v)
{
	return json_object_new_uint64(v);
}

/* A number written with @fmt ("%.0f"), so the document stays short. */
static json_object *dbl(double v, const char *fmt)
{
	char text[64];

	snprintf(text, sizeof(text), fmt, v);
	return json_object_new_double_s(v, text);
}

/* "reused" (chunks and bytes from the old target and seeds instead of
 * the store) and, with --in-place, "check" (the comparison with the old
 * target: chunks, bytes read and hashed, their rate). */
static void add_reuse(json_object *d, const struct image_stats *st,
		      bool seeds)
{
	json_object *r;
	json_object *c;

	if (!st->in_place && !seeds)
		return;
	r = json_object_new_object();
	add(r, "target_chunks", u64(st->target_chunks));
	add(r, "target_bytes", u64(st->target_bytes));
	add(r, "seed_chunks", u64(st->seed_chunks));
	add(r, "seed_bytes", u64(st->seed_bytes));
	add(r, "not_downloaded", u64(st->target_bytes + st->seed_bytes));
	add(d, "reused", r);
	if (!st->in_place)
		return;
	c = json_object_new_object();
	add(c, "total", u64(st->check_total));
	add(c, "done", u64(st->check_done));
	add(c, "bytes", u64(st->check_bytes));
	add(c, "rate", dbl(st->check_ns ? st->check_bytes * 1e9 / st->check_ns :
					  0.0, "%.0f"));
	add(d, "check", c);
}

static json_object *disk_doc(const struct status_disk *dk, bool stalled,
			     bool seeds)
{
	const struct image_stats *st = &dk->st;
	json_object *d = json_object_new_object();
	/* Stalled: no rate says when it ends. */
	double eta = st->complete ? 0 :
		     dk->rate > 1 && !stalled ?
			     (st->size - st->present_bytes) / dk->rate : -1;

	add(d, "name", json_object_new_string(dk->name));
	add(d, "size", u64(st->size));
	add(d, "present", u64(st->present_bytes));
	add(d, "percent", dbl(st->size ? 100.0 * st->present_bytes / st->size :
					 100.0, "%.2f"));
	add(d, "fetched", u64(st->fetched_bytes));
	add(d, "rate", dbl(dk->rate, "%.0f"));
	add(d, "eta", dbl(eta, "%.0f"));
	add(d, "read_errors", u64(st->read_errors));
	add(d, "chunks", u64(st->chunks_total));
	add(d, "chunks_left", u64(st->chunks_incomplete));
	add(d, "fetched_chunks", u64(st->fetched_chunks));
	add_reuse(d, st, seeds);
	add(d, "complete", json_object_new_boolean(st->complete));
	return d;
}

static void add_cut(json_object *doc, const struct status_facts *f)
{
	json_object *c;

	switch (f->cut) {
	case STATUS_CUT_DONE:
		c = json_object_new_object();
		add(c, "took", dbl(f->cut_took, "%.3f"));
		add(c, "disks", u64(f->cut_moved));
		add(c, "guest_pause", u64(0));
		add(doc, "cutover", c);
		break;
	case STATUS_CUT_WAITING:
	case STATUS_CUT_FAILED:
		add(doc, f->cut == STATUS_CUT_FAILED ? "cutover_error" :
						       "cutover_waiting",
		    json_object_new_string(f->cut_error ? f->cut_error : ""));
		break;
	case STATUS_CUT_NONE:
		break;
	}
}

int status_doc_write(const struct status_facts *f, char **out)
{
	const struct ccache_stats *cs = &f->cache;
	json_object *doc = json_object_new_object();
	json_object *o;
	const char *text;

	add(doc, "version", u64(1));
	add(doc, "pid", json_object_new_int(f->pid));
	add(doc, "supervisor", json_object_new_int(f->supervisor));
	add(doc, "restarts", u64(f->restarts));
	add(doc, "state", json_object_new_string(f->state));
	if (f->stalled)
		add(doc, "stalled", json_object_new_string(f->stalled));
	add_cut(doc, f);
	add(doc, "snapshot", json_object_new_string(f->snapshot));
	add(doc, "started", json_object_new_int64(f->started));
	add(doc, "elapsed", json_object_new_int64(f->elapsed));
	add(doc, "took", dbl(f->took, "%.1f"));
	add(doc, "stream_errors", u64(f->stream_errors));
	add(doc, "stream_yielding", json_object_new_boolean(f->stream_yielding));
	if (f->restart_cause) {
		o = json_object_new_object();
		add(o, "cause", json_object_new_string(f->restart_cause));
		add(o, "guest_wait_ms", u64(f->guest_wait_ms));
		add(doc, "last_restart", o);
	}
	if (f->has_seeds) {
		o = json_object_new_object();
		add(o, "bytes", u64(f->seeds.bytes));
		add(o, "indexed", u64(f->seeds.indexed));
		add(o, "ready", json_object_new_boolean(f->seeds.ready));
		add(o, "ranges", u64(f->seeds.ranges));
		add(o, "used", u64(f->seeds.used));
		add(o, "changed", u64(f->seeds.changed));
		add(doc, "seeds", o);
	}
	o = json_object_new_object();
	add(o, "chunks", u64(f->prefetch_chunks));
	add(o, "done", u64(f->prefetch_done));
	add(doc, "prefetch", o);
	o = json_object_new_object();
	add(o, "hits", u64(cs->hits));
	add(o, "misses", u64(cs->misses));
	add(o, "hit_rate", dbl(cs->hits + cs->misses ?
				       (double)cs->hits /
					       (cs->hits + cs->misses) :
				       0,
			       "%.3f"));
	add(o, "bytes", u64(cs->bytes));
	add(o, "evictions", u64(cs->evictions));
	add(doc, "cache", o);
	o = json_object_new_array();
	for (unsigned int i = 0; i < f->ndisks; i++)
		json_object_array_add(o, disk_doc(&f->disks[i], f->stalled,
						  f->has_seeds));
	add(doc, "disks", o);
	text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
	*out = text ? xasprintf("%s\n", text) : NULL;
	json_object_put(doc);
	return *out ? 0 : -ENOMEM;
}

/* ---- the reader ---- */

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

void status_print(json_object *doc, FILE *out)
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
			status_print(doc, out);
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
