#include "CFuse.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

struct fuse_session *cfuse_session_new(struct fuse_args *args, const struct fuse_lowlevel_ops *op,
                                       void *userdata) {
    return fuse_session_new(args, op, sizeof(*op), userdata);
}

int cfuse_session_loop_mt(struct fuse_session *se, unsigned max_threads, int max_idle_threads) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg) return -ENOMEM;
    if (max_threads) fuse_loop_cfg_set_max_threads(cfg, max_threads);
    if (max_idle_threads >= 0) fuse_loop_cfg_set_idle_threads(cfg, (unsigned)max_idle_threads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    int r = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return r;
}

struct fuse_args cfuse_args_init(int argc, char **argv) {
    struct fuse_args a = FUSE_ARGS_INIT(argc, argv);
    return a;
}


ssize_t cfuse_bufvec_to_mem(struct fuse_bufvec *src, void *dst, size_t size) {
    struct fuse_bufvec d = FUSE_BUFVEC_INIT(size);
    d.buf[0].mem = dst;
    return fuse_buf_copy(&d, src, (enum fuse_buf_copy_flags)0);
}

static cfuse_log_sink current_sink;

static void cfuse_log_trampoline(enum fuse_log_level level, const char *fmt, va_list ap) {
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    if (current_sink) current_sink((int)level, line);
}

void cfuse_set_log_sink(cfuse_log_sink sink) {
    current_sink = sink;
    fuse_set_log_func(sink ? cfuse_log_trampoline : NULL);
}

void cfuse_reset_signal_dispositions(void) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
}
