/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount vm-config: a start line (QEMU or libvirt) for the VM of
 * a mount, from the configuration its backup carries.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "log.h"
#include "pve_conf.h"
#include "util.h"
#include "vmgen.h"
#include "banned.h"

#define CONF_MAX (1u << 20)

static const char vmconfig_desc[] =
	"Print a start line for the VM whose disks DIR holds: a live mount\n"
	"(its qemu-server.conf is the backup's configuration) or any\n"
	"directory with qemu-server.conf and the images named as in a mount\n"
	"(drive-scsi0.img).  --format qemu (the default) gives a shell script\n"
	"that runs QEMU (arguments to it are added to QEMU's), --format\n"
	"libvirt a domain XML for 'virsh define'.  Memory, CPUs, machine\n"
	"type, firmware (SeaBIOS, or OVMF with the EFI disk's variables),\n"
	"disks on their buses in PVE's boot order and network cards with\n"
	"their MAC addresses come from the configuration.  What belongs to\n"
	"the PVE host (bridges, passthrough, TPM) is left out or stood in\n"
	"for: each such case is a NOTE in the output and on stderr.\n";

static int opt_format(void *value, const char *arg, char *why, size_t len)
{
	if (!strcmp(arg, "qemu"))
		*(enum vmgen_format *)value = VMGEN_QEMU;
	else if (!strcmp(arg, "libvirt"))
		*(enum vmgen_format *)value = VMGEN_LIBVIRT;
	else {
		snprintf(why, len, "'%s' is not qemu or libvirt", arg);
		return -EINVAL;
	}
	return 0;
}

static int opt_accel(void *value, const char *arg, char *why, size_t len)
{
	if (strcmp(arg, "kvm") && strcmp(arg, "tcg")) {
		snprintf(why, len, "'%s' is not kvm or tcg", arg);
		return -EINVAL;
	}
	*(int *)value = !strcmp(arg, "kvm");
	return 0;
}

/* KVM when this host can open it. */
static bool have_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* The mount's snapshot ("vm/100/...") from DIR/.status, or NULL. */
static char *mount_snapshot(const char *dir)
{
	char *path = xasprintf("%s/.status", dir);
	struct json_object *doc;
	struct json_object *v;
	uint8_t *buf = NULL;
	size_t len = 0;
	char *snap = NULL;

	if (!read_file_any(path, 1 << 20, &buf, &len)) {
		doc = json_tokener_parse((const char *)buf);
		if (doc && json_object_object_get_ex(doc, "snapshot", &v) &&
		    json_object_is_type(v, json_type_string))
			snap = xstrdup(json_object_get_string(v));
		json_object_put(doc);
	}
	free(buf);
	free(path);
	return snap;
}

int cmd_vmconfig(int argc, char **argv)
{
	struct vmgen_conf vc = { .format = VMGEN_QEMU };
	const char *config = NULL;
	struct pve_conf *pc = NULL;
	char **notes = NULL;
	size_t nnotes = 0;
	char *cpath = NULL;
	char *text = NULL;
	char *out = NULL;
	char *snap = NULL;
	char *dir = NULL;
	size_t len = 0;
	char err[200];
	int kvm = -1;
	int nargs;
	int ret = 0;

	const struct opt opts[] = {
		OPT_CALLBACK(0, "format", &vc.format, "FORMAT", opt_format,
			     "qemu (a shell script) or libvirt (domain XML)"),
		OPT_CALLBACK(0, "accel", &kvm, "ACCEL", opt_accel,
			     "kvm or tcg (default: kvm when /dev/kvm opens)"),
		OPT_STRING(0, "cutover-qmp", &vc.qmp, "SOCKET",
			   "QEMU: a monitor socket for the mount's\n"
			   "--cutover-qmp"),
		OPT_STRING(0, "name", &vc.name, "NAME",
			   "the VM's name (default: the configuration's)"),
		OPT_STRING(0, "config", &config, "FILE",
			   "the configuration (default: DIR/qemu-server.conf)"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "vm-config",
		.usage = "[options] DIR",
		.desc = vmconfig_desc,
		.opts = opts,
	};

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		return ret;
	if (nargs != 1)
		return opt_usage_error("vm-config", "needs DIR (a mount point)");
	dir = abs_path(argv[1]);
	cpath = config ? xstrdup(config) :
			 xasprintf("%s/qemu-server.conf", dir);
	ret = read_file(cpath, CONF_MAX, (uint8_t **)&text, &len);
	if (ret) {
		char *pct = xasprintf("%s/pct.conf", dir);

		if (!config && !access(pct, F_OK))
			log_err("vm-config: '%s' holds a container (pct.conf): "
				"start lines are made for VMs", dir);
		else
			log_err("vm-config: cannot read '%s': %s", cpath,
				ret == -ENOENT ? "no such file (a backup made "
				"without its configuration?)" : strerror(-ret));
		free(pct);
		goto out;
	}
	ret = pve_conf_parse(text, len, &pc, err, sizeof(err));
	if (ret) {
		log_err("vm-config: cannot read '%s': %s", cpath, err);
		goto out;
	}
	snap = mount_snapshot(dir);
	vc.conf = pc;
	vc.dir = dir;
	vc.snapshot = snap;
	vc.kvm = kvm < 0 ? have_kvm() : kvm;
	ret = vmgen_run(&vc, &out, &notes, &nnotes);
	for (size_t i = 0; i < nnotes; i++)
		log_msg(ret ? LOG_ERR : LOG_NOTICE, "vm-config: %s%s",
			ret ? "" : "NOTE ", notes[i]);
	if (!ret) {
		ret = write_full(STDOUT_FILENO, out, strlen(out));
		if (ret)
			log_err("vm-config: cannot write: %s", strerror(-ret));
	}
out:
	vmgen_free_notes(notes, nnotes);
	pve_conf_free(pc);
	free(out);
	free(text);
	free(snap);
	free(cpath);
	free(dir);
	return ret ? EXIT_FAILURE : 0;
}
