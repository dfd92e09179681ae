/*
 * vxn-helper: the guest side of guest-init/PROTOCOL.md (version 2), for what busybox sh
 * cannot do: framed I/O on hvc0, ptys, setgroups/setuid by number, an exact execve, and
 * the duties of PID 1. Built static at setup: gcc -static -Os -o vxn-helper vxn-helper.c
 *
 *   vxn-helper get KEY     print a spec value (guest-init reads hostname, writable)
 *   vxn-helper hello       the handshake line on hvc0
 *   vxn-helper fail MSG    start marker, ERROR frame, exit 125, power off
 *   vxn-helper run ROOT    as PID 1: run the spec's command (session 0) and the Dom0's
 *                          exec sessions chrooted in ROOT, relay their I/O as frames,
 *                          reap, report exit codes (128+N for signal N); power off when
 *                          session 0 ends
 *
 * Everything the spec and the frames say comes from the Dom0 and everything in ROOT
 * from the image: both are parsed with explicit bounds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL "2"
#define SPEC_PATH "/vxn/spec"
#define CHANNEL "/dev/hvc0"
#define XENBUS "/dev/xen/xenbus"
#define MAX_SPEC (1 << 20)
#define HEADER 9 /* type u8, session u32, length u32 */
#define MAX_PAYLOAD 65536
#define CHUNK 16384
#define MAX_GROUPS 64
#define MAX_SESSIONS 33       /* the main process (slot 0) and 32 exec sessions */
#define STDIN_LIMIT (1 << 20) /* queued stdin bytes before the channel is read no more */
#define GRACE_MS 500          /* an ended exec's output, held open by its orphans */
#define EXIT_VXN 125

enum { F_STDOUT = 1, F_STDERR = 2, F_EXIT = 3, F_ERROR = 4,
       F_STDIN = 16, F_EOF = 17, F_SIGNAL = 18, F_WINSIZE = 19, F_EXEC = 20 };

/* NUL-terminated "key=value" records: the spec file, or an EXEC frame's payload. */
struct records { const char *p; size_t len; };

static struct records spec;
static int chan = -1;

/* --- records --------------------------------------------------------------------- */

static int load_spec(void) {
    int fd = open(SPEC_PATH, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char *buf = malloc(MAX_SPEC + 1);
    size_t len = 0;
    ssize_t n;
    while (buf && len < MAX_SPEC && (n = read(fd, buf + len, MAX_SPEC - len)) > 0)
        len += (size_t)n;
    close(fd);
    spec = (struct records){buf, len};
    const char *head = "vxn-spec=" PROTOCOL;
    if (!buf || len == 0 || buf[len - 1] != '\0' || strcmp(buf, head) != 0) return -1;
    return 0;
}

/* The next record after `at` (NULL to start) whose key is `key`, as its value. */
static const char *rec_next(const struct records *r, const char *key, const char *at) {
    size_t klen = strlen(key);
    const char *p = at ? at + strlen(at) + 1 : r->p;
    for (; p < r->p + r->len; p += strlen(p) + 1)
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') return p + klen + 1;
    return NULL;
}

static const char *rec_get(const struct records *r, const char *key) {
    const char *v = rec_next(r, key, NULL);
    return v ? v : "";
}

static unsigned rec_u16(const struct records *r, const char *key) {
    unsigned long v = strtoul(rec_get(r, key), NULL, 10);
    return v > 0xFFFF ? 0 : (unsigned)v;
}

/* Every value of a repeated key, in a NULL-terminated array with `extra` free slots. */
static char **rec_all(const struct records *r, const char *key, int extra) {
    int n = 0;
    for (const char *v = rec_next(r, key, NULL); v; v = rec_next(r, key, v)) n++;
    char **out = calloc((size_t)(n + extra + 1), sizeof *out);
    if (!out) return NULL;
    n = 0;
    for (const char *v = rec_next(r, key, NULL); v; v = rec_next(r, key, v)) out[n++] = (char *)v;
    return out;
}

/* --- the channel ------------------------------------------------------------------ */

/* Blocking: when the Dom0 does not read hvc0, the guest waits for it. */
static void write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* the host is gone: nothing left to tell it */
        p += n;
        len -= (size_t)n;
    }
}

