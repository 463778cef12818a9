/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount pack: raw images into a snapshot in PBS layout.
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
#include "pack.h"
#include "snap.h"
#include "util.h"
#include "banned.h"

static const char pack_desc[] =
	"Write a snapshot of raw images in PBS datastore layout.  Each IMAGE\n"
	"becomes NAME.img.fidx (default: the file name without .img/.raw).\n"
	"DATASTORE is a directory (created as PBS creates one) or\n"
	"s3://BUCKET/NAME (with --s3-endpoint, --s3-region, as for reading).\n";

/* --time: epoch seconds or YYYY-MM-DDTHH:MM:SSZ. */
static int opt_time(void *value, const char *arg, char *why, size_t len)
{
	uint64_t v;

	if (!snap_parse_time(arg, value))
		return 0;
	if (parse_u64(arg, &v) || v > INT64_MAX) {
		snprintf(why, len, "bad time '%s' (epoch seconds or "
			 "YYYY-MM-DDTHH:MM:SSZ)", arg);
		return -EINVAL;
	}
	*(int64_t *)value = (int64_t)v;
	return 0;
}

/* --chunk-size: a power of two from 4K to the largest PBS allows. */
static int opt_chunk_size(void *value, const char *arg, char *why,
			  size_t len)
{
	uint64_t v;

	if (parse_size(arg, &v) || v < 4096 || v > SNAP_MAX_CHUNK_SIZE ||
	    (v & (v - 1))) {
		snprintf(why, len, "'%s' is not a power of two from 4K to 16M",
			 arg);
		return -EINVAL;
	}
	*(uint64_t *)value = v;
	return 0;
}

/* --id and --type as pack needs them: 0 or the usage error's code. */
static int check_ids(const struct pack_conf *conf)
{
	if (!conf->id)
		return opt_usage_error("pack", "--id is required (the backup "
				       "id, e.g. --id 100)");
	if (!snap_is_safe_id(conf->id))
		return opt_usage_error("pack", "--id must be a plain name, not "
				       "'%s'", conf->id);
	if (!snap_is_backup_type(conf->type))
		return opt_usage_error("pack", "--type must be vm, ct or host");
	return 0;
}

/* IMAGE[:NAME] arguments @args[@n] into @imgs (paths and names into
 * @paths and @names, *@made of each): 0 or an exit code. */
static int image_args(char **args, int n, struct pack_image *imgs,
		      char **paths, char **names, int *made)
{
	for (int i = 0; i < n; i++) {
		if (pack_archive_name(args[i], &paths[i], &names[i]))
			return EXIT_FAILURE;
		*made = i + 1;
		for (int k = 0; k < i; k++)
			if (!strcmp(names[k], names[i]))
				return opt_usage_error("pack", "two images "
						       "named '%s'", names[i]);
		imgs[i].path = paths[i];
		imgs[i].archive = names[i];
	}
	return 0;
}

/* --config and --blob as the blobs of @conf (*@out: theirs to free). */
static int blob_list(struct pack_conf *conf, const char *config,
		     const struct opt_list *args, struct pack_blob **out)
{
	struct pack_blob *b = xcalloc(args->n + 1, sizeof(*b));
	int ret = 0;

	*out = b;
	if (config) {
		if (strcmp(conf->type, "vm") && strcmp(conf->type, "ct"))
			return opt_usage_error("pack", "--config is a vm's or "
					       "a ct's configuration");
		b[0].path = xstrdup(config);
		b[0].name = xstrdup(strcmp(conf->type, "vm") ?
				    "pct.conf.blob" : "qemu-server.conf.blob");
		conf->nblobs++;
	}
	for (size_t i = 0; !ret && i < args->n; i++) {
		char *path = NULL;
		char *name = NULL;

		ret = pack_blob_name(args->v[i], &path, &name);
		for (unsigned int j = 0; !ret && j < conf->nblobs; j++) {
			if (!strcmp(b[j].name, name)) {
				ret = opt_usage_error("pack", "blob '%s' named "
						      "twice", name);
				free(path);
				free(name);
			}
		}
		if (!ret) {
			b[conf->nblobs].path = path;
			b[conf->nblobs].name = name;
			conf->nblobs++;
		}
	}
	conf->blobs = b;
	return ret ? EXIT_USAGE : 0;
}

