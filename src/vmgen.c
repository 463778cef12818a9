/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vm-config's generator: a PVE configuration read into a small model of
 * the machine (build_vm), then written as a QEMU command line or a
 * libvirt domain.  The model follows what qemu-server makes of the same
 * keys (PVE/QemuServer.pm config_to_command, CPUConfig.pm, Drive.pm)
 * where it matters to boot: machine family, firmware, CPU model and
 * topology, memory, each disk on its bus with PVE's cache mode and boot
 * order, network cards with their MAC addresses.  Host plumbing
 * (bridges, passthrough, TPM, serial sockets) is a note, never guessed.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler.h"
#include "pve_conf.h"
#include "util.h"
#include "vmgen.h"
#include "banned.h"

#define VARS_4M 540672ull	/* OVMF_VARS_4M.fd: efitype=4m */
#define VARS_2M 131072ull	/* OVMF_VARS.fd: the older 2m */

enum bus { BUS_IDE, BUS_SATA, BUS_SCSI, BUS_VIRTIO, BUS_N };
static const char *const bus_name[BUS_N] = { "ide", "sata", "scsi",
					     "virtio" };
static const unsigned int bus_max[BUS_N] = { 4, 6, 31, 16 };

struct disk {
	enum bus bus;
	unsigned int index;
	char virtdev[16];
	char *path;
	char cache[16];
	char aio[16];
	bool discard;
	bool ro;
	char serial[64];
	int boot;		/* 0: none, else PVE's order from 1 */
};

struct nic {
	unsigned int index;
	char model[32];
	char mac[32];
	int boot;
};

struct vm {
	char name[128];
	unsigned long long mem_mib;
	unsigned int sockets;
	unsigned int cores;
	char machine[8];	/* "pc" or "q35" */
	bool ovmf;
	char *efi_path;		/* the efidisk's image, or NULL */
	unsigned long long efi_vars;
	bool secboot;
	char cpu[64];
	char flags[512];	/* ",+aes,-pcid" */
	char vga[16];
	bool tablet;
	bool localtime;
	bool windows;
	char uuid[64];
	char vmgenid[64];
	char scsihw[32];
	struct disk disks[BUS_N * 32];
	size_t ndisks;
	struct nic nics[32];
	size_t nnics;
};

struct gen {
	const struct vmgen_conf *vc;
	struct vm vm;
	char **notes;
	size_t nnotes;
};

static void note(struct gen *g, const char *fmt, ...) PRINTF_FMT(2, 3);

static void note(struct gen *g, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s)
		return;
	g->notes = xrealloc(g->notes, (g->nnotes + 1) * sizeof(*g->notes));
	g->notes[g->nnotes++] = s;
}

void vmgen_free_notes(char **notes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(notes[i]);
	free(notes);
}

static bool stat_size(const char *path, unsigned long long *bytes)
{
	struct stat sb;

	if (stat(path, &sb) || !S_ISREG(sb.st_mode))
		return false;
	*bytes = (unsigned long long)sb.st_size;
	return true;
}

static bool image_size(const struct gen *g, const char *path,
		       unsigned long long *bytes)
{
	return (g->vc->size ? g->vc->size : stat_size)(path, bytes);
}

/* "scsi12" -> BUS_SCSI, 12; false for anything else. */
static bool parse_virtdev(const char *key, enum bus *bus, unsigned int *idx)
{
	for (int b = 0; b < BUS_N; b++) {
		size_t l = strlen(bus_name[b]);
		char *end;
		unsigned long v;

		if (strncmp(key, bus_name[b], l) || key[l] < '0' ||
		    key[l] > '9' || (key[l] == '0' && key[l + 1]))
			continue;
		v = strtoul(key + l, &end, 10);
		if (*end || v >= bus_max[b])
			return false;
		*bus = (enum bus)b;
		*idx = (unsigned int)v;
		return true;
	}
	return false;
}

/* The image of device @virtdev: its map's archive, else drive-DEV. */
static char *image_of(struct gen *g, const char *virtdev)
{
	const struct pve_map *m = pve_conf_find_map(g->vc->conf, virtdev);
	unsigned long long sz;
	char *path;

	if (m)
		path = xasprintf("%s/%s.img", g->vc->dir, m->archive);
	else
		path = xasprintf("%s/drive-%s.img", g->vc->dir, virtdev);
	if (!image_size(g, path, &sz)) {
		free(path);
		return NULL;
	}
	return path;
}

/* Device keys of the boot order, "order=scsi0;net0" or legacy. */
static void boot_order(struct gen *g, char order[][16], size_t *n)
{
	const char *boot = pve_conf_get(g->vc->conf, "boot");
	const char *bootdisk = pve_conf_get(g->vc->conf, "bootdisk");
	char val[512];

	*n = 0;
	if (boot && pve_prop(boot, "legacy", "order", val, sizeof(val))) {
		char *save = NULL;

		for (char *t = strtok_r(val, ";", &save); t && *n < 64;
		     t = strtok_r(NULL, ";", &save))
			snprintf(order[(*n)++], 16, "%s", t);
		return;
	}
	/* Legacy "boot: cdn": c is the bootdisk, n the first card. */
	if (!boot || !pve_prop(boot, "legacy", "legacy", val, sizeof(val)))
		snprintf(val, sizeof(val), "cdn");
	for (const char *p = val; *p && *n < 64; p++) {
		if (*p == 'c' && bootdisk)
			snprintf(order[(*n)++], 16, "%s", bootdisk);
		else if (*p == 'n')
			snprintf(order[(*n)++], 16, "net0");
	}
}