static int open_channel(void) {
    chan = open(CHANNEL, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (chan < 0) return -1;
    struct termios t;
    if (tcgetattr(chan, &t) == 0) { /* raw: no \r\n, no echo of the host's frames */
        cfmakeraw(&t);
        tcsetattr(chan, TCSANOW, &t);
    }
    return 0;
}

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void send_frame(int type, uint32_t session, const void *payload, size_t len) {
    static unsigned char buf[HEADER + CHUNK];
    do { /* output is cut into CHUNKs; the other frames are smaller */
        size_t n = len < CHUNK ? len : CHUNK;
        buf[0] = (unsigned char)type;
        put_u32(buf + 1, session);
        put_u32(buf + 5, (uint32_t)n);
        memcpy(buf + HEADER, payload, n);
        write_all(chan, buf, HEADER + n);
        payload = (const char *)payload + n;
        len -= n;
    } while (len > 0);
}

static void send_exit(uint32_t session, int code) {
    unsigned char payload[4];
    put_u32(payload, (uint32_t)code);
    send_frame(F_EXIT, session, payload, 4);
}

static void send_line(const char *word) {
    char line[160];
    int n = snprintf(line, sizeof line, "vxn-%s " PROTOCOL " %.64s\n", word,
                     rec_get(&spec, "nonce"));
    write_all(chan, line, (size_t)n);
}

/* On Xen, the exit code also goes to the domain's own data/ node: XS_WRITE on xenbus. */
static void xenstore_exit(int code) {
    int fd = open(XENBUS, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    char msg[16 + 64];
    int vlen = snprintf(msg + 16 + 19, 16, "%d", code);
    memcpy(msg + 16, "data/vxn-exit-code", 19);
    uint32_t head[4] = {11 /* XS_WRITE */, 1, 0, (uint32_t)(19 + vlen)};
    memcpy(msg, head, sizeof head);
    write_all(fd, msg, 16 + 19 + (size_t)vlen);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) > 0) (void)!read(fd, msg, sizeof msg); /* the ack */
    close(fd);
}

