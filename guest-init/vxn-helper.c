/*
 * vxn-helper: the guest side of guest-init/PROTOCOL.md (version 1), for what busybox sh
 * cannot do: framed I/O on hvc0, setgroups/setuid by number, an exact execve, and the
 * duties of PID 1. Built static at setup: gcc -static -Os -o vxn-helper vxn-helper.c
 *
 *   vxn-helper get KEY     print a spec value (guest-init reads hostname, writable)
 *   vxn-helper hello       the handshake line on hvc0
 *   vxn-helper fail MSG    start marker, ERROR frame, exit 125, power off
 *   vxn-helper run ROOT    as PID 1: run the spec's command chrooted in ROOT, frame its
 *                          output, reap, report the exit code (128+N for signal N), power off
 *
 * Everything the spec says comes from the Dom0 and everything in ROOT from the image:
 * both are parsed with explicit bounds.
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
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define PROTOCOL "1"
#define SPEC_PATH "/vxn/spec"
#define CHANNEL "/dev/hvc0"
#define XENBUS "/dev/xen/xenbus"
#define MAX_SPEC (1 << 20)
#define MAX_PAYLOAD 65536
#define CHUNK 16384
#define MAX_GROUPS 64
#define EXIT_VXN 125

enum { F_STDOUT = 1, F_STDERR = 2, F_EXIT = 3, F_ERROR = 4,
       F_STDIN = 16, F_EOF = 17, F_SIGNAL = 18, F_WINSIZE = 19 };

static char *spec;
static size_t spec_len;
static int chan = -1;

/* --- the spec: NUL-terminated "key=value" records --------------------------------- */

static int load_spec(void) {
    int fd = open(SPEC_PATH, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    spec = malloc(MAX_SPEC + 1);
    ssize_t n;
    while (spec && spec_len < MAX_SPEC &&
           (n = read(fd, spec + spec_len, MAX_SPEC - spec_len)) > 0)
        spec_len += (size_t)n;
    close(fd);
    const char *head = "vxn-spec=" PROTOCOL;
    if (!spec || spec_len == 0 || spec[spec_len - 1] != '\0' || strcmp(spec, head) != 0)
        return -1;
    return 0;
}

/* The next record after `at` (NULL to start) whose key is `key`, as its value. */
static const char *spec_next(const char *key, const char *at) {
    size_t klen = strlen(key);
    const char *p = at ? at + strlen(at) + 1 : spec;
    for (; p < spec + spec_len; p += strlen(p) + 1)
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') return p + klen + 1;
    return NULL;
}

static const char *spec_get(const char *key) {
    const char *v = spec_next(key, NULL);
    return v ? v : "";
}

/* Every value of a repeated key, in a NULL-terminated array with `extra` free slots. */
static char **spec_all(const char *key, int extra) {
    int n = 0;
    for (const char *v = spec_next(key, NULL); v; v = spec_next(key, v)) n++;
    char **out = calloc((size_t)(n + extra + 1), sizeof *out);
    if (!out) return NULL;
    n = 0;
    for (const char *v = spec_next(key, NULL); v; v = spec_next(key, v)) out[n++] = (char *)v;
    return out;
}

/* --- the channel ------------------------------------------------------------------ */

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

static void send_frame(int type, const void *payload, size_t len) {
    static unsigned char buf[5 + CHUNK];
    do { /* output is cut into CHUNKs; the other frames are smaller */
        size_t n = len < CHUNK ? len : CHUNK;
        buf[0] = (unsigned char)type;
        put_u32(buf + 1, (uint32_t)n);
        memcpy(buf + 5, payload, n);
        write_all(chan, buf, 5 + n);
        payload = (const char *)payload + n;
        len -= n;
    } while (len > 0);
}

static void send_line(const char *word) {
    char line[160];
    int n = snprintf(line, sizeof line, "vxn-%s " PROTOCOL " %.64s\n", word, spec_get("nonce"));
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
    unsigned char payload[4];
    sync();
    put_u32(payload, (uint32_t)code);
    send_frame(F_EXIT, payload, 4);
    tcdrain(chan);
    xenstore_exit(code);
    reboot(RB_POWER_OFF);
    for (;;) pause();
}

static void fail(const char *message) {
    send_line("start");
    send_frame(F_ERROR, message, strlen(message));
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

/* --- the child: chroot, cwd, user, env, execve ------------------------------------ */

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

static void run_child(const char *root, int out, int err, int in, int errfd) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL); /* PID 1 ignores it; an ignored signal survives execve */
    setsid();
    dup2(in, 0), dup2(out, 1), dup2(err, 2);
    char msg[512];
    struct user u;
    if (chroot(root) != 0 || chdir("/") != 0)
        child_fail(errfd, EXIT_VXN, "chroot %s: %s", root, strerror(errno));
    if (resolve_user("/", spec_get("user"), &u, msg, sizeof msg) != 0)
        child_fail(errfd, EXIT_VXN, "%s", msg);
    const char *cwd = *spec_get("cwd") ? spec_get("cwd") : "/";
    mkdirs(cwd);
    if (chdir(cwd) != 0)
        child_fail(errfd, 126, "chdir to cwd (\"%s\"): %s", cwd, strerror(errno));
    if (setgroups((size_t)u.ngroups, u.groups) || setgid(u.gid) || setuid(u.uid))
        child_fail(errfd, EXIT_VXN, "set user %s: %s", spec_get("user"), strerror(errno));
    char **argv = spec_all("arg", 0), **env = spec_all("env", 1);
    if (!argv || !env || !argv[0]) child_fail(errfd, EXIT_VXN, "spec: no command");
    char home[300];
    int has_home = 0, n = 0;
    for (; env[n]; n++) has_home |= strncmp(env[n], "HOME=", 5) == 0;
    if (!has_home) snprintf(home, sizeof home, "HOME=%s", u.home), env[n] = home;
    exec_command(errfd, argv, env);
}