static int boot_index(char order[][16], size_t n, const char *dev)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(order[i], dev))
			return (int)i + 1;
	return 0;
}

static void add_disk(struct gen *g, const char *key, const char *val,
		     enum bus bus, unsigned int idx, int boot)
{
	struct vm *vm = &g->vm;
	struct disk *d;
	char v[256];
	char *path;

	if (pve_prop(val, "file", "media", v, sizeof(v)) &&
	    !strcmp(v, "cdrom")) {
		pve_prop(val, "file", "file", v, sizeof(v));
		note(g, "%s: a CD-ROM (%s), not in a backup: left out", key, v);
		return;
	}
	path = image_of(g, key);
	if (!path) {
		if (pve_prop(val, "file", "backup", v, sizeof(v)) &&
		    !strcmp(v, "0"))
			note(g, "%s: not in the backup (backup=0): left out",
			     key);
		else
			note(g, "%s: no image for it in '%s': left out", key,
			     g->vc->dir);
		return;
	}
	d = &vm->disks[vm->ndisks++];
	memset(d, 0, sizeof(*d));
	d->bus = bus;
	d->index = idx;
	snprintf(d->virtdev, sizeof(d->virtdev), "%s", key);
	d->path = path;
	d->boot = boot;
	/* PVE's default cache mode is none (O_DIRECT). */
	if (!pve_prop(val, "file", "cache", d->cache, sizeof(d->cache)))
		snprintf(d->cache, sizeof(d->cache), "none");
	if (!pve_prop(val, "file", "aio", d->aio, sizeof(d->aio)) ||
	    (!strcmp(d->aio, "native") && strcmp(d->cache, "none") &&
	     strcmp(d->cache, "directsync")))
		snprintf(d->aio, sizeof(d->aio), "threads");
	d->discard = pve_prop(val, "file", "discard", v, sizeof(v)) &&
		     !strcmp(v, "on");
	d->ro = pve_prop(val, "file", "ro", v, sizeof(v)) && !strcmp(v, "1");
	if (!pve_prop(val, "file", "serial", d->serial, sizeof(d->serial)))
		d->serial[0] = '\0';
}

static int cmp_disk(const void *a, const void *b)
{
	const struct disk *x = a;
	const struct disk *y = b;

	if (x->bus != y->bus)
		return x->bus < y->bus ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

static void add_nic(struct gen *g, const char *key, const char *val,
		    int boot)
{
	static const char *const models[] = { "virtio", "e1000", "e1000e",
		"rtl8139", "vmxnet3", "e1000-82540em", "e1000-82544gc",
		"e1000-82545em", "i82551", "i82557b", "i82559er", "ne2k_pci",
		"ne2k_isa", "pcnet" };
	struct nic *n;
	char bridge[64] = "";
	char tag[16] = "";
	char model[32];
	char mac[32] = "";

	if (g->vm.nnics >= sizeof(g->vm.nics) / sizeof(g->vm.nics[0]) ||
	    !pve_prop_key_at(val, 0, model, sizeof(model)))
		goto bad;
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		if (strcmp(models[i], model))
			continue;
		pve_prop(val, NULL, model, mac, sizeof(mac));
		n = &g->vm.nics[g->vm.nnics++];
		n->index = (unsigned int)strtoul(key + 3, NULL, 10);
		snprintf(n->model, sizeof(n->model), "%s", model);
		snprintf(n->mac, sizeof(n->mac), "%s", mac);
		n->boot = boot;
		pve_prop(val, NULL, "bridge", bridge, sizeof(bridge));
		pve_prop(val, NULL, "tag", tag, sizeof(tag));
		note(g, "%s: %s card on %s%s%s%s: user-mode networking stands in "
		     "for it (edit: a bridge, tap or network of this host)",
		     key, model, bridge[0] ? "bridge " : "no bridge",
		     bridge, tag[0] ? ", VLAN " : "", tag);
		return;
	}
bad:
	note(g, "%s: card '%s' not understood: left out", key, val);
}