static void finish(int code) {
    sync();
    send_exit(0, code);
    tcdrain(chan);
    xenstore_exit(code);
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

static void fail(const char *message) {
    send_line("start");
    send_frame(F_ERROR, 0, message, strlen(message));
    finish(EXIT_VXN);
}

/* --- the user: NAME|UID[:GROUP|GID], from the image's passwd and group files ------ */

struct user { uid_t uid; gid_t gid; gid_t groups[MAX_GROUPS]; int ngroups; char home[256]; };

static int numeric(const char *s, unsigned long *out) {
    char *end;
    if (!*s || *s < '0' || *s > '9') return 0;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return *end == '\0' && errno == 0 && *out < 0xFFFFFFFFul;
}

/* Field `i` (0-based) of a colon-separated line, copied into out. */
static const char *field(const char *line, int i, char *out, size_t size) {
    for (; i > 0 && line; i--) line = strchr(line, ':'), line = line ? line + 1 : NULL;
    if (!line) return NULL;
    size_t n = strcspn(line, ":\n");
    if (n >= size) n = size - 1;
    memcpy(out, line, n);
    out[n] = '\0';
    return out;
}

/* Find the line of `file` whose field 0 is `name` (or field 2 is `id`); copy it to `out`. */
static int lookup(const char *root, const char *file, const char *name, long id,
                  char *out, size_t size) {
    char path[4096], f[256];
    snprintf(path, sizeof path, "%s/etc/%s", root, file);
    FILE *fp = fopen(path, "re");
    if (!fp) return 0;
    int found = 0;
    while (!found && fgets(out, (int)size, fp)) {
        unsigned long v;
        if (name && field(out, 0, f, sizeof f) && strcmp(f, name) == 0) found = 1;
        if (!name && field(out, 2, f, sizeof f) && numeric(f, &v) && (long)v == id) found = 1;
    }
    fclose(fp);
    return found;
}

static void add_group(struct user *u, gid_t gid) {
    for (int i = 0; i < u->ngroups; i++)
        if (u->groups[i] == gid) return;
    if (u->ngroups < MAX_GROUPS) u->groups[u->ngroups++] = gid;
}

/* Supplementary groups: every group in the image's group file that lists `name`. */
static void member_groups(const char *root, const char *name, struct user *u) {
    char path[4096], line[4096], members[4000], gid[32];
    snprintf(path, sizeof path, "%s/etc/group", root);
    FILE *fp = fopen(path, "re");
    if (!fp) return;
    unsigned long v;
    while (fgets(line, sizeof line, fp)) {
        if (!field(line, 3, members, sizeof members) || !field(line, 2, gid, sizeof gid)) continue;
        for (char *m = strtok(members, ","); m; m = strtok(NULL, ","))
            if (strcmp(m, name) == 0 && numeric(gid, &v)) add_group(u, (gid_t)v);
    }
    fclose(fp);
}

static int resolve_user(const char *root, const char *spec_user, struct user *u, char *err,
                        size_t esize) {
    char who[256], line[4096], gline[4096], f[256];
    unsigned long v = 0;
    snprintf(who, sizeof who, "%s", spec_user);
    char *group = strchr(who, ':');
    if (group) *group++ = '\0';
    const char *name = *who ? who : "0";
    int by_uid = numeric(name, &v);
    int known = by_uid ? lookup(root, "passwd", NULL, (long)v, line, sizeof line)
                       : lookup(root, "passwd", name, 0, line, sizeof line);
    if (!known && !by_uid)
        return snprintf(err, esize, "unable to find user %s: no matching entries in passwd file",
                        name), -1;
    u->uid = (uid_t)v;
    u->gid = 0;
    snprintf(u->home, sizeof u->home, "/");
    if (known) {
        u->uid = numeric(field(line, 2, f, sizeof f) ? f : "", &v) ? (uid_t)v : u->uid;
        u->gid = numeric(field(line, 3, f, sizeof f) ? f : "", &v) ? (gid_t)v : 0;
        if (field(line, 5, f, sizeof f) && *f) snprintf(u->home, sizeof u->home, "%s", f);
    }
    if (group && numeric(group, &v))
        u->gid = (gid_t)v;
    else if (group && lookup(root, "group", group, 0, gline, sizeof gline) &&
             numeric(field(gline, 2, f, sizeof f) ? f : "", &v))
        u->gid = (gid_t)v;
    else if (group)
        return snprintf(err, esize, "unable to find group %s: no matching entries in group file",
                        group), -1;
    u->ngroups = 0;
    add_group(u, u->gid);
    if (known && !group && field(line, 0, f, sizeof f)) member_groups(root, f, u);
    return 0;
}

/* --- the child: session, tty, chroot, cwd, user, env, execve ---------------------- */

/* Tell the parent why the command cannot run (it sends an ERROR frame), and exit. */
static void child_fail(int errfd, int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    write_all(errfd, &code, sizeof code);
    write_all(errfd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    _exit(code);
}

static void mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') *p = '\0', mkdir(buf, 0755), *p = '/';
    mkdir(buf, 0755);
}

static const char *env_path(char **env) {
    for (; *env; env++)
        if (strncmp(*env, "PATH=", 5) == 0) return *env + 5;
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* Docker's rules: a name is looked up in PATH (127 when absent), a path is run as is. */
static void exec_command(int errfd, char **argv, char **env) {
    const char *name = argv[0];
    if (strchr(name, '/')) {
        execve(name, argv, env);
        if (errno == ENOENT)
            child_fail(errfd, 127, "exec: \"%s\": stat %s: no such file or directory", name, name);
        child_fail(errfd, 126, "exec: \"%s\": %s", name, strerror(errno));
    }
    const char *path = env_path(env);
    char full[4096];
    while (*name && path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? path : ".", name);
        struct stat st;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
            execve(full, argv, env);
            child_fail(errfd, 126, "exec: \"%s\": %s", full, strerror(errno));
        }
        path = end ? end + 1 : NULL;
    }
    child_fail(errfd, 127, "exec: \"%s\": executable file not found in $PATH", name);
}

