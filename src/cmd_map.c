/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount map and unmap: a live mount of one archive with its
 * image attached to a loop device, for what wants a block device
 * (proxmox-backup-client's map).  map runs `mount` (this binary, its
 * options as given) on a directory of its own, then LOOP_CONFIGURE with
 * direct I/O; unmap detaches the device, then unmounts.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "mountpoint.h"
#include "snap.h"
#include "util.h"
#include "banned.h"

#define LOOP_MAJOR_NR 7

static const char map_help[] =
	"usage: pbs-livemount map [mount options] REPO SNAPSHOT ARCHIVE\n"
	"\n"
	"Mount ARCHIVE of SNAPSHOT live (the options are mount's: --target,\n"
	"--target-dir, --read-only, --verify, ...; see 'pbs-livemount mount\n"
	"--help') on a directory of its own under /run/pbs-livemount/map, and\n"
	"attach its image to a loop device with direct I/O.  Prints the\n"
	"device.  ARCHIVE comes last.  'pbs-livemount unmap DEVICE' detaches\n"
	"it and ends the mount.\n";

static const char unmap_help[] =
	"usage: pbs-livemount unmap DEVICE\n"
	"\n"
	"Detach a loop device that 'pbs-livemount map' attached and end its\n"
	"mount (the restore state is committed; a mount with a target resumes\n"
	"where it was when mapped again).\n";

/* Where map's mounts live: /run/pbs-livemount/map, or the user's. */
static char *map_dir(void)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (!geteuid() || !xdg || *xdg != '/')
		return xstrdup("/run/pbs-livemount/map");
	return xasprintf("%s/pbs-livemount/map", xdg);
}

/* Run this binary with @argv; its exit status, or -errno. */
static int run_self(char **argv)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* fusermount3 -u @mnt, then wait (30 s at most) until it is gone. */
static int unmount_and_wait(const char *mnt)
{
	char *const argv[] = { (char *)"fusermount3", (char *)"-u",
			       (char *)mnt, NULL };
	unsigned int conn;
	int status = -1;
	pid_t pid = fork();

	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		log_err("unmap: cannot unmount '%s' (fusermount3 -u failed)",
			mnt);
		return -EBUSY;
	}
	for (int i = 0; i < 300; i++) {
		if (mountpoint_fuse_conn(mnt, &conn) == -ENOENT &&
		    !mountpoint_pid(mnt))
			return 0;
		sleep_ms(100);
	}
	return 0;	/* unmounted; its daemon ends on its own */
}

/*
 * Attach @file to a free loop device: direct I/O, read-only when
 * @ro.  Its path into @dev; 0 or -errno (logged).
 */
static int loop_attach(const char *file, bool ro, const char *label,
		       char *dev, size_t devlen)
{
	struct loop_config lc = { 0 };
	int ctl;
	int bfd;
	int ret = -EBUSY;

	bfd = open(file, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (bfd < 0) {
		ret = -errno;
		log_err("map: cannot open '%s': %s", file, strerror(errno));
		return ret;
	}
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		ret = -errno;
		log_err("map: cannot open /dev/loop-control: %s (the loop "
			"module?)", strerror(errno));
		close(bfd);
		return ret;
	}
	lc.fd = (uint32_t)bfd;
	lc.info.lo_flags = LO_FLAGS_DIRECT_IO | (ro ? LO_FLAGS_READ_ONLY : 0);
	snprintf((char *)lc.info.lo_file_name, LO_NAME_SIZE, "%s", label);
	/* Another process may take the free device first: try again. */
	for (int tries = 0; tries < 20 && ret == -EBUSY; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		int fd;

		if (n < 0) {
			ret = -errno;
			break;
		}
		snprintf(dev, devlen, "/dev/loop%d", n);
		fd = open(dev, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			break;
		}
		ret = ioctl(fd, LOOP_CONFIGURE, &lc) ? -errno : 0;
		close(fd);
	}
	if (ret)
		log_err("map: cannot attach '%s' to a loop device: %s", file,
			strerror(-ret));
	close(ctl);
	close(bfd);
	return ret;
}

/* Is direct I/O on for @dev ("/dev/loopN")? */
static bool loop_dio(const char *dev)
{
	char *path = xasprintf("/sys/block/%s/loop/dio", dev + 5);
	uint8_t *buf = NULL;
	size_t len = 0;
	bool on;

	on = !read_file_any(path, 16, &buf, &len) && len && buf[0] == '1';
	free(buf);
	free(path);
	return on;
}

