/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pve_conf and vmgen: configurations as PVE writes them (descriptions,
 * [PENDING], snapshot and special sections, aliases, CRLF, unknown
 * keys), property strings, and the start lines made of them: buses,
 * controllers, boot order, firmware, CPU models, quoting.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pve_conf.h"
#include "util.h"
#include "vmgen.h"

static struct pve_conf *parse(const char *text)
{
	struct pve_conf *c = NULL;
	char err[200] = "";

	assert_int_equal(pve_conf_parse(text, strlen(text), &c, err,
					sizeof(err)), 0);
	return c;
}

static bool has_note(const struct pve_conf *c, const char *s)
{
	for (size_t i = 0; i < pve_conf_nnotes(c); i++)
		if (strstr(pve_conf_note(c, i), s))
			return true;
	return false;
}

static void test_sections(void **state)
{
	/* As /etc/pve/qemu-server/100.conf looks with a pending change, a
	 * snapshot and cloud-init's special section. */
	struct pve_conf *c = parse(
		"#Web server%3A prod\n"
		"#  second line\n"
		"boot: order=scsi0;net0\r\n"
		"cdrom: none\n"
		"cores: 4\n"
		"memory: current=2048\n"
		"foo-bar7: kept\n"
		"parent: snap1\n"
		"  indented: no\n"
		"cores: 2\n"
		"\n"
		"[PENDING]\n"
		"delete: net1\n"
		"memory: 4096\n"
		"\n"
		"[snap1]\n"
		"cores: 1\n"
		"snaptime: 1700000000\n"
		"[special:cloudinit]\n"
		"ipconfig0: ip=dhcp\n");

	(void)state;
	assert_string_equal(pve_conf_description(c),
			    "Web server: prod\n  second line");
	assert_string_equal(pve_conf_get(c, "boot"), "order=scsi0;net0");
	assert_string_equal(pve_conf_get(c, "ide2"), "none");	/* alias */
	assert_null(pve_conf_get(c, "cdrom"));
	assert_string_equal(pve_conf_get(c, "cores"), "2");	/* last */
	assert_true(has_note(c, "line 10: given again"));
	assert_string_equal(pve_conf_get(c, "memory"), "current=2048");
	assert_string_equal(pve_conf_get(c, "foo-bar7"), "kept");
	assert_true(has_note(c, "line 9: not understood:   indented"));
	assert_null(pve_conf_get(c, "delete"));
	assert_null(pve_conf_get(c, "snaptime"));
	assert_null(pve_conf_get(c, "ipconfig0"));
	assert_int_equal(pve_conf_nsections(c), 3);
	assert_string_equal(pve_conf_section(c, 0), "PENDING");
	assert_string_equal(pve_conf_section(c, 1), "snap1");
	assert_string_equal(pve_conf_section(c, 2), "special:cloudinit");
	/* In file order, each once. */
	assert_string_equal(pve_conf_key(c, 0), "boot");
	assert_string_equal(pve_conf_key(c, 1), "ide2");
	pve_conf_free(c);
}

static void test_maps_and_bad(void **state)
{
	static const char nul[] = "cores: 1\nmem\0ory: 2\n";
	struct pve_conf *c = parse(
		"description: one%0Atwo\n"
		"scsi0: local-lvm:vm-100-disk-0,size=32G\n"
		"#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n"
		"#qmdump#map:efidisk0:drive-efidisk0:local-lvm::\n"
		"#qmdump#map:bad\n"
		"#qmdump#map:x:../etc:a:b:\n"
		"#qmdump#other\n");
	char err[200] = "";
	struct pve_conf *d = NULL;

	(void)state;
	assert_string_equal(pve_conf_description(c), "one\ntwo");
	assert_int_equal(pve_conf_nmaps(c), 2);
	assert_string_equal(pve_conf_find_map(c, "scsi0")->archive,
			    "drive-scsi0");
	assert_string_equal(pve_conf_find_map(c, "scsi0")->storage,
			    "local-lvm");
	assert_string_equal(pve_conf_find_map(c, "efidisk0")->format, "");
	assert_null(pve_conf_find_map(c, "x"));
	assert_true(has_note(c, "line 5: not a disk map"));
	assert_true(has_note(c, "line 6: not a disk map"));
	pve_conf_free(c);
	assert_int_equal(pve_conf_parse(nul, sizeof(nul) - 1, &d, err,
					sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "line 2"));
	c = parse("");
	assert_int_equal(pve_conf_count(c), 0);
	assert_null(pve_conf_description(c));
	pve_conf_free(c);
}