/* The child's ends: stdio (with a tty all three are the pty's slave), and the error pipe. */
struct stdio { int in, out, err, tty, errfd; };

static void run_child(const char *root, const struct records *r, struct stdio io) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) /* an ignored signal survives execve: PID 1's do */
        signal(sig, SIG_DFL);
    setsid();
    if (io.tty && ioctl(io.out, TIOCSCTTY, 0) != 0)
        child_fail(io.errfd, EXIT_VXN, "vxn-helper: controlling terminal: %s", strerror(errno));
    dup2(io.in, 0), dup2(io.out, 1), dup2(io.err, 2);
    char msg[512];
    struct user u;
    if (chroot(root) != 0 || chdir("/") != 0)
        child_fail(io.errfd, EXIT_VXN, "chroot %s: %s", root, strerror(errno));
    if (resolve_user("/", rec_get(r, "user"), &u, msg, sizeof msg) != 0)
        child_fail(io.errfd, EXIT_VXN, "%s", msg);
    const char *cwd = *rec_get(r, "cwd") ? rec_get(r, "cwd") : "/";
    mkdirs(cwd);
    if (chdir(cwd) != 0)
        child_fail(io.errfd, 126, "chdir to cwd (\"%s\"): %s", cwd, strerror(errno));
    if (setgroups((size_t)u.ngroups, u.groups) || setgid(u.gid) || setuid(u.uid))
        child_fail(io.errfd, EXIT_VXN, "set user %s: %s", rec_get(r, "user"), strerror(errno));
    char **argv = rec_all(r, "arg", 0), **env = rec_all(r, "env", 1);
    if (!argv || !env || !argv[0]) child_fail(io.errfd, EXIT_VXN, "spec: no command");
    char home[300];
    int has_home = 0, n = 0;
    for (; env[n]; n++) has_home |= strncmp(env[n], "HOME=", 5) == 0;
    if (!has_home) snprintf(home, sizeof home, "HOME=%s", u.home), env[n] = home;
    exec_command(io.errfd, argv, env);
}

/* --- sessions ---------------------------------------------------------------------- */

struct session {
    int used, tty, eof;
    uint32_t id;
    pid_t pid;          /* 0 once reaped */
    int status;
    long reaped_ms;
    int out, err;       /* read ends; with a tty, out is the pty's master and err is -1 */
    int in;             /* stdin's write end (the master with a tty), -1 when closed */
    int pty;            /* the master, for TIOCSWINSZ and the foreground group */
    unsigned char *queue; /* stdin not written yet: the command reads slower than it comes */
    size_t queued;
};

static struct session sessions[MAX_SESSIONS];
static size_t queued_total;
static const char *root_dir;

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static struct session *find(uint32_t id) {
    for (int i = 0; i < MAX_SESSIONS; i++)
        if (sessions[i].used && sessions[i].id == id) return &sessions[i];
    return NULL;
}

/* A pty in the container's devpts: the master here, the slave by its path in ROOT. */
static int open_pty(int *master, int *slave, unsigned rows, unsigned cols) {
    char path[4200];
    int n, unlock = 0;
    snprintf(path, sizeof path, "%s/dev/pts/ptmx", root_dir);
    *master = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*master < 0) return -1;
    if (ioctl(*master, TIOCSPTLCK, &unlock) != 0 || ioctl(*master, TIOCGPTN, &n) != 0)
        return close_fd(master), -1;
    snprintf(path, sizeof path, "%s/dev/pts/%d", root_dir, n);
    *slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0) return close_fd(master), -1;
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    if (rows && cols) ioctl(*master, TIOCSWINSZ, &ws);
    return 0;
}

