/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount pack: raw images into a snapshot in PBS layout.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

static const char pack_help[] =
	"usage: pbs-livemount pack [options] IMAGE[:NAME]... DATASTORE\n"
	"\n"
	"Write a snapshot of raw images in PBS datastore layout.  Each IMAGE\n"
	"becomes NAME.img.fidx (default: the file name without .img/.raw).\n"
	"DATASTORE is a directory (created as PBS creates one) or\n"
	"s3://BUCKET/NAME (with --s3-endpoint, --s3-region, as for reading).\n"
	"\n"
	"  --type TYPE             vm (default), ct or host\n"
	"  --id ID                 backup id (required), e.g. 100\n"
	"  --time TIME             backup time, epoch or YYYY-MM-DDTHH:MM:SSZ\n"
	"                          (default: now)\n"
	"  --ns NS                 namespace (a/b), created as needed\n"
	"  --chunk-size SIZE       power of two, 4K..16M (default 4M)\n"
	"  --lazy-chunk-dirs       a new datastore gets .chunks/XXXX as chunks\n"
	"                          need them, not all 65,536 (scratch stores)\n"
	"  --keyfile FILE          encrypt with this key (passphrase as for\n"
	"                          restore)\n"
	"  --passphrase-file FILE, --passphrase-fd N\n"
	"  -q, --quiet             only errors\n";

int cmd_pack(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "id", required_argument, NULL, OPT_ID },
		{ "time", required_argument, NULL, OPT_TIME },
		{ "chunk-size", required_argument, NULL, OPT_CHUNK_SIZE },
		{ "lazy-chunk-dirs", no_argument, NULL, OPT_LAZY_DIRS },
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct pack_conf conf = {
		.type = "vm",
		.time = time(NULL),
		.chunk_size = SNAP_DEFAULT_CHUNK_SIZE,
	};
	struct pack_image *imgs = NULL;
	char **paths = NULL;
	char **names = NULL;
	struct cli c;
	bool handled;
	uint64_t v;
	int nimg = 0;
	int ret = 0;
	int opt;

	cli_init(&c);
	while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		ret = cli_parse_repo_opt(&c, "pack", opt, optarg, &handled);
		if (ret)
			goto out;
		if (handled)
			continue;
		switch (opt) {
		case 'h':
			fputs(pack_help, stdout);
			goto out;
		case OPT_TYPE:
			conf.type = optarg;
			break;
		case OPT_ID:
			conf.id = optarg;
			break;
		case OPT_TIME:
			if (!snap_parse_time(optarg, &conf.time))
				break;
			if (parse_u64(optarg, &v) || v > INT64_MAX) {
				ret = cli_usage_error("pack", "bad --time '%s'",
						  optarg);
				goto out;
			}
			conf.time = (int64_t)v;
			break;
		case OPT_CHUNK_SIZE:
			if (parse_size(optarg, &v) || v < 4096 ||
			    v > SNAP_MAX_CHUNK_SIZE || (v & (v - 1))) {
				ret = cli_usage_error("pack", "bad --chunk-size '%s'",
						  optarg);
				goto out;
			}
			conf.chunk_size = v;
			break;
		case OPT_LAZY_DIRS:
			conf.lazy_chunk_dirs = true;
			break;
		default:
			ret = EXIT_USAGE;
			goto out;
		}
	}
	if (argc - optind < 2) {
		ret = cli_usage_error("pack", "needs IMAGE... DATASTORE");
		goto out;
	}
	if (!conf.id || !snap_is_safe_id(conf.id)) {
		ret = cli_usage_error("pack", "--id must be a plain name");
		goto out;
	}
	if (!snap_is_backup_type(conf.type)) {
		ret = cli_usage_error("pack", "--type must be vm, ct or host");
		goto out;
	}
	nimg = argc - optind - 1;
	imgs = xcalloc(nimg, sizeof(*imgs));
	paths = xcalloc(nimg, sizeof(*paths));
	names = xcalloc(nimg, sizeof(*names));
	for (int i = 0; i < nimg; i++) {
		if (pack_archive_name(argv[optind + i], &paths[i], &names[i])) {
			ret = EXIT_FAILURE;
			nimg = i;
			goto out;
		}
		for (int k = 0; k < i; k++) {
			if (!strcmp(names[k], names[i])) {
				ret = cli_usage_error("pack", "two images named '%s'",
						  names[i]);
				nimg = i + 1;
				goto out;
			}
		}
		imgs[i].path = paths[i];
		imgs[i].archive = names[i];
	}
	if (!strncmp(argv[argc - 1], "s3://", 5)) {
		/* Into a bucket: the S3 store writes it (key loaded too). */
		ret = cli_open_repo(&c, argv[argc - 1]);
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
	conf.datastore = argv[argc - 1];
	conf.ns = c.ns;
	conf.key = c.key;
	conf.quiet = c.quiet;
	ret = cli_exit_code(pack_run(&conf));
out:
	for (int i = 0; i < nimg; i++) {
		free(paths[i]);
		free(names[i]);
	}
	free(paths);
	free(names);
	free(imgs);
	cli_release(&c);
	return ret;
}