static void test_props(void **state)
{
	char v[64];
	unsigned long long n;

	(void)state;
	assert_true(pve_prop("virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=5",
			     NULL, "virtio", v, sizeof(v)));
	assert_string_equal(v, "BC:24:11:00:00:01");
	assert_true(pve_prop("virtio=x,bridge=vmbr0", NULL, "bridge", v,
			     sizeof(v)));
	assert_string_equal(v, "vmbr0");
	assert_false(pve_prop("virtio=x", NULL, "tag", v, sizeof(v)));
	assert_true(pve_prop_key_at("e1000=x,bridge=y", 0, v, sizeof(v)));
	assert_string_equal(v, "e1000");
	assert_true(pve_prop("2048", "current", "current", v, sizeof(v)));
	assert_string_equal(v, "2048");
	assert_true(pve_prop("local:iso/a.iso,media=cdrom", "file", "file",
			     v, sizeof(v)));
	assert_string_equal(v, "local:iso/a.iso");
	assert_false(pve_prop("abc", "file", "file", v, 3));	/* too long */
	assert_int_equal(pve_parse_size("32G", 1, &n), 0);
	assert_true(n == 32ull << 30);
	assert_int_equal(pve_parse_size("528K", 1, &n), 0);
	assert_true(n == 540672);
	assert_int_equal(pve_parse_size("2048", 1048576, &n), 0);
	assert_true(n == 2048ull << 20);
	assert_int_equal(pve_parse_size("12X", 1, &n), -EINVAL);
	assert_int_equal(pve_parse_size("", 1, &n), -EINVAL);
	assert_int_equal(pve_parse_size("99999999999999999999", 1, &n),
			 -EINVAL);
}

/* Images that "exist": any path not containing "missing". */
static bool fake_size(const char *path, unsigned long long *bytes)
{
	*bytes = strstr(path, "efidisk") ? 4194304 : 1 << 30;
	return !strstr(path, "missing");
}

static char *gen(const char *text, enum vmgen_format fmt, bool kvm,
		 const char *dir, char ***notes, size_t *nnotes, int *ret)
{
	struct pve_conf *c = parse(text);
	struct vmgen_conf vc = {
		.conf = c, .dir = dir, .format = fmt, .kvm = kvm,
		.size = fake_size, .snapshot = "vm/100/2025-01-01T00:00:00Z",
	};
	char *out = NULL;

	*ret = vmgen_run(&vc, &out, notes, nnotes);
	pve_conf_free(c);
	return out;
}

static bool in_notes(char **notes, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(notes[i], s))
			return true;
	return false;
}