/* Start `r` as session `id` in slot `s`; on failure, `msg` says why (the caller reports). */
static int start(struct session *s, uint32_t id, const struct records *r, char *msg,
                 size_t size) {
    int tty = strcmp(rec_get(r, "tty"), "1") == 0, stdin_on = strcmp(rec_get(r, "stdin"), "1") == 0;
    int o[2] = {-1, -1}, e[2] = {-1, -1}, in[2] = {-1, -1}, x[2] = {-1, -1}, master = -1;
    int ok = pipe2(x, O_CLOEXEC) == 0;
    if (ok && tty) {
        ok = open_pty(&master, &o[1], rec_u16(r, "rows"), rec_u16(r, "cols")) == 0;
        e[1] = in[0] = o[1];
    } else if (ok) {
        ok = pipe2(o, O_CLOEXEC) == 0 && pipe2(e, O_CLOEXEC) == 0 &&
             (stdin_on ? pipe2(in, O_CLOEXEC) == 0
                       : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0);
    }
    pid_t pid = ok ? fork() : -1;
    if (pid == 0) run_child(root_dir, r, (struct stdio){in[0], o[1], e[1], tty, x[1]});
    close_fd(&x[1]);
    close_fd(&o[1]);
    if (!tty) close_fd(&e[1]), close_fd(&in[0]);
    if (pid < 0) {
        snprintf(msg, size, "vxn-helper: cannot start session %u: %s", id, strerror(errno));
        int fds[] = {x[0], o[0], e[0], in[1], master};
        for (size_t i = 0; i < sizeof fds / sizeof *fds; i++) close_fd(&fds[i]);
        return -1;
    }
    *s = (struct session){.used = 1, .tty = tty, .id = id, .pid = pid, .pty = master,
                          .out = o[0], .err = e[0], .in = in[1]};
    if (tty) {
        s->out = fcntl(master, F_DUPFD_CLOEXEC, 0);
        s->in = stdin_on ? fcntl(master, F_DUPFD_CLOEXEC, 0) : -1;
        set_nonblock(master); /* the dups share its file description */
    } else {
        set_nonblock(s->out), set_nonblock(s->err);
        if (s->in >= 0) set_nonblock(s->in);
    }
    int code;
    ssize_t n = read(x[0], &code, sizeof code); /* EOF once execve succeeded */
    if (n == (ssize_t)sizeof code && (n = read(x[0], msg, size - 1)) >= 0)
        send_frame(F_ERROR, id, msg, (size_t)n);
    close(x[0]);
    return 0;
}

static void end_session(struct session *s) {
    send_exit(s->id, WIFSIGNALED(s->status) ? 128 + WTERMSIG(s->status)
                                            : WEXITSTATUS(s->status));
    queued_total -= s->queued;
    free(s->queue);
    close_fd(&s->in), close_fd(&s->pty);
    *s = (struct session){0};
}

static void refuse(uint32_t id, const char *message) {
    send_frame(F_ERROR, id, message, strlen(message));
    send_exit(id, EXIT_VXN);
}

static void exec_session(uint32_t id, const unsigned char *p, uint32_t len) {
    char msg[1024];
    if (id == 0 || find(id)) return; /* the Dom0 never reuses a running session's id */
    struct session *s = NULL;
    for (int i = 1; i < MAX_SESSIONS && !s; i++)
        if (!sessions[i].used) s = &sessions[i];
    char *copy = NULL; /* the frame buffer moves on; the child needs the records */
    if (sessions[0].pid == 0)
        refuse(id, "vxn-helper: the container is stopping");
    else if (!s)
        refuse(id, "vxn-helper: too many exec sessions (32 at once)");
    else if (len == 0 || p[len - 1] != '\0')
        refuse(id, "vxn-helper: exec spec is malformed");
    else if (!(copy = malloc(len)))
        refuse(id, "vxn-helper: out of memory");
    else if (start(s, id, &(struct records){memcpy(copy, p, len), len}, msg, sizeof msg) != 0)
        refuse(id, msg);
    free(copy);
}

