/*
 * insn_count: a QEMU TCG plugin that counts the guest instructions executed between two marker
 * system calls. Part of edgekit's device_bench (the qemu-aarch64 target).
 *
 * Written for edgekit; it is compiled on the user's machine at set-up time against the
 * qemu-plugin.h of the installed QEMU (GPL-2.0-or-later), and no binary of it is distributed.
 *
 * The guest marks a measured segment with two calls of an otherwise unused syscall number
 * (default 0x7EDC, which Linux and qemu-user answer with ENOSYS):
 *     syscall(MAGIC, 1, tag)   start of a segment
 *     syscall(MAGIC, 2, tag)   end of the segment: one JSON line is appended to the out file:
 *     {"tag": T, "instructions": N, "vcpus": V}
 * V is the number of guest threads (vCPUs) started so far: the count is exact only when the
 * measured code ran on one thread, because the counter is a plain (non-atomic) inline add.
 *
 * Counting: every translated block gets an inline "counter += number of instructions in the
 * block" op, so a block is counted whole when it starts (exact in user mode, where a block only
 * stops early on a fault).
 *
 * Arguments (-plugin libinsn_count.so,out=PATH[,magic=N]):
 *     out    file to append the segment lines to (required)
 *     magic  the marker syscall number (default 32476 = 0x7EDC)
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define DEFAULT_MAGIC 0x7EDC
#define MARK_START 1
#define MARK_STOP 2

static uint64_t insn_count;
static uint64_t segment_start;
static int segment_open;
static unsigned int vcpus_seen;
static int64_t magic = DEFAULT_MAGIC;
static char *out_path;

static void vcpu_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insn_count,
                                             qemu_plugin_tb_n_insns(tb));
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index)
{
    (void)id;
    __atomic_fetch_add(&vcpus_seen, 1, __ATOMIC_SEQ_CST);
    (void)vcpu_index;
}

static void write_segment(uint64_t tag, uint64_t count)
{
    FILE *f = fopen(out_path, "a");
    if (f == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "insn_count: cannot open %s\n", out_path);
        qemu_plugin_outs(msg);
        return;
    }
    fprintf(f, "{\"tag\": %" PRIu64 ", \"instructions\": %" PRIu64 ", \"vcpus\": %u}\n", tag,
            count, __atomic_load_n(&vcpus_seen, __ATOMIC_SEQ_CST));
    fclose(f);
}

static void vcpu_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                         uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                         uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu_index; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != magic) {
        return;
    }
    if (a1 == MARK_START) {
        segment_start = insn_count;
        segment_open = 1;
    } else if (a1 == MARK_STOP && segment_open) {
        write_segment(a2, insn_count - segment_start);
        segment_open = 0;
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "out=", 4) == 0) {
            out_path = strdup(arg + 4);
        } else if (strncmp(arg, "magic=", 6) == 0) {
            char *end = NULL;
            magic = strtoll(arg + 6, &end, 0);
            if (end == arg + 6 || *end != '\0') {
                fprintf(stderr, "insn_count: magic must be an integer, got %s\n", arg + 6);
                return -1;
            }
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (expected out=PATH, magic=N)\n",
                    arg);
            return -1;
        }
    }
    if (out_path == NULL || out_path[0] == '\0') {
        fprintf(stderr, "insn_count: missing argument out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, vcpu_tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, vcpu_syscall);
    return 0;
}
