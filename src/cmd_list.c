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

#include "cli.h"
#include "log.h"
#include "repo.h"
#include "snap.h"
#include "util.h"
#include "banned.h"

static const char list_desc[] =
	"List backup groups, their snapshots and archives.  Over http(s) the\n"
	"server must offer JSON directory listings (nginx: autoindex on;\n"
	"autoindex_format json;).\n";

static void print_snapshot(struct cli *c, const char *type, const char *id,
			   int64_t t)
{
	struct repo_snapshot *snap = NULL;
	const struct snap_manifest *m;
	char spec[300];
	char ts[21];

	snap_format_time(t, ts);
	snprintf(spec, sizeof(spec), "%s/%s/%s", type, id, ts);
	if (repo_snapshot_open(c->s, c->ns, spec, c->key, &snap)) {
		printf("%s  (unreadable)\n", spec);
		return;
	}
	m = repo_snapshot_manifest(snap);
	printf("%s", spec);
	if (snap_manifest_key_fingerprint(m))
		printf("  key %s", snap_manifest_key_fingerprint(m));
	printf("\n");
	for (size_t i = 0; i < snap_manifest_nfiles(m); i++) {
		const struct snap_file *f = snap_manifest_file(m, i);

		printf("    %-32s %14llu  %s\n", f->filename,
		       (unsigned long long)f->size,
		       snap_crypt_mode_name(f->crypt_mode));
	}
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
static int list_snapshots(struct cli *c, const struct repo_group *groups,
			  size_t ngroups)
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
			print_snapshot(c, groups[g].type, groups[g].id,
				       times[i]);
		free(times);
	}
	return 0;
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

	cli_init(&c);
	const struct opt opts[] = {
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
	if (c.key) {
		char fp[96];

		key_fingerprint_str(c.key, fp);
		printf("key fingerprint: %s\n", fp);
	}
	ret = list_groups(&c, repo, group, &groups, &ngroups);
	if (!ret)
		ret = list_snapshots(&c, groups, ngroups);
out:
	repo_free_groups(groups, ngroups);
	cli_release(&c);
	return ret;
}