static void test_qemu_buses(void **state)
{
	char **notes = NULL;
	size_t nn = 0;
	int ret;
	char *out = gen(
		"boot: order=scsi8;scsi0;net0\n"
		"memory: 4096\nsockets: 2\ncores: 3\n"
		"cpu: x86-64-v2-AES,flags=+pcid;-md-clear\n"
		"scsi0: local:vm-1-disk-0,cache=writeback,discard=on,size=1G\n"
		"scsi8: local:vm-1-disk-1,ro=1,serial=ABC\n"
		"sata1: local:vm-1-disk-2\n"
		"ide2: local:vm-1-disk-3\n"
		"ide3: local:iso/x.iso,media=cdrom\n"
		"virtio2: local:vm-1-disk-4,backup=0\n"
		"virtio3: local:vm-1-disk-5\n"
		"net0: e1000=AA:BB:CC:DD:EE:FF,bridge=vmbr1\n"
		"#qmdump#map:virtio2:missing-virtio2:local:raw:\n"
		"#qmdump#map:virtio3:missing-virtio3:local:raw:\n",
		VMGEN_QEMU, true, "/m/a,b c", &notes, &nn, &ret);

	(void)state;
	assert_int_equal(ret, 0);
	/* lsi (PVE's default): seven disks per controller. */
	assert_non_null(strstr(out, "-device lsi53c895a,id=scsihw0 "));
	assert_non_null(strstr(out, "-device lsi53c895a,id=scsihw1 "));
	assert_non_null(strstr(out, "scsi-hd,bus=scsihw1.0,scsi-id=1,"
				    "drive=drive-scsi8,bootindex=101,"
				    "serial=ABC"));
	assert_non_null(strstr(out, "drive=drive-scsi0,bootindex=102"));
	assert_non_null(strstr(out, "bootindex=103"));	/* net0 */
	assert_non_null(strstr(out, "-device ahci,id=ahci0"));
	assert_non_null(strstr(out, "ide-hd,bus=ahci0.1,drive=drive-sata1"));
	assert_non_null(strstr(out, "ide-hd,bus=ide.1,unit=0,drive=drive-ide2"));
	/* A path with a comma and a space: doubled, quoted. */
	assert_non_null(strstr(out, "-drive 'file=/m/a,,b c/drive-scsi0.img,"
				    "if=none,id=drive-scsi0,format=raw,"
				    "cache=writeback,aio=threads,"
				    "discard=unmap'"));
	assert_non_null(strstr(out, "cache=none,aio=threads,readonly=on"));
	assert_non_null(strstr(out, "-cpu qemu64,+aes,+popcnt,+pni,+sse4.1,"
				    "+sse4.2,+ssse3,+pcid,-md-clear "));
	assert_non_null(strstr(out, "-smp 6,sockets=2,cores=3,threads=1"));
	assert_non_null(strstr(out, "-m 4096 "));
	assert_non_null(strstr(out, "-device e1000,netdev=net0,id=nic0,"
				    "mac=AA:BB:CC:DD:EE:FF,bootindex=103"));
	assert_non_null(strstr(out, "-accel kvm"));
	assert_non_null(strstr(out, "\"$@\"\n"));
	assert_null(strstr(out, "drive-virtio2"));
	assert_null(strstr(out, "drive-virtio3"));
	assert_true(in_notes(notes, nn, "ide3: a CD-ROM (local:iso/x.iso)"));
	assert_true(in_notes(notes, nn, "virtio2: not in the backup (backup=0)"));
	assert_true(in_notes(notes, nn, "virtio3: no image for it"));
	assert_true(in_notes(notes, nn, "net0: e1000 card on bridge vmbr1"));
	/* Each note is a comment in the script too. */
	assert_non_null(strstr(out, "# NOTE ide3: a CD-ROM"));
	vmgen_free_notes(notes, nn);
	free(out);
}

static void test_qemu_firmware(void **state)
{
	char **notes = NULL;
	size_t nn = 0;
	int ret;
	char *out = gen(
		"bios: ovmf\nmachine: pc-q35-8.1+pve0\ncpu: host\n"
		"efidisk0: local-lvm:vm-1-disk-1,efitype=4m,"
		"pre-enrolled-keys=1,size=4M\n"
		"scsihw: virtio-scsi-single\n"
		"scsi0: local-lvm:vm-1-disk-0\nscsi1: local-lvm:vm-1-disk-2\n"
		"ostype: win11\nvga: serial0\ntpmstate0: local-lvm:vm-1-disk-3\n"
		"arch: x86_64\n",
		VMGEN_QEMU, false, "/m", &notes, &nn, &ret);

	(void)state;
	assert_int_equal(ret, 0);
	assert_non_null(strstr(out, "-machine q35,smm=on"));
	assert_non_null(strstr(out, "file=/usr/share/OVMF/"
				    "OVMF_CODE_4M.secboot.fd"));
	assert_non_null(strstr(out, "driver=cfi.pflash01,property=secure,"
				    "value=on"));
	assert_non_null(strstr(out, "if=pflash,unit=1,format=raw,"
				    "id=drive-efidisk0,file=/m/"
				    "drive-efidisk0.img,size=540672"));
	assert_non_null(strstr(out, "virtio-scsi-pci,id=virtioscsi0"));
	assert_non_null(strstr(out, "virtio-scsi-pci,id=virtioscsi1"));
	assert_non_null(strstr(out, "bus=virtioscsi1.0,channel=0,scsi-id=0,"
				    "lun=0,drive=drive-scsi1"));
	/* No boot order: the first disk. */
	assert_non_null(strstr(out, "drive=drive-scsi0,bootindex=101"));
	assert_non_null(strstr(out, "-cpu max "));
	assert_non_null(strstr(out, "-rtc base=localtime"));
	assert_non_null(strstr(out, "-vga none"));
	assert_null(strstr(out, "usb-tablet"));
	assert_true(in_notes(notes, nn, "cpu: 'host' needs KVM"));
	assert_true(in_notes(notes, nn, "machine: pinned to 'pc-q35-8.1+pve0'"));
	assert_true(in_notes(notes, nn, "tpmstate0"));
	assert_true(in_notes(notes, nn, "vga: serial0"));
	vmgen_free_notes(notes, nn);
	free(out);
}

