/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount restore and verify: one archive into a target, or
 * checked against an image.
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
#include "restore.h"
#include "util.h"
#include "banned.h"

static const char restore_desc[] =
	"Restore one disk archive into TARGET: a file (written as\n"
	"TARGET.partial and renamed when complete), a block device, or '-'\n"
	"for standard output.  A TARGET that holds data is refused unless\n"
	"--in-place (it is an older version of the disk: only what differs\n"
	"is fetched and written) or --overwrite; an interrupted restore\n"
	"resumes when run again.\n"
	"SNAPSHOT is TYPE/ID/TIME or TYPE/ID for the newest; ARCHIVE is e.g.\n"
	"drive-scsi0 or drive-scsi0.img.fidx.  REPO is a datastore directory,\n"
	"file://PATH, http(s)://HOST[:PORT]/PATH, s3://BUCKET/DATASTORE or a\n"
	"PBS repository [[USER@REALM[!TOKEN]@]HOST[:PORT]:]DATASTORE.\n";

static const char verify_desc[] =
	"Check IMAGE against the backup chunk by chunk (hashes only, no\n"
	"chunk download).  Exit 0 only if identical; otherwise names the\n"
	"first differing chunk.\n";

static int restore_verify(int argc, char **argv, bool verify)
{
	const char *cmdname = verify ? "verify" : "restore";
	struct repo_snapshot *snap = NULL;
	struct repo_archive *a = NULL;
	bool target_zeroed = false;
	bool overwrite = false;
	bool in_place = false;
	struct opt_list seeds = { 0 };
	struct reuse_seeds *rs = NULL;
	char *state_dir = NULL;
	struct cli c;
	int ret = 0;
	const char *repo;
	char **args;
	int nargs;
	int shift;

	cli_init(&c);
	const struct opt restore_opts[] = {
		OPT_BOOL(0, "overwrite", &overwrite,
			 "restore over a TARGET that holds data (a file\n"
			 "is replaced once the restore is complete)"),
		OPT_BOOL(0, "target-zeroed", &target_zeroed,
			 "block device already reads zeros: skip\n"
			 "zero chunks"),
		OPT_BOOL(0, "in-place", &in_place,
			 "TARGET holds an older version of the disk:\n"
			 "only chunks that differ are fetched, written\n"
			 "in TARGET itself"),
		OPT_LIST("seed", &seeds, "PATH",
			 "a file or device that may hold chunks of\n"
			 "the disk, read instead of fetched (repeatable)"),
		OPT_INCLUDE(cli_repo_opts(&c), "repository options:"),
		OPT_END(),
	};
	const struct opt verify_opts[] = {
		OPT_INCLUDE(cli_repo_opts(&c), "repository options:"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = cmdname,
		.usage = verify ? "[options] REPO SNAPSHOT ARCHIVE IMAGE" :
				  "[options] REPO SNAPSHOT ARCHIVE TARGET",
		.desc = verify ? verify_desc : restore_desc,
		.opts = verify ? verify_opts : restore_opts,
	};

	ret = opt_parse(&cmd, argc, argv, &nargs);
	if (ret) {
		ret = ret == OPT_HELP_SHOWN ? 0 : ret;
		goto out;
	}
	repo = cli_repo_arg(nargs, 4, argv + 1, &shift);
	if (!repo) {
		ret = opt_usage_error(cmdname, "needs REPO SNAPSHOT ARCHIVE %s "
				      "(or PBS_REPOSITORY)", verify ? "IMAGE" :
				      "TARGET");
		goto out;
	}
	args = argv + 1 + shift;
	if (in_place && (overwrite || !strcmp(args[2], "-"))) {
		ret = opt_usage_error(cmdname, "--in-place writes over what "
				      "TARGET holds: not with --overwrite or "
				      "'-'");
		goto out;
	}
	state_dir = cli_default_dir("PBSLM_STATE_DIR", "state");
	if (!state_dir)
		state_dir = xstrdup(".");
	ret = cli_open_repo(&c, repo);
	if (!ret)
		ret = repo_snapshot_open(c.s, c.ns, args[0], c.key, &snap);
	if (!ret)
		ret = repo_archive_open(snap, args[1], &a);
	if (!ret && seeds.n) {
		char *cache = xasprintf("%s/seeds", state_dir);
		struct reuse_seeds_conf sc = {
			.paths = seeds.v,
			.npaths = seeds.n,
			.chunk_size = snap_fidx_chunk_size(repo_archive_fidx(a)),
			.key = repo_archive_key(a),
			.cache_dir = cache,
			.lock_wait_ms = 5000,
		};

		ret = reuse_seeds_open(&sc, &rs);
		free(cache);
	}
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	if (verify) {
		struct verify_conf vc = {
			.archive = a,
			.image = args[2],
			.threads = 2,
		};

		ret = verify_run(&vc);
		if (!ret && !c.quiet)
			log_info("verify: '%s' matches %s/%s", vc.image,
				 repo_snapshot_path(snap), repo_archive_name(a));
	} else {
		struct restore_conf rc = {
			.archive = a,
			.target = args[2],
			.threads = store_parallelism(c.s,
						     c.store.connections),
			.target_zeroed = target_zeroed,
			.overwrite = overwrite,
			.in_place = in_place,
			.seeds = rs,
			.state_dir = state_dir,
			.quiet = c.quiet,
		};

		ret = restore_run(&rc);
	}
	ret = cli_exit_code(ret);
out:
	reuse_seeds_close(rs);
	opt_list_release(&seeds);
	repo_archive_close(a);
	repo_snapshot_close(snap);
	cli_release(&c);
	free(state_dir);
	return ret;
}


int cmd_restore(int argc, char **argv)
{
	return restore_verify(argc, argv, false);
}

int cmd_verify(int argc, char **argv)
{
	return restore_verify(argc, argv, true);
}
