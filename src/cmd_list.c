/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount list: groups, snapshots and their archives.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "log.h"
#include "repo.h"
#include "snap.h"
#include "util.h"
#include "banned.h"

static const char list_desc[] =
	"List backup groups, their snapshots and archives (with --ns, those\n"
	"of a namespace), or with --namespaces the namespaces.  Encrypted\n"
	"snapshots show their key's fingerprint without the key; protected\n"
	"and verify state are shown where the store has them.  Over http(s)\n"
	"the server must offer JSON directory listings (nginx: autoindex\n"
	"on; autoindex_format json;).\n";

struct list_opts {
	enum cli_format format;
	bool namespaces;
	unsigned int max_depth;
	json_object *out;	/* JSON: the array being filled */
};

/* The first line of a snapshot's notes, malloc'ed, or NULL. */
static char *comment_of(const struct snap_manifest *m)
{
	const char *n = snap_manifest_notes(m);

	return n && *n ? strndup(n, strcspn(n, "\n")) : NULL;
}

static void snapshot_json(struct list_opts *lo, const char *ns,
			  const char *type, const char *id, int64_t t,
			  const struct repo_snapshot *snap)
{
	json_object *o = json_object_new_object();
	const struct snap_manifest *m;
	json_object *files;
	uint64_t total = 0;
	char *comment;
	int prot;

	if (ns && *ns)
		json_object_object_add(o, "ns", json_object_new_string(ns));
	json_object_object_add(o, "backup-type", json_object_new_string(type));
	json_object_object_add(o, "backup-id", json_object_new_string(id));
	json_object_object_add(o, "backup-time", json_object_new_int64(t));
	json_object_array_add(lo->out, o);
	if (!snap) {
		json_object_object_add(o, "error",
				       json_object_new_string("unreadable"));
		return;
	}
	m = repo_snapshot_manifest(snap);
	files = json_object_new_array();
	for (size_t i = 0; i < snap_manifest_nfiles(m); i++) {
		const struct snap_file *f = snap_manifest_file(m, i);
		json_object *fo = json_object_new_object();

		json_object_object_add(fo, "filename",
				       json_object_new_string(f->filename));
		json_object_object_add(fo, "crypt-mode", json_object_new_string(
					       snap_crypt_mode_name(f->crypt_mode)));
		json_object_object_add(fo, "size",
				       json_object_new_uint64(f->size));
		json_object_array_add(files, fo);
		total += f->size;
	}
	json_object_object_add(o, "files", files);
	json_object_object_add(o, "size", json_object_new_uint64(total));
	if (snap_manifest_key_fingerprint(m))
		json_object_object_add(o, "fingerprint", json_object_new_string(
					       snap_manifest_key_fingerprint(m)));
	prot = repo_snapshot_protected(snap);
	if (prot >= 0)
		json_object_object_add(o, "protected",
				       json_object_new_boolean(prot));
	if (snap_manifest_verify_state(m)) {
		json_object *v = json_object_new_object();

		json_object_object_add(v, "state", json_object_new_string(
					       snap_manifest_verify_state(m)));
		json_object_object_add(o, "verification", v);
	}
	comment = comment_of(m);
	if (comment)
		json_object_object_add(o, "comment",
				       json_object_new_string(comment));
	free(comment);
}

static void snapshot_text(const char *spec, const struct repo_snapshot *snap)
{
	const struct snap_manifest *m;
	uint64_t total = 0;
	char sz[32];
	char *comment;
	int prot;

	if (!snap) {
		printf("%s  (unreadable: see above)\n", spec);
		return;
	}
	m = repo_snapshot_manifest(snap);
	for (size_t i = 0; i < snap_manifest_nfiles(m); i++)
		total += snap_manifest_file(m, i)->size;
	fmt_bytes(total, sz, sizeof(sz));
	printf("%s  %s", spec, sz);
	if (snap_manifest_key_fingerprint(m))
		printf("  key %s", snap_manifest_key_fingerprint(m));
	prot = repo_snapshot_protected(snap);
	if (prot > 0)
		printf("  protected");
	if (snap_manifest_verify_state(m))
		printf("  verify %s", snap_manifest_verify_state(m));
	comment = comment_of(m);
	if (comment)
		printf("  \"%s\"", comment);
	free(comment);
	printf("\n");
	for (size_t i = 0; i < snap_manifest_nfiles(m); i++) {
		const struct snap_file *f = snap_manifest_file(m, i);

		fmt_bytes(f->size, sz, sizeof(sz));
		printf("    %-32s %12s  %s\n", f->filename, sz,
		       snap_crypt_mode_name(f->crypt_mode));
	}
}