static void test_libvirt(void **state)
{
	char **notes = NULL;
	size_t nn = 0;
	int ret;
	char *out = gen(
		"name: a<b>&'c'\nmachine: q35\nmemory: 1024\n"
		"scsihw: virtio-scsi-pci\n"
		"ide0: local:vm-1-disk-0\nscsi0: local:vm-1-disk-1\n"
		"scsi3: local:vm-1-disk-2\nvirtio1: local:vm-1-disk-3\n"
		"net1: virtio=AA:00:00:00:00:01,bridge=vmbr0\n"
		"boot: order=virtio1\nunknown-thing: 1\n"
		"smbios1: uuid=11111111-2222-3333-4444-555555555555\n",
		VMGEN_LIBVIRT, true, "/m/x&y", &notes, &nn, &ret);

	(void)state;
	assert_int_equal(ret, 0);
	assert_non_null(strstr(out, "<domain type='kvm'>"));
	assert_non_null(strstr(out, "<name>a&lt;b&gt;&amp;&apos;c&apos;</name>"));
	assert_non_null(strstr(out, "<uuid>11111111-2222-3333-4444-"
				    "555555555555</uuid>"));
	assert_non_null(strstr(out, "<memory unit='MiB'>1024</memory>"));
	assert_non_null(strstr(out, "machine='q35'"));
	/* IDE on q35 goes to SATA, as PVE does. */
	assert_non_null(strstr(out, "<target dev='sda' bus='sata'/>"));
	assert_non_null(strstr(out, "<target dev='sdb' bus='scsi'/>"));
	assert_non_null(strstr(out, "<target dev='sdc' bus='scsi'/>"));
	assert_non_null(strstr(out, "controller='0' bus='0' target='0' "
				    "unit='3'"));
	assert_non_null(strstr(out, "<target dev='vdb' bus='virtio'/>\n"
				    "      <boot order='1'/>"));
	assert_non_null(strstr(out, "<controller type='scsi' index='0' "
				    "model='virtio-scsi'/>"));
	assert_non_null(strstr(out, "<source file='/m/x&amp;y/"
				    "drive-ide0.img'/>"));
	assert_non_null(strstr(out, "<mac address='AA:00:00:00:00:01'/>"));
	assert_true(in_notes(notes, nn, "unknown-thing: 1: a key this "
					"version does not know"));
	vmgen_free_notes(notes, nn);
	free(out);
}

/* q35: IDE disks on the board's AHCI, a port each as qemu-server puts
 * them; SATA disks on their own controller, never on the same port. */
