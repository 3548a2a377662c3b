/*
 * CFuse: the C shim between libfuse3's low-level API and Swift.
 *
 * FUSE_USE_VERSION is defined here, once, because the Clang importer only sees this header.
 * Everything else is a thin wrapper over what Swift cannot import: function-like macros
 * (FUSE_ARGS_INIT, FUSE_BUFVEC_INIT), the loop config (opaque since 3.12), and
 * fuse_session_new (a macro over a versioned symbol from libfuse 3.17 on). Every symbol defined
 * here carries the `cfuse_` prefix.
 */
#ifndef CFUSE_H
#define CFUSE_H

#define FUSE_USE_VERSION 314 /* FUSE_MAKE_VERSION(3, 14): Debian 12's libfuse */

#include <fuse3/fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <errno.h>
#include <stddef.h>

/* fuse_session_new becomes a macro over fuse_session_new_versioned in libfuse >= 3.17. */
struct fuse_session *cfuse_session_new(struct fuse_args *args, const struct fuse_lowlevel_ops *op,
                                       void *userdata);

/* struct fuse_loop_config is opaque since 3.12. max_threads 0 keeps libfuse's default. */
int cfuse_session_loop_mt(struct fuse_session *se, unsigned max_threads, int max_idle_threads);

/* FUSE_ARGS_INIT is a macro; returns a heap-free fuse_args over argv (not copied). */
struct fuse_args cfuse_args_init(int argc, char **argv);


/* Mirror of the request buffer libfuse owns: copy a write_buf request into memory. */
ssize_t cfuse_bufvec_to_mem(struct fuse_bufvec *src, void *dst, size_t size);

/* renameat2 flags need _GNU_SOURCE, which the Glibc module does not see. */
enum { CFUSE_RENAME_NOREPLACE = (1 << 0), CFUSE_RENAME_EXCHANGE = (1 << 1) };

/* Set by the libfuse log function so that FuseKit can route libfuse's messages. */
typedef void (*cfuse_log_sink)(int level, const char *message);
void cfuse_set_log_sink(cfuse_log_sink sink);

/* Signal dispositions for a daemon started from a non-interactive shell, where SIGINT is
 * SIG_IGN and fuse_set_signal_handlers would leave it ignored. */
void cfuse_reset_signal_dispositions(void);

#endif
