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
#include <sys/stat.h>
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
	"PBS repository [[USER@REALM[!TOKEN]@]HOST[:PORT]:]DATASTORE.\n"
	"ARCHIVE may also be a blob, e.g. qemu-server.conf (the VM's\n"
	"configuration, decrypted when the backup is encrypted): restore\n"
	"writes it to TARGET ('-': standard output).\n";

static const char verify_desc[] =
	"Check IMAGE against the backup chunk by chunk (hashes only, no\n"
	"chunk download).  Exit 0 only if identical; otherwise names the\n"
	"first differing chunk.  A blob ARCHIVE (qemu-server.conf) is\n"
	"compared with the file IMAGE byte for byte.\n";

/* The options of restore that verify has not. */
struct restore_args {
	bool target_zeroed;
	bool overwrite;
	bool in_place;
	struct opt_list seeds;
	enum cli_format format;
};

/* --seed's seeds for archive @a, indexed under @state_dir. */
static int open_seeds(const struct restore_args *ra,
		      const struct repo_archive *a, const char *state_dir,
		      struct reuse_seeds **out)
{
	char *cache = xasprintf("%s/seeds", state_dir);
	struct reuse_seeds_conf sc = {
		.paths = ra->seeds.v,
		.npaths = ra->seeds.n,
		.chunk_size = snap_fidx_chunk_size(repo_archive_fidx(a)),
		.key = repo_archive_key(a),
		.cache_dir = cache,
		.lock_wait_ms = 5000,
	};
	int ret = reuse_seeds_open(&sc, out);

	free(cache);
	return ret;
}

/* The work itself, once everything is open. */
static int run(bool verify, struct cli *c, const struct restore_args *ra,
	       struct repo_snapshot *snap, struct repo_archive *a,
	       struct reuse_seeds *rs, const char *dest,
	       const char *state_dir)
{
	int ret;

	if (verify) {
		struct verify_conf vc = {
			.archive = a,
			.image = dest,
			.threads = 2,
			.progress = progress_mode_for(
				ra->format != CLI_FORMAT_TEXT, c->quiet),
		};

		ret = verify_run(&vc);
		if (!ret && !c->quiet)
			log_info("verify: '%s' matches %s/%s", vc.image,
				 repo_snapshot_path(snap), repo_archive_name(a));
		return ret;
	}
	return restore_run(&(struct restore_conf){
		.archive = a,
		.target = dest,
		.threads = store_parallelism(c->s, c->store.connections),
		.target_zeroed = ra->target_zeroed,
		.overwrite = ra->overwrite,
		.in_place = ra->in_place,
		.seeds = rs,
		.state_dir = state_dir,
		.quiet = c->quiet,
		.progress = progress_mode_for(ra->format != CLI_FORMAT_TEXT,
					      c->quiet),
	});
}

/* REPO, with *@args at SNAPSHOT ARCHIVE DEST; or NULL, the usage
 * error said. */
static const char *positionals(const char *cmdname, bool verify,
			       const struct restore_args *ra, int nargs,
			       char **argv, char ***args)
{
	int shift;
	const char *repo = cli_repo_arg(nargs, 4, argv + 1, &shift);

	if (!repo) {
		opt_usage_error(cmdname, "needs REPO SNAPSHOT ARCHIVE %s (or "
				"PBS_REPOSITORY)", verify ? "IMAGE" : "TARGET");
		return NULL;
	}
	*args = argv + 1 + shift;
	if (ra->format != CLI_FORMAT_TEXT && !verify &&
	    !strcmp((*args)[2], "-")) {
		opt_usage_error(cmdname, "standard output is the image: no "
				"JSON progress on it");
		return NULL;
	}
	if (ra->in_place && (ra->overwrite || !strcmp((*args)[2], "-"))) {
		opt_usage_error(cmdname, "--in-place writes over what TARGET "
				"holds: not with --overwrite or '-'");
		return NULL;
	}
	return repo;
}

/* Is @name a blob of @snap ("qemu-server.conf[.blob]")? */
static bool is_blob(const struct repo_snapshot *snap, const char *name)
{
	size_t len = strlen(name);
	char *b;
	bool yes;

	if (len > 5 && !strcmp(name + len - 5, ".blob"))
		return true;
	b = xasprintf("%s.blob", name);
	yes = snap_manifest_find(repo_snapshot_manifest(snap), b) != NULL;
	free(b);
	return yes;
}