/* PVE's builtin CPU models (CPUConfig.pm), as QEMU knows them. */
static void cpu_model(struct gen *g, const char *val)
{
	static const struct {
		const char *pve;
		const char *flags;
	} builtin[] = {
		{ "x86-64-v2", ",+popcnt,+pni,+sse4.1,+sse4.2,+ssse3" },
		{ "x86-64-v2-AES", ",+aes,+popcnt,+pni,+sse4.1,+sse4.2,+ssse3" },
		{ "x86-64-v3", ",+aes,+popcnt,+pni,+sse4.1,+sse4.2,+ssse3,+avx,"
			       "+avx2,+bmi1,+bmi2,+f16c,+fma,+abm,+movbe,+xsave" },
		{ "x86-64-v4", ",+aes,+popcnt,+pni,+sse4.1,+sse4.2,+ssse3,+avx,"
			       "+avx2,+bmi1,+bmi2,+f16c,+fma,+abm,+movbe,+xsave,"
			       "+avx512f,+avx512bw,+avx512cd,+avx512dq,"
			       "+avx512vl" },
	};
	struct vm *vm = &g->vm;
	char type[64] = "kvm64";	/* PVE's default without "cpu" */
	char flags[256] = "";

	if (val) {
		pve_prop(val, "cputype", "cputype", type, sizeof(type));
		pve_prop(val, "cputype", "flags", flags, sizeof(flags));
	}
	if (!strncmp(type, "custom-", 7)) {
		note(g, "cpu: custom model '%s' is defined on the PVE host: "
		     "kvm64 stands in", type + 7);
		snprintf(type, sizeof(type), "kvm64");
	}
	snprintf(vm->cpu, sizeof(vm->cpu), "%s", type);
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
		if (!strcmp(type, builtin[i].pve)) {
			snprintf(vm->cpu, sizeof(vm->cpu), "qemu64");
			snprintf(vm->flags, sizeof(vm->flags), "%s",
				 builtin[i].flags);
		}
	}
	if (!strcmp(type, "host") && !g->vc->kvm) {
		note(g, "cpu: 'host' needs KVM: 'max' stands in under TCG");
		snprintf(vm->cpu, sizeof(vm->cpu), "max");
	}
	/* "+aes;-pcid" */
	for (char *save = NULL, *t = strtok_r(flags, ";", &save); t;
	     t = strtok_r(NULL, ";", &save)) {
		size_t l = strlen(vm->flags);

		snprintf(vm->flags + l, sizeof(vm->flags) - l, ",%s", t);
	}
}

/* Keys that make no device or were read above. */
static bool key_is_quiet(const char *k)
{
	static const char *const quiet[] = {
		"acpi", "affinity", "agent", "autostart", "balloon", "bios",
		"boot", "bootdisk", "cicustom", "cipassword", "citype",
		"ciupgrade", "ciuser", "cores", "cpu", "cpulimit", "cpuunits",
		"digest", "efidisk0", "freeze", "hookscript", "hotplug",
		"hugepages", "ipconfig", "keephugepages", "keyboard", "kvm",
		"localtime", "lock", "machine", "memory", "meta",
		"migrate_downtime", "migrate_speed", "name", "nameserver",
		"numa", "onboot", "ostype", "protection", "reboot",
		"scsihw", "searchdomain", "shares", "smbios1", "sockets",
		"spice_enhancements", "sshkeys", "startdate", "startup",
		"tablet", "tags", "template", "vcpus", "vga", "vmgenid",
		"vmstatestorage", "unused", "parent", "snaptime", "runningcpu",
		"runningmachine", "vmstate", "allow-ksm",
	};
	size_t l = strlen(k);

	/* "smbios1" as it is, "unused3" as "unused". */
	while (l && k[l - 1] >= '0' && k[l - 1] <= '9')
		l--;
	for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
		if (!strcmp(quiet[i], k) ||
		    (strlen(quiet[i]) == l && !strncmp(quiet[i], k, l)))
			return true;
	return false;
}

/* Known keys for host hardware or plumbing this start line has not. */
static const char *const host_keys[] = {
	"hostpci", "usb", "serial", "parallel", "audio", "rng", "tpmstate",
	"virtiofs", "ivshmem", "args", "watchdog", "amd-sev", "intel-tdx",
	"numa", "virtio-mem",
};

static void other_keys(struct gen *g)
{
	const struct pve_conf *c = g->vc->conf;

	for (size_t i = 0; i < pve_conf_count(c); i++) {
		const char *k = pve_conf_key(c, i);
		const char *v = pve_conf_value(c, i);
		enum bus b;
		unsigned int idx;
		bool host = false;

		if (parse_virtdev(k, &b, &idx) || !strncmp(k, "net", 3) ||
		    key_is_quiet(k))
			continue;
		for (size_t j = 0; j < sizeof(host_keys) / sizeof(*host_keys);
		     j++)
			if (!strncmp(k, host_keys[j], strlen(host_keys[j])))
				host = true;
		if (host)
			note(g, "%s: %s: host-specific, left out (add it by "
			     "hand if this host has it)", k, v);
		else
			note(g, "%s: %s: a key this version does not know, "
			     "left out", k, v);
	}
	for (size_t i = 0; i < pve_conf_nsections(c); i++)
		note(g, "[%s]: another state of the guest (pending changes or "
		     "a snapshot), not the backup's: ignored",
		     pve_conf_section(c, i));
	for (size_t i = 0; i < pve_conf_nnotes(c); i++)
		note(g, "%s", pve_conf_note(c, i));
}

static void machine(struct gen *g)
{
	const char *m = pve_conf_get(g->vc->conf, "machine");
	char type[64] = "";

	snprintf(g->vm.machine, sizeof(g->vm.machine), "pc");
	if (!m)
		return;
	if (!pve_prop(m, "type", "type", type, sizeof(type)))
		return;
	if (strstr(type, "q35"))
		snprintf(g->vm.machine, sizeof(g->vm.machine), "q35");
	else if (strncmp(type, "pc", 2) && strncmp(type, "i440fx", 6))
		note(g, "machine: '%s' not understood: pc stands in", type);
	/* A pinned version (pc-q35-8.1+pve0) may be newer than this QEMU. */
	if (strcmp(type, "pc") && strcmp(type, "q35"))
		note(g, "machine: pinned to '%s' on PVE; %s here (the newest "
		     "this QEMU has)", type, g->vm.machine);
}