/* --- PID 1: relay, reap, report ---------------------------------------------------- */

struct relay {
    int out, err, in, sig, chan_ok, status, done;
    pid_t main;
    size_t have;
    unsigned char buf[5 + MAX_PAYLOAD];
};

static void pump(int *fd, int type) {
    static char buf[CHUNK];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) send_frame(type, buf, (size_t)n);
    else if (n == 0 || errno != EINTR) close(*fd), *fd = -1;
}

static void host_frame(struct relay *r, int type, const unsigned char *p, uint32_t len) {
    if (type == F_SIGNAL && len == 4 && !r->done) kill(r->main, (int)get_u32(p));
    else if (type == F_STDIN && r->in >= 0) write_all(r->in, p, len);
    else if (type == F_EOF && r->in >= 0) close(r->in), r->in = -1;
    /* F_WINSIZE: for ptys (-t), not built yet; unknown types are ignored */
}

static void from_host(struct relay *r) {
    ssize_t n = read(chan, r->buf + r->have, sizeof r->buf - r->have);
    if (n <= 0) return;
    r->have += (size_t)n;
    while (r->have >= 5) {
        uint32_t len = get_u32(r->buf + 1);
        if (len > MAX_PAYLOAD) { r->have = 0; return; } /* not our protocol: drop it */
        if (r->have < 5 + len) return;
        host_frame(r, r->buf[0], r->buf + 5, len);
        memmove(r->buf, r->buf + 5 + len, r->have - 5 - len);
        r->have -= 5 + len;
    }
}

static void reap(struct relay *r) {
    struct signalfd_siginfo si;
    while (read(r->sig, &si, sizeof si) > 0) {}
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != r->main) continue;
        r->status = status;
        r->done = 1;
        kill(-1, SIGKILL); /* like Docker: the container ends with its main process */
    }
}

static int exit_code(int status) {
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static void relay(struct relay *r) {
    while (!r->done || r->out >= 0 || r->err >= 0) {
        struct pollfd p[4] = {{r->out, POLLIN, 0}, {r->err, POLLIN, 0},
                              {r->chan_ok ? chan : -1, POLLIN, 0}, {r->sig, POLLIN, 0}};
        if (poll(p, 4, -1) < 0) continue;
        if (p[0].revents) pump(&r->out, F_STDOUT);
        if (p[1].revents) pump(&r->err, F_STDERR);
        if (p[2].revents & POLLIN) from_host(r);
        else if (p[2].revents) r->chan_ok = 0; /* a hung-up channel would spin poll */
        if (p[3].revents) reap(r);
    }
}

static int cmd_run(const char *root) {
    int o[2], e[2], x[2], in[2] = {-1, -1};
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    struct relay *r = calloc(1, sizeof *r);
    if (!r || pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC) || pipe2(x, O_CLOEXEC)) fail("pipes");
    if (strcmp(spec_get("stdin"), "1") == 0 ? pipe2(in, O_CLOEXEC) != 0
                                             : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        fail("vxn-helper: cannot open the container's stdin");
    r->sig = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    r->chan_ok = 1;
    signal(SIGPIPE, SIG_IGN); /* a container that closes its stdin must not kill PID 1 */
    send_line("start");
    r->main = fork();
    if (r->main == 0) run_child(root, o[1], e[1], in[0], x[1]);
    if (r->main < 0) fail("vxn-helper: fork failed");
    close(o[1]), close(e[1]), close(x[1]), close(in[0]);
    r->out = o[0], r->err = e[0], r->in = in[1];
    int code;
    char msg[1024];
    ssize_t n = read(x[0], &code, sizeof code); /* EOF once execve succeeded */
    if (n == (ssize_t)sizeof code && (n = read(x[0], msg, sizeof msg - 1)) >= 0)
        send_frame(F_ERROR, msg, (size_t)n);
    close(x[0]);
    relay(r);
    finish(exit_code(r->status));
    return 0;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    if (load_spec() != 0) {
        fprintf(stderr, "vxn-helper: %s: missing or not version " PROTOCOL "\n", SPEC_PATH);
        return 2;
    }
    if (strcmp(cmd, "get") == 0 && argc == 3) {
        const char *v = spec_next(argv[2], NULL);
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