/* stdin: written without blocking; what the command has not read yet waits in its queue. */
static void flush_stdin(struct session *s) {
    while (s->queued > 0 && s->in >= 0) {
        ssize_t n = write(s->in, s->queue, s->queued);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) { /* the command closed its stdin: drop the rest */
            close_fd(&s->in);
            break;
        }
        memmove(s->queue, s->queue + n, s->queued - (size_t)n);
        s->queued -= (size_t)n, queued_total -= (size_t)n;
    }
    if (s->in < 0) queued_total -= s->queued, s->queued = 0;
    if (s->eof && s->queued == 0) close_fd(&s->in);
}

static void queue_stdin(struct session *s, const unsigned char *p, uint32_t len) {
    if (s->in < 0 || s->eof) return;
    unsigned char *q = realloc(s->queue, s->queued + len);
    if (!q) return;
    s->queue = q;
    memcpy(q + s->queued, p, len);
    s->queued += len, queued_total += len;
    flush_stdin(s);
}

static void signal_session(struct session *s, int sig) {
    if (s->pid == 0) return; /* reaped: its pid may be another process's now */
    pid_t group = s->pty >= 0 ? tcgetpgrp(s->pty) : 0;
    if (s->pty >= 0) kill(group > 0 ? -group : -s->pid, sig);
    else kill(s->pid, sig);
}

static void host_frame(int type, uint32_t id, const unsigned char *p, uint32_t len) {
    struct session *s = find(id); /* NULL: ended, or never started: the Dom0 raced its end */
    if (type == F_EXEC) exec_session(id, p, len);
    else if (!s) return;
    else if (type == F_STDIN) queue_stdin(s, p, len);
    else if (type == F_EOF && !s->tty) s->eof = 1, flush_stdin(s); /* a pty has no EOF */
    else if (type == F_SIGNAL && len == 4) signal_session(s, (int)get_u32(p));
    else if (type == F_WINSIZE && len == 4 && s->pty >= 0) {
        struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]),
                             .ws_col = (unsigned short)(p[2] << 8 | p[3])};
        ioctl(s->pty, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH */
    }
    /* unknown types are ignored */
}

static unsigned char inbuf[HEADER + MAX_PAYLOAD];
static size_t inlen;

static int from_host(void) {
    ssize_t n = read(chan, inbuf + inlen, sizeof inbuf - inlen);
    if (n < 0) return errno == EINTR || errno == EAGAIN;
    if (n == 0) return 0;
    inlen += (size_t)n;
    while (inlen >= HEADER) {
        uint32_t len = get_u32(inbuf + 5);
        if (len > MAX_PAYLOAD) { inlen = 0; break; } /* not our protocol: drop it */
        if (inlen < HEADER + len) break;
        host_frame(inbuf[0], get_u32(inbuf + 1), inbuf + HEADER, len);
        memmove(inbuf, inbuf + HEADER + len, inlen - HEADER - len);
        inlen -= HEADER + len;
    }
    return 1;
}

static void pump(struct session *s, int *fd, int type) {
    static char buf[CHUNK];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) send_frame(type, s->id, buf, (size_t)n);
    else if (n == 0 || (errno != EINTR && errno != EAGAIN)) close_fd(fd); /* a pty: EIO */
}

static void reap(int sigfd) {
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) > 0) {}
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_SESSIONS; i++) {
            struct session *s = &sessions[i];
            if (!s->used || s->pid != pid) continue;
            s->pid = 0, s->status = status, s->reaped_ms = now_ms();
            if (i == 0) kill(-1, SIGKILL); /* like Docker: the container ends with its main */
        }
    }
}