static void firmware(struct gen *g)
{
	struct vm *vm = &g->vm;
	const char *bios = pve_conf_get(g->vc->conf, "bios");
	const char *efi = pve_conf_get(g->vc->conf, "efidisk0");
	unsigned long long sz = 0;
	char v[64];

	if (!bios || strcmp(bios, "ovmf"))
		return;
	vm->ovmf = true;
	vm->efi_vars = VARS_4M;
	if (efi && pve_prop(efi, "file", "efitype", v, sizeof(v)) &&
	    !strcmp(v, "2m"))
		vm->efi_vars = VARS_2M;
	vm->secboot = efi && vm->efi_vars == VARS_4M &&
		      !strcmp(vm->machine, "q35") &&
		      pve_prop(efi, "file", "pre-enrolled-keys", v, sizeof(v)) &&
		      !strcmp(v, "1");
	if (efi)
		vm->efi_path = image_of(g, "efidisk0");
	if (!efi || !vm->efi_path) {
		note(g, "efidisk0: %s: OVMF starts with empty variables (boot "
		     "entries and Secure Boot keys are lost)",
		     efi ? "no image for it" : "none");
		return;
	}
	image_size(g, vm->efi_path, &sz);
	if (sz < vm->efi_vars)
		note(g, "efidisk0: image of %llu bytes, smaller than OVMF's "
		     "%llu of variables", sz, vm->efi_vars);
	if (vm->efi_vars == VARS_2M)
		note(g, "efidisk0: efitype=2m needs the old 2 MiB OVMF_CODE.fd "
		     "(not in Debian 12's ovmf)");
}

/* A count from 1 to @max (sockets, cores); 1 when absent. */
static unsigned int count_key(struct gen *g, const char *key,
			      unsigned int max)
{
	const char *v = pve_conf_get(g->vc->conf, key);
	char *end;
	unsigned long n;

	if (!v)
		return 1;
	n = strtoul(v, &end, 10);
	if (*end || n < 1 || n > max) {
		note(g, "%s: '%s' not understood: 1 stands in", key, v);
		return 1;
	}
	return (unsigned int)n;
}

static int build_vm(struct gen *g)
{
	const struct pve_conf *c = g->vc->conf;
	struct vm *vm = &g->vm;
	char order[64][16];
	size_t norder = 0;
	const char *v;
	char val[128];

	if ((v = pve_conf_get(c, "arch")) && strcmp(v, "x86_64")) {
		note(g, "arch: %s: only x86_64 guests are made here", v);
		return -EINVAL;
	}
	snprintf(vm->name, sizeof(vm->name), "%s",
		 g->vc->name ? g->vc->name :
		 (v = pve_conf_get(c, "name")) ? v : "restored-vm");
	vm->mem_mib = 512;	/* PVE's default */
	if ((v = pve_conf_get(c, "memory")) &&
	    (!pve_prop(v, "current", "current", val, sizeof(val)) ||
	     pve_parse_size(val, 1, &vm->mem_mib) || !vm->mem_mib)) {
		note(g, "memory: '%s' not understood: 512 MiB stands in", v);
		vm->mem_mib = 512;
	}
	vm->sockets = count_key(g, "sockets", 64);
	vm->cores = count_key(g, "cores", 512);
	machine(g);
	firmware(g);
	cpu_model(g, pve_conf_get(c, "cpu"));
	snprintf(vm->vga, sizeof(vm->vga), "std");
	if ((v = pve_conf_get(c, "vga")))
		pve_prop(v, "type", "type", vm->vga, sizeof(vm->vga));
	if (!strncmp(vm->vga, "serial", 6)) {
		note(g, "vga: %s: no display; the guest's console is its "
		     "serial port", vm->vga);
		snprintf(vm->vga, sizeof(vm->vga), "none");
	}
	vm->tablet = !((v = pve_conf_get(c, "tablet")) && !strcmp(v, "0")) &&
		     strcmp(vm->vga, "none");
	v = pve_conf_get(c, "ostype");
	/* wxp, w2k, w2k3, w2k8, wvista, win7 ... win11 */
	vm->windows = v && v[0] == 'w';
	v = pve_conf_get(c, "localtime");
	vm->localtime = v ? !strcmp(v, "1") : vm->windows;
	if ((v = pve_conf_get(c, "smbios1")))
		pve_prop(v, NULL, "uuid", vm->uuid, sizeof(vm->uuid));
	if ((v = pve_conf_get(c, "vmgenid")) && strcmp(v, "0"))
		snprintf(vm->vmgenid, sizeof(vm->vmgenid), "%s", v);
	snprintf(vm->scsihw, sizeof(vm->scsihw), "%s",
		 (v = pve_conf_get(c, "scsihw")) ? v : "lsi");
	boot_order(g, order, &norder);
	for (size_t i = 0; i < pve_conf_count(c); i++) {
		const char *k = pve_conf_key(c, i);
		enum bus b;
		unsigned int idx;

		if (parse_virtdev(k, &b, &idx))
			add_disk(g, k, pve_conf_value(c, i), b, idx,
				 boot_index(order, norder, k));
		else if (!strncmp(k, "net", 3) && k[3] >= '0' && k[3] <= '9')
			add_nic(g, k, pve_conf_value(c, i),
				boot_index(order, norder, k));
	}
	qsort(vm->disks, vm->ndisks, sizeof(*vm->disks), cmp_disk);
	if (!vm->ndisks) {
		note(g, "no disk of the configuration has an image in '%s'",
		     g->vc->dir);
		return -EINVAL;
	}
	/* Without a boot order naming a disk, PVE boots the first one. */
	for (size_t i = 0; i < vm->ndisks; i++)
		if (vm->disks[i].boot)
			goto have_boot;
	vm->disks[0].boot = 1;
have_boot:
	if (pve_conf_get(c, "agent"))
		note(g, "agent: the guest agent's channel is not wired (a "
		     "virtio-serial port org.qemu.guest_agent.0)");
	other_keys(g);
	return 0;
}