int cmd_map(int argc, char **argv)
{
	char **margv = xcalloc(argc + 5, sizeof(*margv));
	const char *archive = argv[argc - 1];
	char *dir = map_dir();
	char *mnt = NULL;
	char *stem = NULL;
	char *file = NULL;
	char label[LO_NAME_SIZE];
	char dev[32];
	bool ro = false;
	int n = 0;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(map_help, stdout);
			ret = 0;
			goto out;
		}
		if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--foreground")) {
			ret = opt_usage_error("map", "a map's mount runs in "
					      "the background: not with %s",
					      argv[i]);
			goto out;
		}
		if (!strcmp(argv[i], "--read-only"))
			ro = true;
	}
	if (argc < 3 || archive[0] == '-') {
		ret = opt_usage_error("map", "needs REPO SNAPSHOT ARCHIVE, "
				      "ARCHIVE last");
		goto out;
	}
	ret = mkdir_p(dir, 0700);
	if (ret) {
		log_err("map: cannot create '%s': %s", dir, strerror(-ret));
		ret = EXIT_FAILURE;
		goto out;
	}
	mnt = xasprintf("%s/XXXXXX", dir);
	if (!mkdtemp(mnt)) {
		log_err("map: cannot create a mount point in '%s': %s", dir,
			strerror(errno));
		ret = EXIT_FAILURE;
		goto out;
	}
	/* pbs-livemount mount --archive ARCHIVE [options] REPO SNAPSHOT MNT */
	margv[n++] = (char *)"pbs-livemount";
	margv[n++] = (char *)"mount";
	margv[n++] = (char *)"--archive";
	margv[n++] = (char *)archive;
	for (int i = 1; i < argc - 1; i++)
		margv[n++] = argv[i];
	margv[n++] = mnt;
	ret = run_self(margv);
	if (ret) {
		log_err("map: the mount failed (above)");
		rmdir(mnt);
		ret = EXIT_FAILURE;
		goto out;
	}
	stem = snap_archive_stem(archive);
	file = xasprintf("%s/%s.img", mnt, stem);
	snprintf(label, sizeof(label), "pbs-livemount %s", stem);
	ret = loop_attach(file, ro, label, dev, sizeof(dev));
	if (ret) {
		unmount_and_wait(mnt);
		rmdir(mnt);
		ret = EXIT_FAILURE;
		goto out;
	}
	if (!loop_dio(dev))
		log_warn("map: %s: direct I/O not taken by the kernel; "
			 "buffered", dev);
	log_info("map: %s is '%s' (mounted on %s)", dev, file, mnt);
	printf("%s\n", dev);
	ret = fflush(stdout) ? EXIT_FAILURE : 0;
out:
	free(margv);
	free(dir);
	free(mnt);
	free(stem);
	free(file);
	return ret;
}

/* The image behind loop device @dev if map made it; else NULL (said). */
static char *mapped_file(const char *dev, const char *name)
{
	char *path = xasprintf("/sys/block/%s/loop/backing_file", name);
	char *dir = map_dir();
	uint8_t *buf = NULL;
	size_t len = 0;
	char *file = NULL;

	if (read_file_any(path, PATH_MAX, &buf, &len) || !len) {
		log_err("unmap: '%s' is not attached to anything", dev);
		goto out;
	}
	while (len && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (strncmp((char *)buf, dir, strlen(dir)) ||
	    buf[strlen(dir)] != '/') {
		log_err("unmap: '%s' holds '%s', not a pbs-livemount map (under "
			"%s)", dev, (char *)buf, dir);
		goto out;
	}
	file = (char *)buf;
	buf = NULL;
out:
	free(buf);
	free(path);
	free(dir);
	return file;
}

int cmd_unmap(int argc, char **argv)
{
	struct stat sb;
	char *file = NULL;
	char *slash;
	char name[32];
	int fd = -1;
	int ret = EXIT_FAILURE;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(unmap_help, stdout);
		return 0;
	}
	if (argc != 2)
		return opt_usage_error("unmap", "needs DEVICE");
	if (stat(argv[1], &sb) || !S_ISBLK(sb.st_mode) ||
	    major(sb.st_rdev) != LOOP_MAJOR_NR) {
		log_err("unmap: '%s' is not a loop device", argv[1]);
		return EXIT_FAILURE;
	}
	snprintf(name, sizeof(name), "loop%u", minor(sb.st_rdev));
	file = mapped_file(argv[1], name);
	if (!file)
		goto out;
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, LOOP_CLR_FD) < 0) {
		log_err("unmap: cannot detach '%s': %s", argv[1],
			strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	/* Held open elsewhere, the kernel detaches it at the last close. */
	for (int i = 0; i < 50; i++) {
		char *bf = xasprintf("/sys/block/%s/loop/backing_file", name);
		bool gone = access(bf, F_OK) != 0;

		free(bf);
		if (gone)
			break;
		if (i == 49) {
			slash = strrchr(file, '/');
			*slash = '\0';
			log_err("unmap: '%s' is still open elsewhere: the kernel "
				"detaches it at its last close; then end its "
				"mount with 'fusermount3 -u %s'", argv[1], file);
			goto out;
		}
		sleep_ms(100);
	}
	slash = strrchr(file, '/');
	*slash = '\0';
	if (unmount_and_wait(file))
		goto out;
	rmdir(file);
	log_info("unmap: %s detached, %s unmounted", argv[1], file);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(file);
	return ret;
}
