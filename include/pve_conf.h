/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_PVE_CONF_H
#define PBSLM_PVE_CONF_H

#include <stdbool.h>
#include <stddef.h>

/*
 * A guest configuration in Proxmox VE's format (qm.conf(5), pct.conf(5)):
 * "key: value" lines, '#' lines before the first key the description
 * (percent-encoded), then optional sections "[PENDING]", "[special:...]"
 * and "[snapshot-name]" that describe other states of the guest.  A
 * backup's copy (qemu-server.conf.blob) has those removed by vzdump and
 * "#qmdump#map:VIRTDEV:ARCHIVE:STORAGE:FORMAT:" lines added, naming the
 * disk archive of each device.
 *
 * Only the current configuration (the main section) is kept; sections
 * are listed by name.  Keys are kept in order, known or not: what a
 * reader does not understand it reports.  Pure and untrusted-input safe
 * (fuzzed): no I/O, no global state.
 */

struct pve_conf;

/* A disk archive a backup's configuration maps to a device. */
struct pve_map {
	const char *virtdev;	/* "scsi0" */
	const char *archive;	/* "drive-scsi0" */
	const char *storage;	/* "local-lvm", may be "" */
	const char *format;	/* "raw", may be "" */
};

/*
 * Parse @len bytes of @text.  As PVE does, a line that is none of the
 * above is a note, not a failure; -EBADMSG only for what is not text (a
 * NUL byte; *@err, if given, names the line: "line 7: ..."), -ENOMEM.
 */
int pve_conf_parse(const char *text, size_t len, struct pve_conf **out,
		   char *err, size_t errlen);
void pve_conf_free(struct pve_conf *c);

/* The main section's keys, in file order. */
size_t pve_conf_count(const struct pve_conf *c);
const char *pve_conf_key(const struct pve_conf *c, size_t i);
const char *pve_conf_value(const struct pve_conf *c, size_t i);
/* The value of @key in the main section, or NULL. */
const char *pve_conf_get(const struct pve_conf *c, const char *key);
/* The description (decoded), or NULL. */
const char *pve_conf_description(const struct pve_conf *c);

/* The sections other than the main one, by name ("PENDING", ...). */
size_t pve_conf_nsections(const struct pve_conf *c);
const char *pve_conf_section(const struct pve_conf *c, size_t i);

/* What was read over ("line 9: not understood: ..."), in order. */
size_t pve_conf_nnotes(const struct pve_conf *c);
const char *pve_conf_note(const struct pve_conf *c, size_t i);

size_t pve_conf_nmaps(const struct pve_conf *c);
const struct pve_map *pve_conf_map(const struct pve_conf *c, size_t i);
/* The map of @virtdev, or NULL. */
const struct pve_map *pve_conf_find_map(const struct pve_conf *c,
					const char *virtdev);

/*
 * One property of a property string ("virtio=AA:BB,bridge=vmbr0,tag=5"):
 * the value of @key into @out (NUL-terminated), true if present.  A
 * first element without '=' is the value of @first_key ("file" of a
 * drive, "current" of memory); NULL: it has none.  Elements of the form
 * MODEL=VALUE (a network device's "virtio=MAC") are found by their key
 * as any other.
 */
bool pve_prop(const char *s, const char *first_key, const char *key,
	      char *out, size_t outlen);
/* The key of element @i ("virtio" of "virtio=MAC,bridge=x", i = 0). */
bool pve_prop_key_at(const char *s, size_t i, char *out, size_t outlen);

/*
 * The number N of the volume "vm-ID-disk-N" PVE's restore gives disk
 * archive @stem ("drive-scsi0") of a backup whose disk archives are
 * @stems: it allocates them in the order of their device names
 * (efidisk0, ide0, sata0, scsi0, scsi1, scsi10, scsi2, tpmstate0,
 * virtio0), the first free number each; into an empty directory that
 * is the rank.  -ENOENT when @stem is not among @stems.
 */
int pve_disk_number(const char *const *stems, size_t n, const char *stem);

/*
 * PVE's sizes ("32G", "528K", "4194304"): bytes, or -EINVAL.  A bare
 * number is bytes for "size=" and MiB for "memory"; @unit says which.
 */
int pve_parse_size(const char *s, unsigned long long unit,
		   unsigned long long *out);

#endif