/* ---- QEMU ---- */

/* Shell word: as it is when safe, else in single quotes. */
static void sh_word(FILE *f, const char *s)
{
	bool safe = *s != '\0';

	for (const char *p = s; *p && safe; p++)
		safe = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
			      "WXYZ0123456789_,.=:/+@%-", *p) != NULL;
	if (safe) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", f);
		else
			fputc(*p, f);
	}
	fputc('\'', f);
}

/* A QEMU option value: commas doubled. */
static char *qesc(const char *s)
{
	size_t n = 0;
	char *o;
	char *p;

	for (const char *q = s; *q; q++)
		n += *q == ',' ? 2 : 1;
	o = p = xcalloc(1, n + 1);
	for (const char *q = s; *q; q++) {
		*p++ = *q;
		if (*q == ',')
			*p++ = ',';
	}
	return o;
}

static void qarg(FILE *f, const char *opt, const char *fmt, ...)
	PRINTF_FMT(3, 4);

static void qarg(FILE *f, const char *opt, const char *fmt, ...)
{
	va_list ap;
	char *v = NULL;

	fprintf(f, "    %s", opt);
	if (fmt) {
		va_start(ap, fmt);
		if (vasprintf(&v, fmt, ap) < 0)
			v = NULL;
		va_end(ap);
		fputc(' ', f);
		sh_word(f, v ? v : "");
		free(v);
	}
	fputs(" \\\n", f);
}

static const char *ovmf_code(const struct gen *g)
{
	return g->vm.efi_vars == VARS_2M ? "OVMF_CODE.fd" :
	       g->vm.secboot ? "OVMF_CODE_4M.secboot.fd" : "OVMF_CODE_4M.fd";
}

static const char *fw_dir(const struct gen *g)
{
	return g->vc->firmware_dir ? g->vc->firmware_dir : "/usr/share/OVMF";
}

/* PVE's card models are QEMU's device names but for virtio. */
static const char *nic_device(const char *model)
{
	return strcmp(model, "virtio") ? model : "virtio-net-pci";
}

/* A SCSI controller's QEMU device for PVE's scsihw. */
static const char *scsi_device(const char *hw, unsigned int *per)
{
	*per = 7;
	if (!strcmp(hw, "lsi53c810"))
		return "lsi53c810";
	if (!strcmp(hw, "megasas"))
		return "megasas";
	if (!strcmp(hw, "pvscsi"))
		return "pvscsi";
	if (!strncmp(hw, "virtio-scsi", 11)) {
		*per = 256;
		return "virtio-scsi-pci";
	}
	return "lsi53c895a";
}

/*
 * The port of IDE disk @index on q35, whose AHCI takes one disk a port
 * (ide.0 to ide.5): qemu-server's print_drivedevice_full keeps the even
 * ones where the two-units-a-bus rule of pc put them and moves the odd
 * ones up by two (ide0 -> 0, ide1 -> 2, ide2 -> 1, ide3 -> 3).
 */
static unsigned int q35_ide_port(unsigned int index)
{
	return index / 2 + 2 * (index % 2);
}