static void print_snapshot(struct cli *c, struct list_opts *lo,
			   const char *type, const char *id, int64_t t)
{
	struct repo_snapshot *snap = NULL;
	char spec[300];
	char ts[21];

	snap_format_time(t, ts);
	snprintf(spec, sizeof(spec), "%s/%s/%s", type, id, ts);
	/* With the key, checked; without, what the manifest says. */
	if (c->key ? repo_snapshot_open(c->s, c->ns, spec, c->key, &snap) :
		     repo_snapshot_peek(c->s, c->ns, spec, &snap))
		snap = NULL;
	if (lo->format == CLI_FORMAT_TEXT)
		snapshot_text(spec, snap);
	else
		snapshot_json(lo, c->ns, type, id, t, snap);
	repo_snapshot_close(snap);
}

/* REPO and the group (TYPE/ID or NULL) from the arguments. */
static const char *list_args(int nargs, char **argv, const char **group)
{
	struct snap_error serr = { "" };
	const char *repo = NULL;
	char *gt = NULL;
	char *gi = NULL;
	int64_t gtime = 0;
	int shift;

	*group = NULL;
	/* With PBS_REPOSITORY, a lone TYPE/ID argument is a group. */
	if (nargs == 1 && getenv("PBS_REPOSITORY") &&
	    snap_parse_spec(argv[1], &gt, &gi, &gtime, &serr) == 0 &&
	    gtime < 0) {
		repo = getenv("PBS_REPOSITORY");
		*group = argv[1];
	} else if (nargs == 0 || nargs == 1 || nargs == 2) {
		repo = cli_repo_arg(nargs, nargs ? nargs : 1, argv + 1,
				    &shift);
		*group = nargs == 2 ? argv[2] : NULL;
	}
	free(gt);
	free(gi);
	return repo;
}

/* The groups to list: @group alone, or every group of the store. */
static int list_groups(struct cli *c, const char *repo, const char *group,
		       struct repo_group **groups, size_t *ngroups)
{
	const char *slash = group ? strchr(group, '/') : NULL;
	int ret;

	if (group) {
		if (!slash || !snap_is_safe_id(slash + 1))
			return opt_usage_error("list", "group must be TYPE/ID");
		*groups = xcalloc(1, sizeof(**groups));
		(*groups)[0].type = strndup(group, slash - group);
		(*groups)[0].id = xstrdup(slash + 1);
		*ngroups = 1;
		return 0;
	}
	ret = repo_list_groups(c->s, c->ns, groups, ngroups);
	if (ret && !store_err_logged(ret))
		log_err("list: cannot list '%s': %s", repo, ret == -ENOTSUP ?
			"the server offers no directory listing" :
			strerror(-ret));
	return ret ? EXIT_FAILURE : 0;
}

/* The snapshots of each group, one line each. */
static int list_snapshots(struct cli *c, struct list_opts *lo,
			  const struct repo_group *groups, size_t ngroups)
{
	for (size_t g = 0; g < ngroups; g++) {
		int64_t *times = NULL;
		size_t n = 0;
		int ret;

		ret = repo_list_times(c->s, c->ns, groups[g].type, groups[g].id,
				      &times, &n);
		if (ret) {
			if (!store_err_logged(ret))
				log_err("list: cannot list '%s/%s': %s",
					groups[g].type, groups[g].id,
					strerror(-ret));
			return EXIT_FAILURE;
		}
		for (size_t i = 0; i < n; i++)
			print_snapshot(c, lo, groups[g].type, groups[g].id,
				       times[i]);
		free(times);
	}
	return 0;
}