/* Relay every session until the main one has ended and every exec session with it. */
static int relay(int sigfd) {
    int chan_ok = 1;
    for (;;) {
        struct pollfd p[2 + 3 * MAX_SESSIONS];
        struct watch { struct session *s; int *fd; int type; } at[3 * MAX_SESSIONS];
        int n = 0, busy = 0, timeout = -1;
        long now = now_ms();
        for (int i = MAX_SESSIONS - 1; i >= 0; i--) { /* exec sessions end before the main */
            struct session *s = &sessions[i];
            if (!s->used) continue;
            if (i > 0 && s->pid == 0 && now >= s->reaped_ms + GRACE_MS)
                close_fd(&s->out), close_fd(&s->err); /* orphans hold them: stop waiting */
            if (s->pid == 0 && s->out < 0 && s->err < 0) {
                if (i > 0) { end_session(s); continue; }
                if (!busy) return WIFSIGNALED(s->status) ? 128 + WTERMSIG(s->status)
                                                         : WEXITSTATUS(s->status);
            }
            busy |= i > 0;
            if (i > 0 && s->pid == 0) {
                int left = (int)(s->reaped_ms + GRACE_MS - now);
                timeout = timeout < 0 || left < timeout ? left : timeout;
            }
            int *fds[3] = {&s->out, &s->err, &s->in};
            for (int k = 0; k < 3; k++) {
                if (*fds[k] < 0 || (k == 2 && s->queued == 0)) continue;
                at[n] = (struct watch){s, fds[k], k == 0 ? F_STDOUT : F_STDERR};
                p[n++] = (struct pollfd){*fds[k], k == 2 ? POLLOUT : POLLIN, 0};
            }
        }
        p[n] = (struct pollfd){sigfd, POLLIN, 0};
        p[n + 1] = (struct pollfd){chan_ok && queued_total < STDIN_LIMIT ? chan : -1, POLLIN, 0};
        if (poll(p, (nfds_t)n + 2, timeout) < 0) continue;
        for (int k = 0; k < n; k++) {
            if (!p[k].revents || *at[k].fd != p[k].fd) continue;
            if (p[k].events == POLLOUT) flush_stdin(at[k].s);
            else pump(at[k].s, at[k].fd, at[k].type);
        }
        if (p[n].revents) reap(sigfd);
        if (p[n + 1].revents & POLLIN) chan_ok = from_host();
        else if (p[n + 1].revents) chan_ok = 0; /* a hung-up channel would spin poll */
    }
}

static int cmd_run(const char *root) {
    char msg[1024];
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0) fail("vxn-helper: signalfd failed");
    signal(SIGPIPE, SIG_IGN); /* a command that closes its stdin must not kill PID 1 */
    root_dir = root;
    send_line("start");
    if (start(&sessions[0], 0, &spec, msg, sizeof msg) != 0)
        send_frame(F_ERROR, 0, msg, strlen(msg)), finish(EXIT_VXN);
    finish(relay(sigfd));
    return 0;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    if (load_spec() != 0) {
        fprintf(stderr, "vxn-helper: %s: missing or not version " PROTOCOL "\n", SPEC_PATH);
        return 2;
    }
    if (strcmp(cmd, "get") == 0 && argc == 3) {
        const char *v = rec_next(&spec, argv[2], NULL);
        return v ? (printf("%s\n", v), 0) : 1;
    }
    if (open_channel() != 0) {
        fprintf(stderr, "vxn-helper: %s: %s\n", CHANNEL, strerror(errno));
        return 2;
    }
    if (strcmp(cmd, "hello") == 0) return send_line("hello"), 0;
    if (strcmp(cmd, "fail") == 0 && argc == 3) fail(argv[2]);
    if (strcmp(cmd, "run") == 0 && argc == 3) return cmd_run(argv[2]);
    fprintf(stderr, "usage: vxn-helper get KEY | hello | fail MESSAGE | run ROOT\n");
    return 2;
}