static void qemu_disk(const struct gen *g, FILE *f, const struct disk *d,
		      bool *ctl)
{
	const struct vm *vm = &g->vm;
	char *path = qesc(d->path);
	char boot[32] = "";
	char dev[160];
	char id[24];
	unsigned int per;

	snprintf(id, sizeof(id), "drive-%s", d->virtdev);
	qarg(f, "-drive", "file=%s,if=none,id=%s,format=raw,cache=%s,aio=%s%s%s",
	     path, id, d->cache, d->aio, d->discard ? ",discard=unmap" : "",
	     d->ro ? ",readonly=on" : "");
	free(path);
	if (d->boot)
		snprintf(boot, sizeof(boot), ",bootindex=%d", 100 + d->boot);
	switch (d->bus) {
	case BUS_IDE:
		if (!strcmp(vm->machine, "q35"))
			snprintf(dev, sizeof(dev), "ide-hd,bus=ide.%u,unit=0",
				 q35_ide_port(d->index));
		else
			snprintf(dev, sizeof(dev), "ide-hd,bus=ide.%u,unit=%u",
				 d->index / 2, d->index % 2);
		break;
	case BUS_SATA:
		if (!ctl[BUS_SATA])
			qarg(f, "-device", "ahci,id=ahci0,multifunction=on");
		ctl[BUS_SATA] = true;
		snprintf(dev, sizeof(dev), "ide-hd,bus=ahci0.%u", d->index);
		break;
	case BUS_SCSI: {
		const char *hw = scsi_device(vm->scsihw, &per);
		bool single = !strcmp(vm->scsihw, "virtio-scsi-single");
		unsigned int c = single ? d->index : d->index / per;

		/* One controller per disk (single) or per @per disks. */
		if (single || !ctl[BUS_SCSI] || d->index % per == 0 ||
		    (d->index / per) != ((d - 1)->bus == BUS_SCSI ?
					 (d - 1)->index / per : ~0u))
			qarg(f, "-device", "%s,id=%s%u", hw,
			     single ? "virtioscsi" : "scsihw", c);
		ctl[BUS_SCSI] = true;
		if (per == 256 || single)
			snprintf(dev, sizeof(dev), "scsi-hd,bus=%s%u.0,channel=0,"
				 "scsi-id=0,lun=%u", single ? "virtioscsi" :
				 "scsihw", c, single ? 0 : d->index);
		else
			snprintf(dev, sizeof(dev), "scsi-hd,bus=scsihw%u.0,"
				 "scsi-id=%u", c, d->index % per);
		break;
	}
	case BUS_VIRTIO:
	default:
		snprintf(dev, sizeof(dev), "virtio-blk-pci,id=%s", d->virtdev);
		break;
	}
	qarg(f, "-device", "%s,drive=%s%s%s%s", dev, id, boot,
	     d->serial[0] ? ",serial=" : "", d->serial);
}

static void emit_qemu(const struct gen *g, FILE *f)
{
	const struct vm *vm = &g->vm;
	bool ctl[BUS_N] = { 0 };
	char *name = qesc(vm->name);

	fprintf(f, "#!/bin/sh\n# QEMU for '%s'%s%s, made by pbs-livemount "
		"vm-config from its\n# configuration; arguments given to "
		"this script are added at the end.\n", vm->name,
		g->vc->snapshot ? " of " : "",
		g->vc->snapshot ? g->vc->snapshot : "");
	for (size_t i = 0; i < g->nnotes; i++)
		fprintf(f, "# NOTE %s\n", g->notes[i]);
	fputs("exec qemu-system-x86_64 \\\n", f);
	qarg(f, "-name", "%s", name);
	free(name);
	qarg(f, "-accel", "%s", g->vc->kvm ? "kvm" : "tcg");
	qarg(f, "-machine", "%s%s", vm->machine, vm->secboot ? ",smm=on" : "");
	qarg(f, "-cpu", "%s%s%s", vm->cpu, vm->flags,
	     vm->windows && g->vc->kvm ?
		     ",hv_relaxed,hv_spinlocks=0x1fff,hv_vapic,hv_time" : "");
	qarg(f, "-smp", "%u,sockets=%u,cores=%u,threads=1",
	     vm->sockets * vm->cores, vm->sockets, vm->cores);
	qarg(f, "-m", "%llu", vm->mem_mib);
	qarg(f, "-nodefaults", NULL);
	if (vm->ovmf) {
		qarg(f, "-drive", "if=pflash,unit=0,format=raw,readonly=on,"
		     "file=%s/%s", fw_dir(g), ovmf_code(g));
		if (vm->secboot)
			qarg(f, "-global",
			     "driver=cfi.pflash01,property=secure,value=on");
		if (vm->efi_path) {
			char *p = qesc(vm->efi_path);

			qarg(f, "-drive", "if=pflash,unit=1,format=raw,"
			     "id=drive-efidisk0,file=%s,size=%llu", p,
			     vm->efi_vars);
			free(p);
		}
	}
	if (vm->uuid[0])
		qarg(f, "-smbios", "type=1,uuid=%s", vm->uuid);
	if (vm->vmgenid[0])
		qarg(f, "-device", "vmgenid,guid=%s", vm->vmgenid);
	if (vm->localtime)
		qarg(f, "-rtc", "base=localtime");
	qarg(f, "-vga", "%s", vm->vga);
	if (vm->tablet) {
		qarg(f, "-device", "qemu-xhci,id=xhci");
		qarg(f, "-device", "usb-tablet,bus=xhci.0");
	}
	for (size_t i = 0; i < vm->ndisks; i++)
		qemu_disk(g, f, &vm->disks[i], ctl);
	for (size_t i = 0; i < vm->nnics; i++) {
		const struct nic *n = &vm->nics[i];
		char boot[32] = "";

		if (n->boot)
			snprintf(boot, sizeof(boot), ",bootindex=%d",
				 100 + n->boot);
		qarg(f, "-netdev", "user,id=net%u", n->index);
		qarg(f, "-device", "%s,netdev=net%u,id=nic%u%s%s%s",
		     nic_device(n->model), n->index, n->index,
		     n->mac[0] ? ",mac=" : "", n->mac, boot);
	}
	if (g->vc->qmp) {
		char *p = qesc(g->vc->qmp);

		qarg(f, "-qmp", "unix:%s,server=on,wait=off", p);
		free(p);
	}
	fputs("    \"$@\"\n", f);
}

/* ---- libvirt ---- */