/* The namespaces under @ns, depth first, to @depth more levels. */
static int list_ns(struct cli *c, struct list_opts *lo, const char *ns,
		   unsigned int depth)
{
	char **names = NULL;
	size_t n = 0;
	int ret;

	ret = repo_list_namespaces(c->s, ns, &names, &n);
	if (ret) {
		if (!store_err_logged(ret))
			log_err("list: cannot list the namespaces%s%s: %s",
				ns ? " of " : "", ns ? ns : "",
				ret == -ENOTSUP ? "the server offers no "
				"directory listing" : strerror(-ret));
		return EXIT_FAILURE;
	}
	for (size_t i = 0; !ret && i < n; i++) {
		char *child = ns ? xasprintf("%s/%s", ns, names[i]) :
				   xstrdup(names[i]);

		if (lo->format == CLI_FORMAT_TEXT) {
			puts(child);
		} else {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "ns",
					       json_object_new_string(child));
			json_object_array_add(lo->out, o);
		}
		if (depth > 1)
			ret = list_ns(c, lo, child, depth - 1);
		free(child);
	}
	store_free_names(names, n);
	return ret;
}

int cmd_list(int argc, char **argv)
{
	struct repo_group *groups = NULL;
	size_t ngroups = 0;
	struct cli c;
	int ret = 0;
	const char *repo;
	const char *group;
	int nargs;

	struct list_opts lo = { .max_depth = SNAP_MAX_NS_DEPTH };

	cli_init(&c);
	const struct opt opts[] = {
		OPT_CALLBACK(0, "output-format", &lo.format, "FORMAT",
			     cli_opt_output_format,
			     "text (default), json or json-pretty"),
		OPT_BOOL(0, "namespaces", &lo.namespaces,
			 "list the namespaces (under --ns), not snapshots"),
		OPT_UINT("max-depth", &lo.max_depth, "N", 1,
			 SNAP_MAX_NS_DEPTH,
			 "--namespaces: levels below --ns (default 7)"),
		OPT_INCLUDE(cli_repo_opts(&c), "repository options:"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "list",
		.usage = "[options] REPO [TYPE/ID]",
		.desc = list_desc,
		.opts = opts,
	};

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		goto out;
	repo = list_args(nargs, argv, &group);
	if (!repo) {
		ret = opt_usage_error("list", "needs REPO [TYPE/ID] (or "
				      "PBS_REPOSITORY)");
		goto out;
	}
	ret = cli_open_repo(&c, repo);
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	if (lo.format != CLI_FORMAT_TEXT)
		lo.out = json_object_new_array();
	if (c.key && lo.format == CLI_FORMAT_TEXT && !lo.namespaces) {
		char fp[96];

		key_fingerprint_str(c.key, fp);
		printf("key fingerprint: %s\n", fp);
	}
	if (lo.namespaces) {
		ret = group ? opt_usage_error("list", "--namespaces takes no "
					      "TYPE/ID") :
			      list_ns(&c, &lo, c.ns, lo.max_depth);
	} else {
		ret = list_groups(&c, repo, group, &groups, &ngroups);
		if (!ret)
			ret = list_snapshots(&c, &lo, groups, ngroups);
	}
	if (lo.out && !ret)
		puts(json_object_to_json_string_ext(lo.out,
			lo.format == CLI_FORMAT_JSON_PRETTY ?
			JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
			JSON_C_TO_STRING_NOSLASHESCAPE :
			JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	if (fflush(stdout) && !ret) {
		log_err("list: cannot write: %s", strerror(errno));
		ret = EXIT_FAILURE;
	}
out:
	json_object_put(lo.out);
	repo_free_groups(groups, ngroups);
	cli_release(&c);
	return ret;
}