static void test_q35_ide_sata(void **state)
{
	const char *conf = "machine: q35\nide0: l:vm-1-disk-0\n"
			   "ide1: l:vm-1-disk-1\nide2: l:vm-1-disk-2\n"
			   "sata0: l:vm-1-disk-3\nsata1: l:vm-1-disk-4\n";
	char **notes = NULL;
	size_t nn = 0;
	int ret;
	char *out = gen(conf, VMGEN_QEMU, false, "/m", &notes, &nn, &ret);

	(void)state;
	assert_int_equal(ret, 0);
	assert_non_null(strstr(out, "ide-hd,bus=ide.0,unit=0,drive=drive-ide0"));
	assert_non_null(strstr(out, "ide-hd,bus=ide.2,unit=0,drive=drive-ide1"));
	assert_non_null(strstr(out, "ide-hd,bus=ide.1,unit=0,drive=drive-ide2"));
	assert_non_null(strstr(out, "ide-hd,bus=ahci0.1,drive=drive-sata1"));
	vmgen_free_notes(notes, nn);
	free(out);

	out = gen(conf, VMGEN_LIBVIRT, false, "/m", &notes, &nn, &ret);
	assert_int_equal(ret, 0);
	assert_non_null(strstr(out, "drive-ide1.img'/>\n"
				    "      <target dev='sdb' bus='sata'/>\n"
				    "      <address type='drive' controller='0' "
				    "bus='0' target='0' unit='2'/>"));
	assert_non_null(strstr(out, "drive-ide2.img'/>\n"
				    "      <target dev='sdc' bus='sata'/>\n"
				    "      <address type='drive' controller='0' "
				    "bus='0' target='0' unit='1'/>"));
	assert_non_null(strstr(out, "drive-sata0.img'/>\n"
				    "      <target dev='sdd' bus='sata'/>\n"
				    "      <address type='drive' controller='1' "
				    "bus='0' target='0' unit='0'/>"));
	assert_non_null(strstr(out, "<controller type='sata' index='1'/>"));
	assert_null(strstr(out, "<controller type='sata' index='0'/>"));
	vmgen_free_notes(notes, nn);
	free(out);
}

static void test_refused(void **state)
{
	char **notes = NULL;
	size_t nn = 0;
	int ret;
	char *out;

	(void)state;
	out = gen("memory: 512\nnet0: virtio=AA:BB:CC:DD:EE:FF\n",
		  VMGEN_QEMU, true, "/m", &notes, &nn, &ret);
	assert_int_equal(ret, -EINVAL);
	assert_null(out);
	assert_true(in_notes(notes, nn, "no disk of the configuration"));
	vmgen_free_notes(notes, nn);
	out = gen("arch: aarch64\nscsi0: local:x\n", VMGEN_QEMU, true, "/m",
		  &notes, &nn, &ret);
	assert_int_equal(ret, -EINVAL);
	assert_true(in_notes(notes, nn, "only x86_64"));
	vmgen_free_notes(notes, nn);
	/* Nonsense values: a default stands in, said. */
	out = gen("memory: lots\ncores: 0\nscsi0: local:x\n", VMGEN_QEMU,
		  true, "/m", &notes, &nn, &ret);
	assert_int_equal(ret, 0);
	assert_non_null(strstr(out, "-m 512 "));
	assert_true(in_notes(notes, nn, "memory: 'lots' not understood"));
	assert_true(in_notes(notes, nn, "cores: '0' not understood"));
	vmgen_free_notes(notes, nn);
	free(out);
}

static void test_disk_number(void **state)
{
	static const char *const stems[] = {
		"drive-virtio0", "drive-scsi10", "drive-scsi2", "drive-efidisk0",
		"drive-tpmstate0-backup", "drive-scsi0", "drive-ide0",
	};

	(void)state;
	/* efidisk0 ide0 scsi0 scsi10 scsi2 tpmstate0 virtio0 */
	assert_int_equal(pve_disk_number(stems, 7, "drive-efidisk0"), 0);
	assert_int_equal(pve_disk_number(stems, 7, "drive-ide0"), 1);
	assert_int_equal(pve_disk_number(stems, 7, "drive-scsi0"), 2);
	assert_int_equal(pve_disk_number(stems, 7, "drive-scsi10"), 3);
	assert_int_equal(pve_disk_number(stems, 7, "drive-scsi2"), 4);
	assert_int_equal(pve_disk_number(stems, 7,
					 "drive-tpmstate0-backup"), 5);
	assert_int_equal(pve_disk_number(stems, 7, "drive-virtio0"), 6);
	assert_int_equal(pve_disk_number(stems, 7, "drive-sata0"), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_maps_and_bad),
		cmocka_unit_test(test_props),
		cmocka_unit_test(test_qemu_buses),
		cmocka_unit_test(test_qemu_firmware),
		cmocka_unit_test(test_libvirt),
		cmocka_unit_test(test_q35_ide_sata),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_disk_number),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