static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '\'': fputs("&apos;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

/* A comment's text: no "--" inside one. */
static void xml_comment(FILE *f, const char *s)
{
	fputs("  <!-- ", f);
	for (; *s; s++)
		fputc(*s == '-' && s[1] == '-' ? '~' : *s, f);
	fputs(" -->\n", f);
}

/* "sd" + 0 -> "sda", 26 -> "sdaa", as libvirt names them. */
static void dev_name(char *out, size_t len, const char *prefix,
		     unsigned int i)
{
	char tail[8];
	int n = 0;

	do {
		tail[n++] = (char)('a' + i % 26);
		i = i / 26;
	} while (i-- && n < 7);
	for (int a = 0, b = n - 1; a < b; a++, b--) {
		char t = tail[a];

		tail[a] = tail[b];
		tail[b] = t;
	}
	snprintf(out, len, "%s%.*s", prefix, n, tail);
}

static const char *lv_scsi_model(const char *hw)
{
	if (!strncmp(hw, "virtio-scsi", 11))
		return "virtio-scsi";
	if (!strcmp(hw, "megasas"))
		return "lsisas1078";
	if (!strcmp(hw, "pvscsi"))
		return "vmpvscsi";
	return "lsilogic";
}

static void lv_disk(const struct gen *g, FILE *f, const struct disk *d,
		    unsigned int *sd, unsigned int *nctl, bool *sata)
{
	const struct vm *vm = &g->vm;
	bool q35 = !strcmp(vm->machine, "q35");
	char dev[16];
	const char *bus;
	unsigned int per;

	fputs("    <disk type='file' device='disk'>\n", f);
	fprintf(f, "      <driver name='qemu' type='raw' cache='%s' io='%s'%s/>\n",
		d->cache, d->aio, d->discard ? " discard='unmap'" : "");
	fputs("      <source file='", f);
	xml_text(f, d->path);
	fputs("'/>\n", f);
	switch (d->bus) {
	case BUS_VIRTIO:
		dev_name(dev, sizeof(dev), "vd", d->index);
		bus = "virtio";
		break;
	case BUS_IDE:
		if (!q35) {
			dev_name(dev, sizeof(dev), "hd", d->index);
			bus = "ide";
			break;
		}
		/* q35 has no IDE in libvirt: PVE puts it on AHCI too. */
		/* fall through */
	case BUS_SATA:
		dev_name(dev, sizeof(dev), "sd", (*sd)++);
		bus = "sata";
		*sata = true;
		break;
	case BUS_SCSI:
	default:
		dev_name(dev, sizeof(dev), "sd", (*sd)++);
		bus = "scsi";
		break;
	}
	fprintf(f, "      <target dev='%s' bus='%s'/>\n", dev, bus);
	if (d->bus == BUS_SCSI) {
		bool single = !strcmp(vm->scsihw, "virtio-scsi-single");
		unsigned int c;

		scsi_device(vm->scsihw, &per);
		c = single ? d->index : d->index / per;
		*nctl = MAX(*nctl, c + 1);
		fprintf(f, "      <address type='drive' controller='%u' bus='0' "
			"target='%u' unit='%u'/>\n", c,
			single || per == 256 ? 0 : d->index % per,
			per == 256 && !single ? d->index : 0);
	} else if (d->bus == BUS_IDE && q35) {
		/* The q35 board's own AHCI, where PVE's IDE disks sit. */
		fprintf(f, "      <address type='drive' controller='0' bus='0' "
			"target='0' unit='%u'/>\n", q35_ide_port(d->index));
	} else if (d->bus == BUS_SATA) {
		/* PVE's SATA disks are on a controller of their own (ahci0). */
		fprintf(f, "      <address type='drive' controller='%d' bus='0' "
			"target='0' unit='%u'/>\n", q35 ? 1 : 0, d->index);
	}
	if (d->boot)
		fprintf(f, "      <boot order='%d'/>\n", d->boot);
	if (d->ro)
		fputs("      <readonly/>\n", f);
	if (d->serial[0]) {
		fputs("      <serial>", f);
		xml_text(f, d->serial);
		fputs("</serial>\n", f);
	}
	fputs("    </disk>\n", f);
}

static void emit_libvirt(const struct gen *g, FILE *f)
{
	const struct vm *vm = &g->vm;
	unsigned int sd = 0;
	unsigned int nctl = 0;
	bool sata = false;

	fprintf(f, "<domain type='%s'>\n", g->vc->kvm ? "kvm" : "qemu");
	fputs("  <!-- made by pbs-livemount vm-config from the configuration"
	      " of the backup -->\n", f);
	for (size_t i = 0; i < g->nnotes; i++) {
		char *s = xasprintf("NOTE %s", g->notes[i]);

		xml_comment(f, s);
		free(s);
	}
	fputs("  <name>", f);
	xml_text(f, vm->name);
	fputs("</name>\n", f);
	if (vm->uuid[0]) {
		fputs("  <uuid>", f);
		xml_text(f, vm->uuid);
		fputs("</uuid>\n", f);
	}
	fprintf(f, "  <memory unit='MiB'>%llu</memory>\n", vm->mem_mib);
	fprintf(f, "  <vcpu>%u</vcpu>\n", vm->sockets * vm->cores);
	if (!strcmp(vm->cpu, "host")) {
		fputs("  <cpu mode='host-passthrough'>\n", f);
	} else if (!strcmp(vm->cpu, "max")) {
		fputs("  <cpu mode='maximum'>\n", f);
	} else {
		char flags[sizeof(vm->flags)];

		fputs("  <cpu mode='custom' match='exact'>\n", f);
		fprintf(f, "    <model fallback='allow'>%s</model>\n", vm->cpu);
		snprintf(flags, sizeof(flags), "%s", vm->flags);
		for (char *save = NULL, *t = strtok_r(flags, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			if (*t != '+' && *t != '-')
				continue;
			fprintf(f, "    <feature policy='%s' name='",
				*t == '+' ? "require" : "disable");
			xml_text(f, t + 1);
			fputs("'/>\n", f);
		}
	}
	fprintf(f, "    <topology sockets='%u' dies='1' cores='%u' "
		"threads='1'/>\n  </cpu>\n", vm->sockets, vm->cores);
	fputs("  <os>\n", f);
	fprintf(f, "    <type arch='x86_64' machine='%s'>hvm</type>\n",
		vm->machine);
	if (vm->ovmf) {
		fprintf(f, "    <loader readonly='yes'%s type='pflash'>%s/%s"
			"</loader>\n", vm->secboot ? " secure='yes'" : "",
			fw_dir(g), ovmf_code(g));
		if (vm->efi_path) {
			fputs("    <nvram>", f);
			xml_text(f, vm->efi_path);
			fputs("</nvram>\n", f);
		}
	}
	fputs("  </os>\n  <features>\n    <acpi/>\n    <apic/>\n", f);
	if (vm->secboot)
		fputs("    <smm state='on'/>\n", f);
	if (vm->windows && g->vc->kvm)
		fputs("    <hyperv mode='custom'>\n      <relaxed state='on'/>\n"
		      "      <vapic state='on'/>\n      <spinlocks state='on' "
		      "retries='8191'/>\n    </hyperv>\n", f);
	fputs("  </features>\n", f);
	fprintf(f, "  <clock offset='%s'/>\n", vm->localtime ? "localtime" :
							       "utc");
	fputs("  <on_poweroff>destroy</on_poweroff>\n"
	      "  <on_reboot>restart</on_reboot>\n"
	      "  <on_crash>destroy</on_crash>\n  <devices>\n", f);
	for (size_t i = 0; i < vm->ndisks; i++)
		lv_disk(g, f, &vm->disks[i], &sd, &nctl, &sata);
	for (unsigned int c = 0; c < nctl; c++)
		fprintf(f, "    <controller type='scsi' index='%u' "
			"model='%s'/>\n", c, lv_scsi_model(vm->scsihw));
	if (sata)
		fprintf(f, "    <controller type='sata' index='%d'/>\n",
			strcmp(vm->machine, "q35") ? 0 : 1);
	for (size_t i = 0; i < vm->nnics; i++) {
		const struct nic *n = &vm->nics[i];

		fputs("    <interface type='user'>\n", f);
		if (n->mac[0]) {
			fputs("      <mac address='", f);
			xml_text(f, n->mac);
			fputs("'/>\n", f);
		}
		fputs("      <model type='", f);
		xml_text(f, n->model);
		fputs("'/>\n", f);
		if (n->boot)
			fprintf(f, "      <boot order='%d'/>\n", n->boot);
		fputs("    </interface>\n", f);
	}
	fputs("    <serial type='pty'>\n      <target port='0'/>\n"
	      "    </serial>\n    <console type='pty'/>\n", f);
	if (vm->tablet)
		fputs("    <input type='tablet' bus='usb'/>\n", f);
	if (!strcmp(vm->vga, "none"))
		fputs("    <video>\n      <model type='none'/>\n    </video>\n", f);
	else
		fprintf(f, "    <graphics type='vnc' autoport='yes' "
			"listen='127.0.0.1'/>\n    <video>\n      <model "
			"type='%s'/>\n    </video>\n",
			!strcmp(vm->vga, "std") ? "vga" :
			!strcmp(vm->vga, "qxl") ? "qxl" :
			!strcmp(vm->vga, "virtio") ? "virtio" :
			!strcmp(vm->vga, "cirrus") ? "cirrus" :
			!strcmp(vm->vga, "vmware") ? "vmvga" : "vga");
	fputs("  </devices>\n</domain>\n", f);
}

int vmgen_run(const struct vmgen_conf *vc, char **out, char ***notes,
	      size_t *nnotes)
{
	struct gen *g = xcalloc(1, sizeof(*g));
	size_t len = 0;
	FILE *f;
	int ret;

	g->vc = vc;
	*out = NULL;
	ret = build_vm(g);
	if (!ret) {
		f = open_memstream(out, &len);
		if (!f) {
			ret = -errno;
		} else {
			if (vc->format == VMGEN_LIBVIRT)
				emit_libvirt(g, f);
			else
				emit_qemu(g, f);
			if (fclose(f))
				ret = -ENOMEM;
		}
	}
	for (size_t i = 0; i < g->vm.ndisks; i++)
		free(g->vm.disks[i].path);
	free(g->vm.efi_path);
	*notes = g->notes;
	*nnotes = g->nnotes;
	free(g);
	if (ret) {
		free(*out);
		*out = NULL;
	}
	return ret;
}