/* A blob archive into @dest ('-': stdout), or compared with it. */
static int blob_run(bool verify, const struct restore_args *ra,
		    struct repo_snapshot *snap, const char *name,
		    const char *dest)
{
	uint8_t *data = NULL;
	uint8_t *have = NULL;
	size_t len = 0;
	size_t hlen = 0;
	struct stat sb;
	int ret;

	ret = repo_read_blob(snap, name, &data, &len);
	if (ret)
		return ret;
	if (verify) {
		ret = read_file(dest, SNAP_MAX_BLOB_SIZE, &have, &hlen);
		if (ret)
			log_err("verify: cannot read '%s': %s", dest,
				strerror(-ret));
		else if (hlen != len || memcmp(have, data, len)) {
			log_err("verify: '%s' differs from blob '%s' of %s",
				dest, name, repo_snapshot_path(snap));
			ret = -EBADMSG;
		} else
			log_info("verify: '%s' matches blob '%s'", dest, name);
	} else if (!strcmp(dest, "-")) {
		ret = write_full(STDOUT_FILENO, data, len);
		if (ret)
			log_err("restore: cannot write to standard output: %s",
				strerror(-ret));
	} else if (!lstat(dest, &sb) && !S_ISREG(sb.st_mode)) {
		/* A blob goes to a file: never over a link, device, FIFO. */
		log_err("restore: cannot write '%s': not a regular file (a "
			"configuration is written to a new or existing file)",
			dest);
		ret = -EINVAL;
	} else if (!lstat(dest, &sb) && sb.st_size && !ra->overwrite) {
		log_err("restore: cannot write '%s': it holds data "
			"(--overwrite replaces it)", dest);
		ret = -EEXIST;
	} else {
		ret = lstat(dest, &sb) ? write_file_new(dest, data, len, 0600) :
					 write_file_atomic(dest, data, len, 0600);
		if (ret)
			log_err("restore: cannot write '%s': %s", dest,
				strerror(-ret));
	}
	free(have);
	free(data);
	return ret;
}

static int restore_verify(int argc, char **argv, bool verify)
{
	const char *cmdname = verify ? "verify" : "restore";
	struct repo_snapshot *snap = NULL;
	struct repo_archive *a = NULL;
	struct restore_args ra = { 0 };
	struct reuse_seeds *rs = NULL;
	char *state_dir = NULL;
	struct cli c;
	int ret = 0;
	const char *repo;
	char **args;
	int nargs;

	cli_init(&c);
	const struct opt restore_opts[] = {
		OPT_BOOL(0, "overwrite", &ra.overwrite,
			 "restore over a TARGET that holds data (a file\n"
			 "is replaced once the restore is complete)"),
		OPT_BOOL(0, "target-zeroed", &ra.target_zeroed,
			 "block device already reads zeros: skip\n"
			 "zero chunks"),
		OPT_BOOL(0, "in-place", &ra.in_place,
			 "TARGET holds an older version of the disk:\n"
			 "only chunks that differ are fetched, written\n"
			 "in TARGET itself"),
		OPT_LIST("seed", &ra.seeds, "PATH",
			 "a file or device that may hold chunks of\n"
			 "the disk, read instead of fetched (repeatable)"),
		OPT_CALLBACK(0, "output-format", &ra.format, "FORMAT",
			     cli_opt_output_format,
			     "text (a progress bar on a terminal), json\n"
			     "(progress as JSON lines) or json-pretty"),
		OPT_INCLUDE(cli_repo_opts(&c), "repository options:"),
		OPT_END(),
	};
	const struct opt verify_opts[] = {
		OPT_CALLBACK(0, "output-format", &ra.format, "FORMAT",
			     cli_opt_output_format,
			     "text (a progress bar on a terminal), json\n"
			     "(progress as JSON lines) or json-pretty"),
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

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		goto out;
	repo = positionals(cmdname, verify, &ra, nargs, argv, &args);
	if (!repo) {
		ret = EXIT_USAGE;
		goto out;
	}
	state_dir = cli_default_dir("PBSLM_STATE_DIR", "state");
	if (!state_dir)
		state_dir = xstrdup(".");
	ret = cli_open_repo(&c, repo);
	if (!ret)
		ret = repo_snapshot_open(c.s, c.ns, args[0], c.key, &snap);
	if (!ret && is_blob(snap, args[1])) {
		ret = cli_exit_code(blob_run(verify, &ra, snap, args[1],
					     args[2]));
		goto out;
	}
	if (!ret)
		ret = repo_archive_open(snap, args[1], &a);
	if (!ret && ra.seeds.n)
		ret = open_seeds(&ra, a, state_dir, &rs);
	if (!ret)
		ret = run(verify, &c, &ra, snap, a, rs, args[2], state_dir);
	ret = cli_exit_code(ret);
out:
	reuse_seeds_close(rs);
	opt_list_release(&ra.seeds);
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