int cmd_pack(int argc, char **argv)
{
	struct pack_conf conf = {
		.type = "vm",
		.time = time(NULL),
		.chunk_size = SNAP_DEFAULT_CHUNK_SIZE,
	};
	struct pack_image *imgs = NULL;
	struct pack_blob *blobs = NULL;
	struct opt_list blob_args = { 0 };
	const char *config = NULL;
	enum cli_format format = CLI_FORMAT_TEXT;
	char **paths = NULL;
	char **names = NULL;
	struct cli c;
	const char *ds;
	int nimgs;
	int nimg = 0;
	int nargs;
	int ret = 0;

	cli_init(&c);
	const struct opt opts[] = {
		OPT_STRING(0, "type", &conf.type, "TYPE",
			   "vm (default), ct or host"),
		OPT_STRING(0, "id", &conf.id, "ID",
			   "backup id (required), e.g. 100"),
		OPT_CALLBACK(0, "time", &conf.time, "TIME", opt_time,
			     "backup time, epoch or YYYY-MM-DDTHH:MM:SSZ\n"
			     "(default: now)"),
		OPT_CALLBACK(0, "chunk-size", &conf.chunk_size, "SIZE",
			     opt_chunk_size,
			     "power of two, 4K..16M (default 4M)"),
		OPT_STRING(0, "config", &config, "FILE",
			   "the guest's configuration, stored as\n"
			   "qemu-server.conf.blob (vm) or pct.conf.blob (ct)"),
		OPT_LIST("blob", &blob_args, "FILE:NAME",
			 "FILE stored as blob archive NAME (ending in\n"
			 ".blob; repeatable)"),
		OPT_CALLBACK(0, "output-format", &format, "FORMAT",
			     cli_opt_output_format,
			     "text (a progress bar on a terminal), json\n"
			     "(progress as JSON lines) or json-pretty"),
		OPT_BOOL(0, "lazy-chunk-dirs", &conf.lazy_chunk_dirs,
			 "a new datastore gets .chunks/XXXX as chunks\n"
			 "need them, not all 65,536 (scratch stores)"),
		OPT_INCLUDE(cli_repo_opts(&c), "repository options:"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "pack",
		.usage = "[options] --id ID IMAGE[:NAME]... DATASTORE",
		.desc = pack_desc,
		.opts = opts,
	};

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		goto out;
	/* With --repository, every argument is an image. */
	ds = cli_repository();
	nimgs = ds ? nargs : nargs - 1;
	if (!ds)
		ds = argv[nargs];
	if (nimgs < 1) {
		ret = opt_usage_error("pack", "needs IMAGE... DATASTORE");
		goto out;
	}
	ret = check_ids(&conf);
	if (ret)
		goto out;
	imgs = xcalloc(nimgs, sizeof(*imgs));
	paths = xcalloc(nimgs, sizeof(*paths));
	names = xcalloc(nimgs, sizeof(*names));
	ret = image_args(argv + 1, nimgs, imgs, paths, names, &nimg);
	if (ret)
		goto out;
	ret = blob_list(&conf, config, &blob_args, &blobs);
	if (ret)
		goto out;
	if (!strncmp(ds, "s3://", 5)) {
		/* Into a bucket: the S3 store writes it (key loaded too). */
		ret = cli_open_repo(&c, ds);
		conf.dest = c.s;
	} else {
		ret = cli_load_key(&c);
	}
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	conf.images = imgs;
	conf.nimages = nimg;
	conf.datastore = ds;
	conf.ns = c.ns;
	conf.key = c.key;
	conf.quiet = c.quiet;
	conf.progress = progress_mode_for(format != CLI_FORMAT_TEXT, c.quiet);
	ret = cli_exit_code(pack_run(&conf));
out:
	for (int i = 0; i < nimg; i++) {
		free(paths[i]);
		free(names[i]);
	}
	free(paths);
	free(names);
	free(imgs);
	for (unsigned int i = 0; blobs && i < conf.nblobs; i++) {
		free((char *)blobs[i].path);
		free((char *)blobs[i].name);
	}
	free(blobs);
	opt_list_release(&blob_args);
	cli_release(&c);
	return ret;
}
